"""Every bad input is one line naming the problem and the fix, exit status 2, no traceback (issue 12).

One row per bad input: the files it needs, the command line, and a fragment of the message. Each
row runs the real CLI in-process (``sami.cli.main``) in a fresh folder; no row gets as far as
loading a model (``--model`` names none that exists, so a row that wrongly passed its check
would fail on the model instead of printing its message).
"""

from __future__ import annotations

import json
import shlex
import socket
import time

import pytest

from sami import cli

CONSTITUTION = "1. The response is brief, at most 50 words in total."
NO_MODEL = "--model /nonexistent-model"
GENERATE = f"generate --principles hh {NO_MODEL} --output out.jsonl"
EVALUATE = "evaluate --candidate_responses sami.jsonl --baseline_responses base.jsonl --judge none " \
           "--principles verifiable --output_dir eval"
TRAIN = f"train --generations g.jsonl --output_dir ckpt {NO_MODEL}"
RUN = f"run --output_dir run {NO_MODEL} --principles hh"


def jsonl(*rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def response(query_id="q0", query="Question?", text="a short answer", **overrides) -> dict:
    return {"query_id": query_id, "query": query, "constitution": CONSTITUTION, "response": text,
            "principles": ["max_50_words"], "affirmed": [True], **overrides}


GOOD_RESPONSES = {"sami.jsonl": jsonl(response()), "base.jsonl": jsonl(response(text="another answer"))}
LATIN1 = b"question\n" + "caf\xe9 au lait?\n".encode("latin-1")


def principle_file(**fields) -> str:
    entry = {"name": "brief", "definition": "Be brief.", "antithesis": "Be long-winded.", **fields}
    return json.dumps({"principles": [entry]})  # JSON is YAML


ROWS = [
    # ------------------------------------------------------------------ --config files
    ("yaml-syntax", {"c.yaml": "iterations: [1\n  foo: bar\n"}, f"{RUN} --config c.yaml",
     "c.yaml, line 2, column 6: not valid YAML"),
    ("yaml-list-for-number", {"c.yaml": "iterations: [1, 2]\n"}, f"{RUN} --config c.yaml",
     "c.yaml, line 1: iterations: [1, 2] is a list, expected an integer"),
    ("yaml-word-for-number", {"c.yaml": "seed: 0\niterations: two\n"}, f"{RUN} --config c.yaml",
     "c.yaml, line 2: iterations: 'two' is a string, expected an integer"),
    ("yaml-null-for-number", {"c.yaml": "max_new_tokens:\n"}, f"{GENERATE} --config c.yaml",
     "c.yaml, line 1: max_new_tokens: None is empty (null), expected an integer"),
    ("yaml-unknown-key", {"c.yaml": "iteratons: 2\n"}, f"{RUN} --config c.yaml",
     "unknown keys: iteratons (did you mean 'iterations'?)"),
    ("yaml-duplicate-key", {"c.yaml": "iterations: 2\niterations: 3\n"}, f"{RUN} --config c.yaml",
     "c.yaml, line 2, column 1: not valid YAML (key 'iterations' given twice (first on line 1))"),
    ("yaml-bad-choice", {"c.yaml": "judge: gpt4\n"}, f"{EVALUATE} --config c.yaml",
     "c.yaml, line 1: judge: 'gpt4' is a string, expected one of 'api', 'local', 'none'"),
    ("yaml-out-of-bounds", {"c.yaml": "gradient_accumulation_steps: 0\n"}, f"{TRAIN} --config c.yaml",
     "c.yaml, line 1: gradient_accumulation_steps: 0 must be >= 1"),
    ("yaml-not-a-mapping", {"c.yaml": "- iterations\n- 2\n"}, f"{RUN} --config c.yaml",
     "expected a mapping of flat keys"),
    ("yaml-not-utf8", {"c.yaml": b"task_description: caf\xe9\n"}, f"{RUN} --config c.yaml",
     "c.yaml, line 1: not UTF-8 text (byte 0xe9"),
    ("config-is-a-folder", {"conf/x": ""}, f"{RUN} --config conf", "--config conf is a folder"),
    # ------------------------------------------------------------------ impossible numbers
    ("gradient-accumulation-0", {}, f"{TRAIN} --gradient_accumulation_steps 0",
     "--gradient_accumulation_steps 0: must be >= 1"),
    ("batch-size-0", {}, f"{TRAIN} --per_device_train_batch_size 0", "--per_device_train_batch_size 0: must be >= 1"),
    ("negative-learning-rate", {}, f"{RUN} --learning_rate -1e-5", "--learning_rate -1e-05: must be >= 0"),
    ("negative-warmup", {}, f"{TRAIN} --warmup_steps -1", "--warmup_steps -1.0: must be >= 0"),
    ("adam-beta-1", {}, f"{TRAIN} --adam_beta2 1", "--adam_beta2 1.0: must be in [0, 1)"),
    ("scheduler-typo", {}, f"{TRAIN} --lr_scheduler_type constnt", "constnt is not a valid SchedulerType"),
    ("max-new-tokens-0", {}, f"{GENERATE} --max_new_tokens 0", "--max_new_tokens 0: must be >= 1"),
    ("one-constitution", {}, f"{GENERATE} --num_constitutions 1",
     "--num_constitutions 1: must be >= 2 (SAMI contrasts at least 2"),
    ("negative-temperature", {}, f"{GENERATE} --temperature -0.5", "--temperature -0.5: must be >= 0"),
    ("top-p-above-1", {}, f"{GENERATE} --top_p 1.5", "--top_p 1.5: must be in (0, 1]"),
    ("generation-batch-0", {}, f"{GENERATE} --generation_batch_size 0", "--generation_batch_size 0: must be >= 1"),
    ("max-queries-0", {}, f"{GENERATE} --max_train_queries 0", "--max_train_queries 0: must be >= 1"),
    ("negative-seed", {}, f"{GENERATE} --seed -1", "--seed -1: must be in [0, 4294967296)"),
    ("iterations-0", {}, f"{RUN} --iterations 0", "--iterations 0: must be >= 1"),
    ("run-folder-exists", {"run/config.yaml": "seed: 0\n"}, RUN, "run already holds a run; pass --resume"),
    ("iterations-word", {}, f"{RUN} --iterations two", "argument --iterations: invalid int value: 'two'"),
    ("judge-timeout-0", {}, f"{EVALUATE} --judge_timeout 0", "--judge_timeout 0.0: must be > 0"),
    ("unparsed-fraction-2", {}, f"{EVALUATE} --max_unparsed_fraction 2",
     "--max_unparsed_fraction 2.0: must be in [0, 1]"),
    ("only-iteration-0", {}, "evaluate --run_dir run --only_iterations 0 --judge none",
     "--only_iterations 0: must be >= 1"),
    ("judge-choice", {}, f"{EVALUATE} --judge gpt4", "argument --judge: invalid choice: 'gpt4'"),
    ("examples-negative", {}, "report --run_dir run --examples -1", "--examples -1: must be >= 0"),
    ("unknown-flag", {}, f"{GENERATE} --iterations 2", "unrecognised arguments: --iterations 2"),
    # ------------------------------------------------------------------ files and folders of the wrong kind
    ("output-is-a-folder", {"out/x": ""}, "principles --principles hh --output out",
     "--output out: is a folder; give the path of a file to write"),
    ("output-ends-in-slash", {}, f"{GENERATE.replace('out.jsonl', 'new/')}", "--output new/: is a folder"),
    ("output-dir-is-a-file", GOOD_RESPONSES | {"eval": "x"}, EVALUATE, "--output_dir eval: is a file; give a folder"),
    ("run-dir-is-a-file", {"run": "x"}, "report --run_dir run", "--run_dir run: is a file; give a folder"),
    ("responses-are-a-folder", {"sami.jsonl/x": "", "base.jsonl": ""}, EVALUATE,
     "--candidate_responses sami.jsonl: is a folder; give the file to read"),
    # ------------------------------------------------------------------ principle files
    ("principle-name-number", {"p.yaml": principle_file(name=5)}, f"{GENERATE.replace('hh', 'p.yaml')}",
     "principle 1: 'name' is 5 (int), not text"),
    ("principle-definition-number", {"p.yaml": principle_file(definition=7)}, "principles --principles p.yaml",
     "principle 1: 'definition' is 7 (int), not text"),
    ("principle-antithesis-list", {"p.yaml": principle_file(antithesis=[1, 2])}, "principles --principles p.yaml",
     "principle 1: 'antithesis' is [1, 2] (list), not text"),
    ("principle-split-number", {"p.yaml": principle_file(split=1)}, "principles --principles p.yaml",
     "'split' is 1 (int), not text"),
    ("principle-task-number", {"p.yaml": '{"task": 5, "principles": []}'}, "principles --principles p.yaml",
     "no principles given"),
    ("principle-yaml-syntax", {"p.yaml": "principles:\n  - name: [a\n"}, "principles --principles p.yaml",
     "p.yaml, line 3: not valid YAML"),
    ("principle-not-utf8", {"p.yaml": b"principles:\n  - name: caf\xe9\n"}, "principles --principles p.yaml",
     "principle file p.yaml, line 2: not UTF-8 text"),
    ("principle-file-a-folder", {"p/x": ""}, "principles --principles p", "'p' is a folder"),
    # ------------------------------------------------------------------ query files
    ("query-column-missing", {"q.jsonl": jsonl({"question": "Hi?"})}, f"{GENERATE} --queries q.jsonl",
     "pass --query_column"),
    ("query-column-wrong", {"q.jsonl": jsonl({"question": "Hi?"})}, f"{GENERATE} --queries q.jsonl --query_column q",
     "no column 'q'; available columns: ['question'] (pass one with --query_column)"),
    ("queries-jsonl-not-utf8", {"q.jsonl": b'{"query": "caf\xe9"}\n'}, f"{GENERATE} --queries q.jsonl",
     "query file q.jsonl, line 1: not UTF-8 text"),
    ("queries-json-not-utf8", {"q.json": b'["caf\xe9"]'}, f"{GENERATE} --queries q.json",
     "query file q.json, line 1: not UTF-8 text"),
    ("queries-csv-not-utf8", {"q.csv": LATIN1}, f"{GENERATE} --queries q.csv --query_column question",
     "query file q.csv, line 2: not UTF-8 text (byte 0xe9"),
    ("queries-txt-not-utf8", {"q.txt": b"caf\xe9?\n"}, f"{GENERATE} --queries q.txt",
     "query file q.txt, line 1: not UTF-8 text"),
    # ------------------------------------------------------------------ response files given to `sami evaluate`
    ("response-is-a-number", GOOD_RESPONSES | {"sami.jsonl": jsonl(response(text=5))}, EVALUATE,
     "sami.jsonl: record 1 (query_id='q0'): field 'response' is 5 (int), expected text"),
    ("response-query-is-a-list", GOOD_RESPONSES | {"base.jsonl": jsonl(response(query=["a"]))}, EVALUATE,
     "base.jsonl: record 1 (query_id='q0'): field 'query' is ['a'] (list), expected text"),
    ("responses-answer-other-questions", GOOD_RESPONSES | {"base.jsonl": jsonl(response(query="Another question?"))},
     EVALUATE, "query 'q0' has different texts in the candidate's and the baseline's responses"),
    ("responses-not-utf8", GOOD_RESPONSES | {"sami.jsonl": b'{"query_id": "caf\xe9"}\n'}, EVALUATE,
     "response file sami.jsonl, line 1: not UTF-8 text"),
    # ------------------------------------------------------------------ sami report
    ("metrics-not-a-number", {"run/metrics.jsonl": jsonl({"iteration": 0, "mi/bound": "high"})},
     "report --run_dir run", "metrics.jsonl: record 1 (iteration 0): 'mi/bound' is 'high', not a number"),
    ("metrics-torn-line", {"run/metrics.jsonl": jsonl({"iteration": 0, "mi/bound": 0.1}) + '{"iteration": 1, "mi'},
     "report --run_dir run", "metrics.jsonl:2 is not valid JSON"),
    # ------------------------------------------------------------------ the Hub, unreachable (a closed port)
    ("hub-dataset-offline", {}, f"{GENERATE} --queries hh-rlhf:helpful-base",
     "cannot reach the Hugging Face Hub"),
    ("hub-model-offline", {}, "generate --principles hh --model someone/some-model --output o.jsonl",
     "cannot reach the Hugging Face Hub"),
]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    return code, capsys.readouterr().err


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh folder as the working directory; the Hub's endpoint a port where nothing listens."""
    from huggingface_hub import constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for variable in ("SAMI_HH_RLHF_PATH", "SAMI_TLDR_PATH"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name, files, command, fragment", ROWS, ids=[
    row.values[0] if hasattr(row, "values") else row[0] for row in ROWS
])
def test_bad_input_is_one_line_and_exit_2(name, files, command, fragment, workdir, capsys):
    for relative, content in files.items():
        path = workdir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    code, err = run_cli(shlex.split(command), capsys)
    errors = [line for line in err.splitlines() if ": error: " in line and line.startswith("sami ")]
    assert code == 2, err
    assert len(errors) == 1, err
    assert fragment in errors[0], errors[0]
    assert "Traceback" not in err


def test_hub_id_without_network_fails_fast(monkeypatch, tmp_path, capsys):
    """The real Hub endpoint, on a machine without network: refused in seconds, not after a minute of retries."""
    from huggingface_hub import constants

    from sami.hub_access import hub_unreachable

    if hub_unreachable() is None:
        pytest.skip("the Hugging Face Hub is reachable from here")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("SAMI_HH_RLHF_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    code, err = run_cli(shlex.split(f"{GENERATE} --queries hh-rlhf:helpful-base"), capsys)
    assert code == 2 and time.monotonic() - start < 10
    assert "cannot reach the Hugging Face Hub (https://huggingface.co" in err
    assert "--query_data_path" in err and "HF_HUB_OFFLINE=1" in err
