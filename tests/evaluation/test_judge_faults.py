"""The judge fault matrix of docs/evaluation.md, one row per fault, through `sami evaluate` against a real
OpenAI-compatible server on loopback: what sami does, its exit code and what it writes."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sami import cli
from sami.records import read_verdicts

PAIRS = 4


def response_files(folder: Path) -> tuple[Path, Path]:
    """Four pairs; the candidate's responses are GOOD (the fake judge prefers them), the baseline's are not."""
    folder.mkdir(parents=True, exist_ok=True)
    sides = {}
    for side, word in (("sami", "GOOD"), ("base", "plain")):
        rows = [{"query_id": f"q{i}", "query": f"Question {i}?", "constitution": "1. Be helpful.",
                 "response": f"{word} answer {i}"} for i in range(PAIRS)]
        sides[side] = folder / f"{side}.jsonl"
        sides[side].write_text("".join(json.dumps(row) + "\n" for row in rows))
    return sides["sami"], sides["base"]


def evaluate(url: str, tmp_path: Path, *flags: str) -> int:
    candidate, baseline = response_files(tmp_path / "responses")
    return cli.main([
        "evaluate", "--candidate_responses", str(candidate), "--baseline_responses", str(baseline),
        "--judge", "api", "--judge_model", "fake", "--judge_base_url", url,
        "--judge_api_key_env", "SAMI_TEST_JUDGE_KEY",
        "--judge_retries", "1", "--judge_timeout", "2", "--output_dir", str(tmp_path / "eval"), "--no_progress",
        *flags,
    ])


def cache_entries(tmp_path: Path) -> int:
    return len(list((tmp_path / "eval" / "judge_cache").rglob("*.json")))


@dataclass
class Fault:
    """One row of the matrix: the server's behaviour, what `sami evaluate` answers and what it leaves on disk."""

    server: dict
    exit_code: int
    stderr: str = ""  # a fragment of the one-line error ("" when it succeeds)
    verdicts: tuple[int, int] | None = None  # (failed requests, answers in the wrong format); None: no verdicts file
    summary: bool = False
    cached: int = 0  # answers in the judge's cache afterwards
    flags: list[str] = field(default_factory=list)


FAULTS = {
    "401 wrong key": Fault({"mode": "401"}, 2, "rejected the API key from $SAMI_TEST_JUDGE_KEY (HTTP 401)"),
    "403 no access": Fault({"mode": "403"}, 2, "(HTTP 403): wrong key, or no access to model 'fake'"),
    "404 unknown model": Fault({"mode": "404"}, 2, "answered HTTP 404"),
    "429 then answers": Fault({"mode": "429", "fail_first": 2, "retry_after": "0.01"}, 0, verdicts=(0, 0),
                              summary=True, cached=PAIRS),
    "429 past the retries": Fault({"mode": "429", "fail_first": 10**6, "retry_after": "0.01"}, 2,
                                  "4 of 4 verdicts (100%) are unparsed (4 failed requests", verdicts=(4, 0)),
    "500 then answers": Fault({"mode": "500", "fail_first": 1, "retry_after": "0.01"}, 0, verdicts=(0, 0),
                              summary=True, cached=PAIRS),
    "500 past the retries": Fault({"mode": "500", "fail_first": 10**6, "retry_after": "0.01"}, 2,
                                  "HTTP 500 after 2 attempts", verdicts=(4, 0)),
    "500 past the retries, allowed": Fault({"mode": "500", "fail_first": 10**6, "retry_after": "0.01"}, 0,
                                           verdicts=(4, 0), summary=True, flags=["--allow_unparsed", "true"]),
    "slower than the timeout": Fault({"mode": "slow", "delay": 3.0, "slow_after": 1}, 2, "timed out after 0.3s",
                                     verdicts=(3, 0), cached=1,
                                     flags=["--judge_timeout", "0.3", "--judge_retries", "0"]),
    "slow, under the timeout": Fault({"mode": "slow", "delay": 0.3}, 0, verdicts=(0, 0), summary=True, cached=PAIRS),
    "malformed JSON body": Fault({"mode": "malformed"}, 2, "malformed response body", verdicts=(4, 0)),
    "answer in the wrong format": Fault({"mode": "garbage"}, 2, "4 answers not in the expected format",
                                        verdicts=(0, 4)),
    "connection refused": Fault({}, 2, "cannot reach the judge endpoint"),
}


@pytest.mark.filterwarnings("ignore:.*verdicts .* are unparsed:UserWarning")
@pytest.mark.parametrize("name", FAULTS)
def test_judge_fault(name, judge_server, api_key, tmp_path, capsys):
    fault = FAULTS[name]
    for key, value in fault.server.items():
        setattr(judge_server, key, value)
    url = judge_server.url
    if name == "connection refused":
        with socket.socket() as sock:  # a port nobody listens on
            sock.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    assert evaluate(url, tmp_path, *fault.flags) == fault.exit_code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("sami evaluate: error:")]
    if fault.exit_code:
        assert len(errors) == 1 and fault.stderr in errors[0], err
        assert "Traceback" not in err
    else:
        assert not errors
    out = tmp_path / "eval"
    verdicts_file = out / "verdicts_vs_base.jsonl"
    if fault.verdicts is None:
        assert not verdicts_file.exists()
    else:
        verdicts = read_verdicts(verdicts_file)
        assert len(verdicts) == PAIRS
        failed = sum(v.error is not None for v in verdicts)
        wrong_format = sum(v.outcome == "unparsed" and v.error is None for v in verdicts)
        assert (failed, wrong_format) == fault.verdicts
        assert all(v.outcome == "win" for v in verdicts if v.outcome != "unparsed")
    assert (out / "summary_vs_base.json").exists() == fault.summary
    assert cache_entries(tmp_path) == fault.cached
    assert api_key not in err


@pytest.mark.parametrize("mode", ["slow", "garbage", "500"])
def test_a_rerun_asks_only_what_has_no_usable_answer(mode, judge_server, api_key, tmp_path, capsys):
    """A judge slower than the timeout loses nothing already judged: the answers so far stay in the cache and a
    rerun asks only the rest. Failed requests and answers in the wrong format are never cached: asked again."""
    judge_server.mode, judge_server.delay, judge_server.slow_after = mode, 3.0, 1
    judge_server.fail_first, judge_server.retry_after = 10**6, "0.01"
    flags = ["--judge_timeout", "0.3", "--judge_retries", "0", "--serial", "true"]
    assert evaluate(judge_server.url, tmp_path, *flags) == 2
    answered = PAIRS - 3 if mode == "slow" else 0
    assert cache_entries(tmp_path) == answered

    judge_server.mode = "normal"
    judge_server.reset()
    assert evaluate(judge_server.url, tmp_path, *flags) == 0
    assert judge_server.count == PAIRS - answered  # the rest, and only the rest
    summary = json.loads((tmp_path / "eval" / "summary_vs_base.json").read_text())
    assert summary["counts"]["win"] == PAIRS and summary["judge_stats"]["cache_hits"] == answered
    assert cache_entries(tmp_path) == PAIRS
