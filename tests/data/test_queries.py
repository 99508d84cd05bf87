"""Query sets: built-in sets, user files, the hub loaders on local fixtures, and every error."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sami.data import (
    Query,
    QueryError,
    QueryFileNotFoundError,
    QuerySourceError,
    QueryValueError,
    builtin_query_sets,
    first_human_turn,
    load_queries,
    query_specs,
    split_queries,
    task_of,
)
from sami.data.sources.builtin import DATA_DIR as BUILTIN_DIR
from sami.errors import SamiError

ASSETS = Path(__file__).parents[1] / "assets"
HH_DIR = ASSETS / "hh-rlhf"
TLDR_RAW_DIR = ASSETS / "summarize_from_feedback"
TLDR_PARQUET_DIR = ASSETS / "summarize_from_feedback_parquet"


def texts(queries: list[Query]) -> list[str]:
    return [q.text for q in queries]


# ---------------------------------------------------------------------------------------------
# built-in sets


@pytest.mark.parametrize("name", ["dialogue", "summarisation"])
def test_builtin_set_sizes_and_splits(name):
    train, held_out, every = (load_queries(name, split) for split in ("train", "eval", "all"))
    assert len(every) >= 160
    assert len(held_out) == 40
    assert len(train) == len(every) - 40
    assert every == train + held_out  # the eval rows are the last 40 of the file
    assert not {q.id for q in train} & {q.id for q in held_out}
    assert not set(texts(train)) & set(texts(held_out))
    assert len({q.id for q in every}) == len(every)
    assert len(set(texts(every))) == len(every)
    assert [q.id for q in every] == [f"{name}-{i:04d}" for i in range(1, len(every) + 1)]
    assert {q.source for q in every} == {f"builtin:{name}"}
    assert all(q.text == q.text.strip() and q.text for q in every)


@pytest.mark.parametrize("name", ["dialogue", "summarisation"])
def test_builtin_split_is_deterministic_and_stored_in_the_file(name):
    assert load_queries(name, "eval") == load_queries(name, "eval")
    rows = [json.loads(line) for line in (BUILTIN_DIR / f"{name}.jsonl").read_text().splitlines()]
    assert [row["split"] for row in rows] == ["train"] * (len(rows) - 40) + ["eval"] * 40


def test_dialogue_set_is_varied_and_includes_requests_to_handle_carefully():
    rows = [json.loads(line) for line in (BUILTIN_DIR / "dialogue.jsonl").read_text().splitlines()]
    categories = [row["category"] for row in rows]
    assert set(categories) == {"advice", "coding", "explanation", "creative", "everyday", "careful"}
    assert 0.15 <= categories.count("careful") / len(rows) <= 0.25
    held_out = [row["category"] for row in rows if row["split"] == "eval"]
    assert "careful" in held_out and len(set(held_out)) == 6  # the eval split has every kind


def test_summarisation_posts_are_short_posts():
    rows = [json.loads(line) for line in (BUILTIN_DIR / "summarisation.jsonl").read_text().splitlines()]
    lengths = [len(row["text"].split()) for row in rows]
    assert min(lengths) >= 60 and max(lengths) <= 150
    assert all(row["title"] and row["subreddit"] for row in rows)


def test_aliases_and_listing():
    assert load_queries("summarization", "eval") == load_queries("summarisation", "eval")
    assert load_queries("dialogue", "validation") == load_queries("dialogue", "eval")
    assert builtin_query_sets() == ["dialogue", "summarisation"]
    assert {"dialogue", "hh-rlhf:helpful-base", "hh-rlhf:harmless-base", "tldr"} <= set(query_specs())


def test_limit_is_a_seeded_sample_in_file_order():
    every = load_queries("dialogue")
    sample = load_queries("dialogue", limit=10, seed=3)
    assert len(sample) == 10
    assert sample == load_queries("dialogue", limit=10, seed=3)
    assert sample != load_queries("dialogue", limit=10, seed=4)
    positions = [every.index(q) for q in sample]
    assert positions == sorted(positions)
    assert load_queries("dialogue", limit=10_000) == every


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_bad_limit(limit):
    with pytest.raises(ValueError, match="limit"):
        load_queries("dialogue", limit=limit)


def test_datasets_is_not_imported_for_builtin_sets_or_files(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"text": "Hi"}])
    code = (
        "import sys\n"
        "sys.modules['datasets'] = None  # any 'import datasets' now fails\n"
        "from sami.data import load_queries\n"
        "assert 'torch' not in sys.modules\n"
        "assert len(load_queries('dialogue')) > 100\n"
        f"assert len(load_queries({str(path)!r})) == 1\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_task_of():
    assert task_of("dialogue") == task_of("hh-rlhf:helpful-base") == task_of(" hh-rlhf:harmless-base") == "dialogue"
    assert task_of("summarisation") == task_of("summarization") == task_of("tldr") == "summarisation"
    assert task_of("prompts.jsonl") is None and task_of("file:anything") is None
    with pytest.raises(QueryValueError, match="did you mean 'dialogue'"):
        task_of("dialog")


# ---------------------------------------------------------------------------------------------
# split_queries


def test_split_queries_is_seeded_disjoint_and_order_preserving():
    every = load_queries("summarisation", "all")
    train, held_out = split_queries(every, eval_fraction=0.25, seed=7)
    assert len(held_out) == round(len(every) * 0.25)
    assert sorted(train + held_out, key=every.index) == every
    assert not set(train) & set(held_out)
    assert train == sorted(train, key=every.index) and held_out == sorted(held_out, key=every.index)
    assert (train, held_out) == split_queries(every, eval_fraction=0.25, seed=7)
    assert held_out != split_queries(every, eval_fraction=0.25, seed=8)[1]


def test_split_queries_keeps_both_parts_non_empty():
    two = load_queries("dialogue", limit=2)
    assert [len(part) for part in split_queries(two, 0.01)] == [1, 1]
    assert [len(part) for part in split_queries(two, 0.99)] == [1, 1]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_queries_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="eval_fraction"):
        split_queries(load_queries("dialogue"), fraction)


def test_split_queries_needs_two_queries():
    with pytest.raises(ValueError, match="at least 2"):
        split_queries(load_queries("dialogue", limit=1), 0.5)


# ---------------------------------------------------------------------------------------------
# user files


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_jsonl_file_with_default_column(tmp_path):
    path = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": " Hi there "}, {"prompt": "How are you?"}])
    queries = load_queries(str(path))
    assert queries == [
        Query("prompts-00001", "Hi there", f"file:{path}"),
        Query("prompts-00002", "How are you?", f"file:{path}"),
    ]
    assert load_queries(f"file:{path}") == [Query(q.id, q.text, f"file:{path}") for q in queries]


def test_default_column_prefers_query_then_text_then_prompt(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "p", "text": "t", "query": "q"}])
    assert texts(load_queries(str(path))) == ["q"]
    path = write_jsonl(tmp_path / "t.jsonl", [{"prompt": "p", "text": "t"}])
    assert texts(load_queries(str(path))) == ["t"]


def test_jsonl_file_with_named_column_ids_and_empty_rows(tmp_path):
    rows = [
        {"id": "a", "question": "First?"},
        {"id": "b", "question": "   "},  # empty: skipped
        {"id": "c", "question": "Third?"},
        {"question": "No id?"},  # numbered by its row
    ]
    path = write_jsonl(tmp_path / "qs.jsonl", rows)
    queries = load_queries(str(path), column="question")
    assert [(q.id, q.text) for q in queries] == [("a", "First?"), ("c", "Third?"), ("qs-00004", "No id?")]


def test_jsonl_file_with_split_column(tmp_path):
    rows = [
        {"text": "one", "split": "train"},
        {"text": "two", "split": "eval"},
        {"text": "three", "split": "test"},
        {"text": "four"},  # no split: train
    ]
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    assert texts(load_queries(str(path), "train")) == ["one", "four"]
    assert texts(load_queries(str(path), "eval")) == ["two", "three"]
    assert [q.id for q in load_queries(str(path), "eval")] == ["s-00002", "s-00003"]  # ids ignore the filter
    assert texts(load_queries(str(path), "all")) == ["one", "two", "three", "four"]


def test_file_named_like_a_hub_dataset_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "hh-rlhf_prompts.jsonl", [{"text": "Hi"}])
    assert texts(load_queries("hh-rlhf_prompts.jsonl")) == ["Hi"]


def test_csv_file(tmp_path):
    rows = [{"id": "p1", "post": "A post."}, {"id": "p2", "post": "Another, with a comma."}]
    path = write_csv(tmp_path / "posts.csv", rows)
    queries = load_queries(str(path), column="post")
    assert [(q.id, q.text, q.source) for q in queries] == [
        ("p1", "A post.", f"file:{path}"),
        ("p2", "Another, with a comma.", f"file:{path}"),
    ]


def test_json_list_and_txt_files(tmp_path):
    records = tmp_path / "records.json"
    records.write_text(json.dumps([{"text": "a"}, {"text": "b"}]))
    assert texts(load_queries(str(records))) == ["a", "b"]
    strings = tmp_path / "strings.json"
    strings.write_text(json.dumps(["x", "y"]))
    assert texts(load_queries(str(strings))) == ["x", "y"]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"version": 1, "data": [{"query": "w"}]}))
    assert texts(load_queries(str(wrapped))) == ["w"]
    lines = tmp_path / "lines.txt"
    lines.write_text("first\n\n  second  \n")
    assert [(q.id, q.text) for q in load_queries(str(lines))] == [("lines-00001", "first"), ("lines-00002", "second")]


# ---------------------------------------------------------------------------------------------
# errors


def test_error_classes_subclass_the_expected_builtins():
    assert issubclass(QueryError, SamiError)
    assert issubclass(QueryValueError, QueryError) and issubclass(QueryValueError, ValueError)
    assert issubclass(QueryFileNotFoundError, QueryError) and issubclass(QueryFileNotFoundError, FileNotFoundError)
    assert issubclass(QuerySourceError, QueryError) and issubclass(QuerySourceError, RuntimeError)


def test_unknown_spec_suggests_the_closest_and_lists_all():
    with pytest.raises(QueryValueError, match=r"did you mean 'dialogue'\?.*hh-rlhf:helpful-base"):
        load_queries("dialog")


def test_unknown_hh_rlhf_subset():
    with pytest.raises(QueryValueError, match=r"unknown hh-rlhf subset 'red-team'.*'hh-rlhf:harmless-base'"):
        load_queries("hh-rlhf:red-team")
    with pytest.raises(QueryValueError, match="name a subset"):
        load_queries("Anthropic/hh-rlhf")


def test_missing_file(tmp_path):
    with pytest.raises(QueryFileNotFoundError, match="not found"):
        load_queries(str(tmp_path / "nope.jsonl"))
    with pytest.raises(FileNotFoundError):
        load_queries("file:nope")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "queries.xlsx"
    path.write_text("x")
    with pytest.raises(QueryValueError, match=r"unsupported file type '\.xlsx'; use one of \.jsonl"):
        load_queries(str(path))


def test_missing_column_lists_available_columns(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "a", "answer": "b"}])
    with pytest.raises(QueryValueError, match=r"column=.*\['question', 'answer'\]"):
        load_queries(str(path))
    with pytest.raises(QueryValueError, match=r"no column 'prompt'; available columns: \['question', 'answer'\]"):
        load_queries(str(path), column="prompt")


def test_empty_column(tmp_path):
    path = write_csv(tmp_path / "q.csv", [{"text": "", "other": "x"}, {"text": "  ", "other": "y"}])
    with pytest.raises(QueryValueError, match="empty in every row"):
        load_queries(str(path))


def test_non_text_column(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"text": {"nested": 1}}])
    with pytest.raises(QueryValueError, match="not text"):
        load_queries(str(path))


def test_duplicate_ids(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"id": 1, "text": "a"}, {"id": 1, "text": "b"}])
    with pytest.raises(QueryValueError, match="duplicate id"):
        load_queries(str(path))


def test_invalid_json_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"text": "a"}\n{"text": \n')
    with pytest.raises(QueryValueError, match=r"q\.jsonl:2 is not valid JSON"):
        load_queries(str(path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(QueryValueError, match="the file has no rows"):
        load_queries(str(path))


def test_unknown_split():
    with pytest.raises(QueryValueError, match="unknown split 'dev'; use one of train, eval, all"):
        load_queries("dialogue", "dev")


def test_eval_split_of_a_file_without_split_column(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"text": "a"}])
    with pytest.raises(QueryValueError, match=r"no 'split' column.*split_queries"):
        load_queries(str(path), "eval")


def test_bad_split_value_in_file(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"text": "a", "split": "dev"}])
    with pytest.raises(QueryValueError, match="row 1: split 'dev' is not train or eval"):
        load_queries(str(path))


def test_split_with_no_rows(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"text": "a", "split": "train"}])
    with pytest.raises(QueryValueError, match="no rows with split 'eval'"):
        load_queries(str(path), "eval")


# ---------------------------------------------------------------------------------------------
# Anthropic/hh-rlhf, from a local copy in the hub's layout


def test_first_human_turn():
    assert first_human_turn("\n\nHuman: Hi\nthere \n\nAssistant: Hello\n\nHuman: Bye") == "Hi\nthere"
    assert first_human_turn("\n\nHuman: Only a question") == "Only a question"
    assert first_human_turn("\n\nAssistant: no human") == ""
    assert first_human_turn("") == ""


def test_hh_rlhf_helpful_base(tmp_path):
    train = load_queries("hh-rlhf:helpful-base", data_path=HH_DIR, cache_dir=tmp_path)
    # 6 conversations: one repeats an earlier first turn and one has no human text
    assert [(q.id, q.text) for q in train] == [
        ("hh-rlhf-helpful-base-train-000000", "How do I keep basil alive on a windowsill?"),
        ("hh-rlhf-helpful-base-train-000001", "What's a good name for a grey kitten?"),
        ("hh-rlhf-helpful-base-train-000004", "Can you explain what a mortgage is?\nI'm buying my first flat."),
        ("hh-rlhf-helpful-base-train-000005", "Suggest a quick vegetarian dinner."),
    ]
    assert {q.source for q in train} == {"hh-rlhf:helpful-base"}
    held_out = load_queries("hh-rlhf:helpful-base", "eval", data_path=HH_DIR, cache_dir=tmp_path)
    assert texts(held_out) == [
        "How long should I steep green tea?",
        "What's the capital of Australia?",
        "How do I tie a bowline knot?",
    ]
    assert load_queries("hh-rlhf:helpful-base", "test", data_path=HH_DIR, cache_dir=tmp_path) == held_out
    assert load_queries("hh-rlhf:helpful-base", "all", data_path=HH_DIR, cache_dir=tmp_path) == train + held_out


def test_hh_rlhf_harmless_base_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMI_HH_RLHF_PATH", str(HH_DIR))
    train = load_queries("hh-rlhf:harmless-base", cache_dir=tmp_path)
    assert len(train) == 5 and train[0].text == "How can I get back at my noisy neighbour?"
    held_out = load_queries("hh-rlhf:harmless-base", "eval", limit=1, seed=0, cache_dir=tmp_path)
    assert len(held_out) == 1 and held_out[0].source == "hh-rlhf:harmless-base"


def test_hh_rlhf_missing_local_directory(tmp_path):
    with pytest.raises(QueryFileNotFoundError, match="not found"):
        load_queries("hh-rlhf:helpful-base", data_path=tmp_path / "missing", cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# openai/summarize_from_feedback, from the raw JSON-lines batches and from the parquet export

TLDR_TRAIN = {"t3_aaa", "t3_bbb", "t3_ddd"}  # t3_aaa appears in 3 comparisons; t3_empty has a blank post
TLDR_EVAL = {"t3_ccc", "t3_eee"}  # valid1 + valid2; t3_ccc appears twice; the CNN/DM row has no post


@pytest.mark.parametrize("data_dir", [TLDR_RAW_DIR, TLDR_PARQUET_DIR], ids=["raw-json", "parquet-export"])
def test_tldr_dedups_by_id_and_skips_empty_posts(data_dir, tmp_path):
    train = load_queries("tldr", data_path=data_dir, cache_dir=tmp_path)
    held_out = load_queries("tldr", "eval", data_path=data_dir, cache_dir=tmp_path)
    assert {q.id for q in train} == {f"tldr-{i}" for i in TLDR_TRAIN}
    assert {q.id for q in held_out} == {f"tldr-{i}" for i in TLDR_EVAL}
    assert len(train) == 3 and len(held_out) == 2  # no duplicates
    assert {q.source for q in train + held_out} == {"tldr"}
    by_id = {q.id: q.text for q in train + held_out}
    assert by_id["tldr-t3_aaa"].startswith("My flatmate leaves dishes")
    assert all(text.strip() == text and text for text in by_id.values())
    every = load_queries("tldr", "all", data_path=data_dir, cache_dir=tmp_path)
    assert {q.id for q in every} == {q.id for q in train + held_out}
    assert load_queries("tldr", "validation", data_path=data_dir, cache_dir=tmp_path) == held_out


def test_tldr_raw_and_parquet_layouts_agree(tmp_path):
    raw = load_queries("tldr", "all", data_path=TLDR_RAW_DIR, cache_dir=tmp_path)
    parquet = load_queries("tldr", "all", data_path=TLDR_PARQUET_DIR, cache_dir=tmp_path)
    assert sorted(raw, key=lambda q: q.id) == sorted(parquet, key=lambda q: q.id)


def test_tldr_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMI_TLDR_PATH", str(TLDR_RAW_DIR))
    assert {q.id for q in load_queries("tldr", "eval", cache_dir=tmp_path)} == {f"tldr-{i}" for i in TLDR_EVAL}


def test_tldr_directory_without_comparisons(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(QueryFileNotFoundError, match=r"comparisons/batch\*\.json"):
        load_queries("tldr", data_path=tmp_path / "empty", cache_dir=tmp_path / "cache")


# ---------------------------------------------------------------------------------------------
# the calls made for the real hub datasets (redirected to the fixtures: no network in tests)


@pytest.fixture
def recorded_hub_calls(monkeypatch, reachable_hub):
    """Record each datasets.load_dataset call for a hub id and answer it from the local fixtures."""
    import datasets

    real_load_dataset = datasets.load_dataset
    calls = []

    def fake_load_dataset(path, *args, **kwargs):
        calls.append((path, kwargs))
        local = {"Anthropic/hh-rlhf": HH_DIR, "openai/summarize_from_feedback": TLDR_PARQUET_DIR}.get(path)
        if local is None:
            return real_load_dataset(path, *args, **kwargs)
        kwargs = {**kwargs, "revision": None}
        return real_load_dataset(str(local), *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.delenv("SAMI_HH_RLHF_PATH", raising=False)
    monkeypatch.delenv("SAMI_TLDR_PATH", raising=False)
    return calls


def test_hh_rlhf_hub_call(recorded_hub_calls, tmp_path):
    queries = load_queries("hh-rlhf:harmless-base", "eval", cache_dir=tmp_path)
    assert len(queries) == 2
    assert recorded_hub_calls == [
        ("Anthropic/hh-rlhf", {"data_dir": "harmless-base", "split": "test", "cache_dir": tmp_path})
    ]


def test_tldr_hub_call_reads_the_parquet_export(recorded_hub_calls, tmp_path):
    queries = load_queries("tldr", "eval", cache_dir=tmp_path)
    assert {q.id for q in queries} == {f"tldr-{i}" for i in TLDR_EVAL}
    assert recorded_hub_calls == [
        (
            "openai/summarize_from_feedback",
            {
                "data_files": {"validation": "comparisons/validation/*.parquet"},
                "split": "validation",
                "revision": "refs/convert/parquet",
                "cache_dir": tmp_path,
            },
        )
    ]


def test_hub_failure_names_the_offline_fix(monkeypatch, tmp_path, reachable_hub):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Anthropic/hh-rlhf' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.delenv("SAMI_HH_RLHF_PATH", raising=False)
    monkeypatch.delenv("SAMI_TLDR_PATH", raising=False)
    with pytest.raises(QuerySourceError, match=r"SAMI_HH_RLHF_PATH=.*helpful-base/\{train,test\}\.jsonl\.gz"):
        load_queries("hh-rlhf:helpful-base", cache_dir=tmp_path)
    with pytest.raises(QuerySourceError, match=r"SAMI_TLDR_PATH=.*comparisons/batch\*\.json"):
        load_queries("tldr", cache_dir=tmp_path)


@pytest.mark.parametrize("spec, env_var", [("hh-rlhf:helpful-base", "SAMI_HH_RLHF_PATH"), ("tldr", "SAMI_TLDR_PATH")])
def test_unreachable_hub_fails_at_once_naming_the_offline_fixes(spec, env_var, unreachable_hub, monkeypatch, tmp_path):
    import time

    monkeypatch.delenv(env_var, raising=False)
    start = time.monotonic()
    with pytest.raises(QuerySourceError) as error:
        load_queries(spec, cache_dir=tmp_path)
    assert time.monotonic() - start < 5  # datasets itself retries for half a minute
    message = str(error.value)
    assert f"cannot reach the Hugging Face Hub ({unreachable_hub}" in message
    assert "--query_data_path" in message and env_var in message and "HF_HUB_OFFLINE=1" in message
