import pytest

from sami.config.args import PrincipleArgs
from sami.errors import ConfigError
from sami.principles import load_principles, obtain_principles
from sami.principles.writer import PrincipleWriterError, model_completer, parse_principle, write_principles


def test_parse_accepts_the_format_with_noise():
    text = "Name: Brevity\nPrinciple: The summary is short.\n**Antithesis**: The summary is long.\nextra"
    principle = parse_principle(text)
    assert (principle.name, principle.definition, principle.antithesis) == (
        "brevity", "The summary is short.", "The summary is long.")


@pytest.mark.parametrize(
    "text",
    [
        "Name: x\nPrinciple: The summary is short.",  # no antithesis
        "Name: x\nPrinciple: Same.\nAntithesis: same.",  # antithesis repeats the principle
        "Name: \nPrinciple: a\nAntithesis: b",  # empty name
        "just some chatter",
    ],
)
def test_parse_rejects_malformed_answers(text):
    assert parse_principle(text) is None


class ScriptedWriter:
    """A completion backend replaying fixed lines, to test the control flow (retries, de-duplication)."""

    def __init__(self, lines):
        self.lines = iter(lines)
        self.calls = []

    def __call__(self, prompts, prefills):
        self.calls.append(list(prefills))
        return [next(self.lines) for _ in prompts]


def test_writer_resamples_malformed_and_duplicate_answers():
    # round 1 (2 samples): principle lines, then antithesis lines; sample 2 has an empty antithesis
    # round 2: one duplicate definition, one new principle
    lines = [" is short.", " is short.", " is long.", "",
             " is short.", " is kind.", " is long.", " is rude."]
    writer = ScriptedWriter(lines)
    principle_set, report = write_principles("chat", 2, writer, samples_per_round=2, aspects=["length", "tone"])
    assert [p.name for p in principle_set] == ["length", "tone"]
    assert principle_set.get("tone").antithesis == "The response is rude."
    assert (report.samples, report.malformed, report.duplicates) == (4, 1, 1)
    assert writer.calls[0][0].endswith("Principle: The response")


def test_writer_gives_up_with_a_clear_error():
    writer = ScriptedWriter(["" for _ in range(100)])
    with pytest.raises(PrincipleWriterError, match="0 of 2 valid distinct principles in 6 samples"):
        write_principles("chat", 2, writer, samples_per_round=3, max_rounds=2)


def test_empty_task_is_refused():
    with pytest.raises(ValueError, match="task description is empty"):
        write_principles("  ", 2, ScriptedWriter([]))


def test_obtain_principles_loads_a_file_or_asks_for_one():
    assert obtain_principles(PrincipleArgs(principles="hh")) == load_principles("hh")
    with pytest.raises(ConfigError, match="--principles FILE .* or --task_description"):
        obtain_principles(PrincipleArgs())


@pytest.mark.slow
def test_embedded_writer_produces_a_parseable_file(tmp_path):
    from sami.models import load_model
    from sami.principles import load_principles, save_principles

    model, tokenizer = load_model("smollm2-135m", dtype="bfloat16")
    principle_set, _ = write_principles(
        "answer everyday questions", 2, model_completer(model, tokenizer, max_new_tokens=32), aspects=["length", "tone"]
    )
    path = save_principles(principle_set, tmp_path / "principles.yaml")
    assert load_principles(path) == principle_set and len(principle_set) == 2


def test_sami_principles_checks_and_writes_a_file(tmp_path, capsys):
    from sami.scripts import principles

    output = tmp_path / "checked.yaml"
    assert principles.main(["--principles", "hh", "--output", str(output)]) == 0
    assert load_principles(output) == load_principles("hh")
    assert f"wrote 2 principles to {output}" in capsys.readouterr().out


def test_obtain_principles_records_the_local_writer(monkeypatch):
    import sami.models
    from sami.principles import writer

    monkeypatch.setattr(sami.models, "load_model", lambda spec, dtype, options=None: ("model", "tokenizer"))
    lines = [" is short."] * 8 + [" is long."] * 8  # one round of 8 samples: principles, then antitheses
    monkeypatch.setattr(writer, "model_completer", lambda model, tokenizer, temperature, seed: ScriptedWriter(lines))
    args = PrincipleArgs(task_description="chat", num_principles=1, writer="my-writer", writer_aspects=["length"])
    principle_set = obtain_principles(args)
    assert [p.definition for p in principle_set] == ["The response is short."]
    assert principle_set.metadata == {"writer": {"backend": "local", "model": "my-writer"}}
