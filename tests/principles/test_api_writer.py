"""The API principle writer (``--writer api``) against a real OpenAI-compatible server on loopback
(``writer_server`` in conftest.py)."""

from __future__ import annotations

import logging

import pytest

from sami import cli
from sami.api_client import APIAuthError, APIClient
from sami.config.args import PrincipleArgs
from sami.errors import ConfigError
from sami.principles import load_principles, obtain_principles
from sami.principles.writer import PrincipleWriterError, api_reply, write_principles

TASK = "summarise Reddit posts"


def make_client(server, **kwargs) -> APIClient:
    options = {"role": "writer", "api_key_env": server.key_env, "timeout": 5.0, "max_retries": 1, "backoff": 0.01}
    return APIClient(server.url, **{**options, **kwargs})


def api_args(server, **kwargs) -> PrincipleArgs:
    options = {"task_description": TASK, "num_principles": 3, "writer": "api", "writer_model": "fake-writer",
               "writer_base_url": server.url, "writer_api_key_env": server.key_env}
    return PrincipleArgs(**{**options, **kwargs})


def test_principles_come_from_whole_answers_with_the_aspect_as_name(writer_server):
    with make_client(writer_server) as client:
        reply = api_reply(client, "fake-writer", temperature=0.7, max_tokens=99, seed=5)
        principle_set, report = write_principles(TASK, 3, reply=reply, samples_per_round=4,
                                                 aspects=["length", "tone", "clarity", "focus"])
    assert [p.name for p in principle_set] == ["length", "tone", "clarity"]
    assert principle_set.get("tone").definition == "The response gets its tone right for the reader."  # **bold** taken
    assert principle_set.get("tone").antithesis == "The response gets its tone wrong for the reader."
    assert (report.samples, report.malformed, report.duplicates) == (3, 0, 0)
    requests = writer_server.requests
    assert len(requests) == 4 and {r["path"] for r in requests} == {"/v1/chat/completions"}
    assert {r["headers"]["Authorization"] for r in requests} == {f"Bearer {writer_server.secret}"}
    body = requests[0]["body"]
    assert (body["model"], body["temperature"], body["max_tokens"]) == ("fake-writer", 0.7, 99)
    assert "Task: summarise Reddit posts" in body["messages"][0]["content"]
    assert sorted(b["seed"] for b in writer_server.bodies) == [5, 6, 7, 8]  # one seed per sample


def test_a_malformed_answer_is_resampled_with_a_new_seed(writer_server):
    writer_server.prose_first = 1
    with make_client(writer_server) as client:
        reply = api_reply(client, "fake-writer", seed=0)
        principle_set, report = write_principles(TASK, 1, reply=reply, samples_per_round=1, aspects=["length"])
    assert [p.name for p in principle_set] == ["length"]
    assert (report.samples, report.malformed) == (2, 1)
    assert [b["seed"] for b in writer_server.bodies] == [0, 1000]  # the retry is a different sample


def test_no_seed_is_sent_when_turned_off(writer_server):
    with make_client(writer_server) as client:
        write_principles(TASK, 1, reply=api_reply(client, "fake-writer", seed=None), samples_per_round=1)
    assert "seed" not in writer_server.bodies[0]


def test_a_rejected_key_is_fatal_at_once(writer_server):
    writer_server.status = 401
    with make_client(writer_server) as client, pytest.raises(APIAuthError) as error:
        write_principles(TASK, 2, reply=api_reply(client, "fake-writer"), samples_per_round=2)
    message = str(error.value)
    assert f"writer endpoint {writer_server.url}/chat/completions rejected the API key" in message
    assert f"${writer_server.key_env}" in message and writer_server.secret not in message
    assert len(writer_server.requests) == 2  # one round, no retries, no second round


@pytest.mark.parametrize(
    ("status", "fix"),
    [
        (422, "HTTP 422.*check --writer_model .*--writer_send_seed false"),
        (500, "HTTP 500 after 2 attempts.*overloaded.*--writer_retries"),
        ("html", "malformed response body.*not answer like an OpenAI chat completion.*--writer_base_url"),
    ],
)
def test_a_failed_request_names_the_endpoint_and_the_fix(writer_server, status, fix):
    writer_server.status = status
    with make_client(writer_server) as client, pytest.raises(PrincipleWriterError, match=fix) as error:
        write_principles(TASK, 1, reply=api_reply(client, "fake-writer"), samples_per_round=1)
    assert f"the writer endpoint {writer_server.url}/chat/completions failed a request" in str(error.value)


def test_write_principles_takes_exactly_one_writer():
    with pytest.raises(TypeError, match="exactly one writer"):
        write_principles(TASK, 1)
    with pytest.raises(TypeError, match="exactly one writer"):
        write_principles(TASK, 1, lambda prompts, prefills: [], reply=lambda prompts: [])


def test_obtain_principles_records_the_api_writer_never_the_key(writer_server, caplog):
    with caplog.at_level(logging.INFO):
        principle_set = obtain_principles(api_args(writer_server), seed=3)
    assert len(principle_set) == 3
    assert principle_set.metadata == {"writer": {"backend": "api", "model": "fake-writer", "base_url": writer_server.url}}
    assert sorted(b["seed"] for b in writer_server.bodies)[:3] == [3, 4, 5]
    assert writer_server.secret not in caplog.text


def test_the_recorded_endpoint_drops_credentials_in_the_url(writer_server):
    url = writer_server.url.replace("http://", "http://user:hunter2@") + "?token=abc"
    principle_set = obtain_principles(api_args(writer_server, writer_base_url=url, num_principles=1))
    assert principle_set.metadata["writer"]["base_url"] == writer_server.url


def test_the_api_writer_needs_a_model_name_and_a_local_writer_none():
    with pytest.raises(ConfigError, match="--writer api needs --writer_model"):
        PrincipleArgs(task_description=TASK, writer="api")
    with pytest.raises(ConfigError, match="--writer_model gpt-4o is for --writer api"):
        PrincipleArgs(task_description=TASK, writer_model="gpt-4o")


def test_a_cache_without_seeds_is_refused(writer_server, tmp_path):
    args = api_args(writer_server, writer_cache=str(tmp_path / "cache"), writer_send_seed=False)
    with pytest.raises(ConfigError, match="--writer_cache with --writer_send_seed false"):
        obtain_principles(args)
    assert not writer_server.requests


def test_sami_principles_writes_a_file_through_the_api(writer_server, tmp_path, capsys):
    output = tmp_path / "principles.yaml"
    cache = tmp_path / "writer_cache"
    argv = ["principles", "--task_description", TASK, "--num_principles", "3", "--writer", "api",
            "--writer_model", "fake-writer", "--writer_base_url", writer_server.url,
            "--writer_api_key_env", writer_server.key_env, "--writer_cache", str(cache), "--output", str(output)]
    assert cli.main(argv) == 0
    principle_set = load_principles(output)
    assert [p.name for p in principle_set] == ["length", "tone", "clarity"]
    assert principle_set.task == TASK
    assert principle_set.metadata["writer"] == {"backend": "api", "model": "fake-writer", "base_url": writer_server.url}
    text = output.read_text()
    streams = capsys.readouterr()
    assert f"wrote 3 principles to {output}" in streams.out
    cached = "".join(path.read_text() for path in cache.rglob("*.json"))
    assert cached and all(writer_server.secret not in t for t in (text, streams.out, streams.err, cached))

    requests = len(writer_server.requests)
    output.unlink()
    assert cli.main(argv) == 0  # a rerun with the same seed is answered from the cache
    assert len(writer_server.requests) == requests and load_principles(output) == principle_set


def test_sami_principles_explains_a_missing_key_or_model(writer_server, tmp_path, capsys, monkeypatch):
    base = ["principles", "--task_description", TASK, "--writer", "api", "--writer_base_url", writer_server.url,
            "--output", str(tmp_path / "p.yaml")]
    assert cli.main(base) == 2
    assert "--writer api needs --writer_model" in capsys.readouterr().err
    monkeypatch.delenv(writer_server.key_env)
    assert cli.main([*base, "--writer_model", "m", "--writer_api_key_env", writer_server.key_env]) == 2
    assert f"environment variable {writer_server.key_env}, which is not set" in capsys.readouterr().err
    assert not writer_server.requests
