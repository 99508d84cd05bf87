"""The API judge against a real HTTP server on loopback, including its failure modes."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from sami.api_client import request_key
from sami.evaluation import (
    APIJudge,
    Comparison,
    JudgeAuthError,
    JudgeError,
    JudgeUnreachableError,
    TooManyUnparsedError,
    compare,
    summarize,
    write_verdicts,
)
from sami.jsonl import write_json


def make_judge(server, tmp_path=None, **kwargs) -> APIJudge:
    options = {
        "api_key_env": "SAMI_TEST_JUDGE_KEY",
        "timeout": 2.0,
        "max_retries": 2,
        "backoff": 0.01,
        "max_backoff": 1.0,
        "cache_dir": None if tmp_path is None else tmp_path / "cache",
    }
    options.update(kwargs)
    return APIJudge("fake-judge", server.url, **options)


def comparisons(n: int = 6) -> list[Comparison]:
    """The candidate is GOOD on even queries, the baseline on odd ones."""
    return [
        Comparison(
            query_id=f"q{i}",
            query=f"Question {i}?",
            constitution="1. Be helpful.\n2. Be harmless.",
            candidate_response=f"candidate answer {i}" + (" GOOD" if i % 2 == 0 else ""),
            baseline_response=f"baseline answer {i}" + (" GOOD" if i % 2 else ""),
            principles=["helpful", "harmless"],
            affirmed=[True, True],
            split="train",
        )
        for i in range(n)
    ]


def test_normal_answers_and_key_in_header_only(judge_server, api_key):
    judge = make_judge(judge_server)
    result = judge.judge("q", "1. Be good.", "this is GOOD", "this is bad")
    assert result.verdict == "A" and result.error is None
    assert "Final answer: A" in result.raw
    assert judge.judge("q", "c", "bad", "GOOD one").verdict == "B"
    assert judge.judge("q", "c", "bad", "also bad").verdict == "tie"
    request = judge_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {api_key}"
    assert request["body"]["model"] == "fake-judge" and request["body"]["temperature"] == 0.0
    assert request["body"]["messages"][0]["role"] == "system"
    assert "1. Be good." in request["body"]["messages"][1]["content"]
    assert judge.stats()["requests"] == 3 and judge.stats()["failures"] == 0
    assert judge_server.connections == 1  # one pooled keep-alive connection for sequential requests


def test_compare_outcomes_follow_positions(judge_server, api_key):
    verdicts = compare(make_judge(judge_server), comparisons(8), seed=3, workers=4, progress=False)
    assert len(verdicts) == 8
    positions = {v.candidate_position for v in verdicts}
    assert positions == {"A", "B"}  # randomised, with this seed both occur
    for verdict in verdicts:
        expected = "win" if int(verdict.query_id[1:]) % 2 == 0 else "loss"
        assert verdict.outcome == expected
        assert verdict.judge_verdict == (verdict.candidate_position if expected == "win" else
                                         {"A": "B", "B": "A"}[verdict.candidate_position])
        assert verdict.prompt is not None and verdict.candidate_response in verdict.prompt
    # the same seed gives the same positions, another seed other positions
    again = compare(make_judge(judge_server), comparisons(8), seed=3, progress=False, serial=True)
    assert [v.candidate_position for v in again] == [v.candidate_position for v in verdicts]


def test_cache_makes_a_rerun_free(judge_server, api_key, tmp_path):
    first = compare(make_judge(judge_server, tmp_path), comparisons(6), both_orders=True, progress=False)
    assert judge_server.count == 12
    judge_server.reset()
    rerun_judge = make_judge(judge_server, tmp_path)
    rerun = compare(rerun_judge, comparisons(6), both_orders=True, progress=False)
    assert judge_server.count == 0, "a rerun must be answered from the cache"
    assert rerun_judge.stats()["cache_hits"] == 12
    assert [v.to_dict() for v in rerun] == [v.to_dict() for v in first]
    # a change in the request (another model name) is a cache miss
    compare(make_judge(judge_server, tmp_path, name="x", max_tokens=99), comparisons(1), progress=False)
    assert judge_server.count == 1


def test_key_never_written_to_files_or_logs(judge_server, api_key, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    judge_server.mode, judge_server.fail_first = "500", 1  # exercise the retry log line too
    judge = make_judge(judge_server, tmp_path)
    verdicts = compare(judge, comparisons(4), progress=False, out_path=tmp_path / "verdicts.jsonl")
    (tmp_path / "summary.json").write_text(json.dumps({"summary": summarize(verdicts), "judge": judge.stats()}))
    write_verdicts(verdicts, tmp_path / "again.jsonl")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) >= 6  # cache entries + verdicts + summary
    for path in files:
        assert api_key not in path.read_text(encoding="utf-8"), path
    assert "retry" in caplog.text and api_key not in caplog.text
    assert api_key not in repr(judge) and api_key not in json.dumps(judge.stats())


def test_missing_key_variable_is_a_clear_error(judge_server, monkeypatch):
    monkeypatch.delenv("SAMI_TEST_JUDGE_KEY", raising=False)
    with pytest.raises(JudgeError, match="SAMI_TEST_JUDGE_KEY"):
        make_judge(judge_server)
    judge = make_judge(judge_server, api_key_env="")  # a server without authentication
    assert judge.judge("q", "c", "GOOD", "bad").verdict == "A"
    assert "Authorization" not in judge_server.requests[0]["headers"]


def test_wrong_key_names_the_variable(judge_server, api_key):
    judge_server.mode = "401"
    judge = make_judge(judge_server)
    with pytest.raises(JudgeAuthError, match="SAMI_TEST_JUDGE_KEY") as error:
        compare(judge, comparisons(6), progress=False, workers=3)
    assert "wrong key" in str(error.value) and api_key not in str(error.value)
    assert judge_server.count <= 6  # not retried


def test_429_then_ok_honours_retry_after(judge_server, api_key):
    judge_server.mode, judge_server.fail_first, judge_server.retry_after = "429", 1, "0.3"
    judge = make_judge(judge_server, backoff=5.0)  # Retry-After wins over the (long) backoff
    start = time.monotonic()
    result = judge.judge("q", "c", "GOOD", "bad")
    elapsed = time.monotonic() - start
    assert result.verdict == "A" and result.error is None
    assert 0.3 <= elapsed < 3.0
    assert judge_server.count == 2 and judge.stats()["retries"] == 1


def test_500_then_ok_retries_with_backoff(judge_server, api_key):
    judge_server.mode, judge_server.fail_first = "500", 2
    judge = make_judge(judge_server, max_retries=3)
    assert judge.judge("q", "c", "bad", "GOOD").verdict == "B"
    assert judge_server.count == 3 and judge.stats()["retries"] == 2 and judge.stats()["failures"] == 0


def test_500_forever_is_a_counted_failure(judge_server, api_key, tmp_path):
    judge_server.mode, judge_server.fail_first = "500", 10**6
    judge = make_judge(judge_server, tmp_path, max_retries=1)
    result = judge.judge("q", "c", "GOOD", "bad")
    assert result.verdict == "unparsed" and "HTTP 500 after 2 attempts" in result.error
    assert judge.stats()["failures"] == 1 and judge.stats()["parse_failures"] == 0
    assert not list(tmp_path.rglob("*.json"))  # a failure is never cached


def test_slow_answer_times_out_and_is_counted(judge_server, api_key):
    judge_server.mode, judge_server.delay = "slow", 2.0
    judge = make_judge(judge_server, timeout=0.2, max_retries=1)
    start = time.monotonic()
    result = judge.judge("q", "c", "GOOD", "bad")
    assert time.monotonic() - start < 1.5
    assert result.verdict == "unparsed" and "timed out" in result.error
    assert judge_server.count == 2 and judge.stats()["failures"] == 1


def test_malformed_body_is_a_counted_failure_not_cached(judge_server, api_key, tmp_path):
    judge_server.mode = "malformed"
    judge = make_judge(judge_server, tmp_path)
    result = judge.judge("q", "c", "GOOD", "bad")
    assert result.verdict == "unparsed" and "malformed" in result.error
    assert judge.stats()["failures"] == 1
    judge.judge("q", "c", "GOOD", "bad")
    assert judge_server.count == 2  # a failure is never cached


def test_unreachable_endpoint_is_a_clear_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    judge = APIJudge("m", f"http://127.0.0.1:{port}/v1", api_key_env=None, max_retries=2, backoff=0.01, timeout=1)
    with pytest.raises(JudgeUnreachableError, match=f"127.0.0.1:{port}.*after 3 attempts"):
        compare(judge, comparisons(3), progress=False)


def test_judge_that_ignores_the_format_is_an_error_not_a_silent_half(judge_server, api_key, tmp_path):
    judge_server.mode = "garbage"
    judge = make_judge(judge_server)
    with pytest.raises(TooManyUnparsedError, match="not in the expected format"):
        compare(judge, comparisons(4), progress=False, out_path=tmp_path / "v.jsonl")
    assert (tmp_path / "v.jsonl").exists()  # written before the error, for inspection
    assert judge.stats()["parse_failures"] == 4 and judge.stats()["failures"] == 0
    with pytest.warns(UserWarning, match="unparsed"):
        verdicts = compare(make_judge(judge_server), comparisons(4), progress=False, max_unparsed_fraction=None)
    summary = summarize(verdicts)
    assert summary["counts"]["unparsed"] == 4 and summary["counts"]["parse_failures"] == 4
    assert summary["raw"]["estimate"] == 0.5  # scored 0.5, but counted


def test_concurrency_is_bounded(judge_server, api_key):
    judge_server.mode = "busy"
    judge = make_judge(judge_server, max_concurrency=2)
    compare(judge, comparisons(10), workers=8, progress=False)
    assert judge_server.count == 10 and judge_server.max_in_flight <= 2
    assert judge_server.connections <= 2  # the pool holds at most one connection per request in flight


def test_an_answer_in_the_wrong_format_is_never_answered_from_the_cache(judge_server, api_key, tmp_path):
    judge_server.mode = "garbage"
    judge = make_judge(judge_server, tmp_path)
    assert judge.judge("q", "c", "GOOD", "bad").verdict == "unparsed"
    assert not list(tmp_path.rglob("*.json"))  # not cached
    # an entry in the wrong format that an older sami cached is asked again, and replaced
    judge_server.mode = "normal"
    body = judge_server.requests[0]["body"]
    key = request_key(body)
    write_json({"request": body, "content": "Both are lovely."}, tmp_path / "cache" / key[:2] / f"{key}.json")
    again = make_judge(judge_server, tmp_path)
    assert again.judge("q", "c", "GOOD", "bad").verdict == "A"
    assert again.stats()["cache_hits"] == 0 and judge_server.count == 2
    assert make_judge(judge_server, tmp_path).judge("q", "c", "GOOD", "bad").verdict == "A"
    assert judge_server.count == 2  # now answered from the cache
