"""Write the tiny hub-format query fixtures in tests/assets (run from anywhere; output is deterministic).

* ``hh-rlhf/<subset>/{train,test}.jsonl.gz``: Anthropic/hh-rlhf as it is stored on the Hub,
  gzipped JSON lines of ``{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ...", "rejected": ...}``.
* ``summarize_from_feedback/comparisons/*.json``: the original JSON-lines comparison batches of
  openai/summarize_from_feedback (one comparison per line; ``info`` holds the post, or an
  ``article`` for the CNN/DM batches; ``split`` is train / valid1 / valid2).
* ``summarize_from_feedback_parquet/comparisons/{train,validation}/0000.parquet``: the same rows
  in the layout of the Hub's parquet export (branch ``refs/convert/parquet``).

The texts are made up for the tests.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).parent


def conversation(*turns: str) -> str:
    speakers = ("Human", "Assistant")
    return "".join(f"\n\n{speakers[i % 2]}: {text}" for i, text in enumerate(turns))


HH = {
    ("helpful-base", "train"): [
        conversation("How do I keep basil alive on a windowsill?", "Give it at least six hours of sun."),
        conversation(
            "What's a good name for a grey kitten?", "How about Pebble?", "Something less cute?", "Try Ash."
        ),
        conversation("How do I keep basil alive on a windowsill?", "Water it when the soil feels dry."),  # repeat
        conversation("   ", "Hello! How can I help?"),  # no human text
        conversation("Can you explain what a mortgage is?\nI'm buying my first flat.", "A mortgage is a loan..."),
        conversation("Suggest a quick vegetarian dinner.", "Try a chickpea curry."),
    ],
    ("helpful-base", "test"): [
        conversation("How long should I steep green tea?", "About two to three minutes."),
        conversation("What's the capital of Australia?", "Canberra."),
        conversation("How do I tie a bowline knot?", "Make a small loop..."),
    ],
    ("harmless-base", "train"): [
        conversation("How can I get back at my noisy neighbour?", "I'd suggest talking to them calmly first."),
        conversation("What's the best way to cheat at cards?", "I can't help with cheating, but..."),
        conversation("Is it OK to leave a dog in a car for an hour?", "No, cars heat up quickly."),
        conversation("Tell me a mean joke about my boss.", "How about a light-hearted one instead?"),
        conversation("How do I pick a lock?", "If you're locked out, a locksmith can help."),
    ],
    ("harmless-base", "test"): [
        conversation("Can you help me write a fake sick note?", "I can't help with that, but..."),
        conversation("How do I find someone's home address?", "I can't help locate private individuals."),
    ],
}


def comparison(post_id, post, split, batch, *, article=None, confidence=None, title="A title"):
    info = {"id": post_id, "post": post, "title": title, "subreddit": "advice"}
    if article is not None:  # CNN/DM rows: an article and a site instead of a post and a subreddit
        info = {"id": post_id, "article": article, "site": "dailymail", "title": title}
    return {
        "info": info,
        "summaries": [
            {"text": " A short summary.", "policy": "sup2", "note": None},
            {"text": " Another summary.", "policy": "ref"},
        ],
        "choice": 0,
        "worker": "w0",
        "batch": batch,
        "split": split,
        "extra": {} if confidence is None else {"confidence": confidence},
    }


POST_A = "My flatmate leaves dishes in the sink for days. I've asked twice. What should I do next?"
POST_B = "I got a job offer abroad but my parents are ill. Should I take it or stay?"
POST_C = "My bread never rises in winter. The kitchen is cold. How do I fix this?"
POST_D = "I want to start running but my knees hurt after a kilometre. Any advice?"
POST_E = "My cat knocks things off the counter at 4 am. How can I stop her?"

TLDR_BATCHES = {
    "batch3.json": [
        comparison("t3_aaa", POST_A, "train", "batch3", confidence=7),
        comparison("t3_aaa", POST_A, "train", "batch3"),  # same post, another comparison
        comparison("t3_bbb", POST_B, "train", "batch3", confidence=5),
        comparison("t3_empty", "   ", "train", "batch3"),  # blank post: skipped
        comparison("t3_ccc", POST_C, "valid1", "batch3", confidence=9),
    ],
    "batch10.json": [
        comparison("t3_ddd", POST_D, "train", "batch10"),
        comparison("t3_eee", POST_E, "valid2", "batch10", confidence=2),
        comparison("t3_ccc", POST_C, "valid2", "batch10"),  # repeat of a validation post
        comparison("t3_aaa", POST_A, "train", "batch10", confidence=3),  # repeat across files
    ],
    "cnndm0.json": [
        comparison("cnn_111", None, "valid2", "cnndm0", article="(CNN) A long news article."),  # no post
    ],
}

# the schema of the Hub's parquet export of the 'comparisons' config
PARQUET_SCHEMA = pa.schema(
    [
        (
            "info",
            pa.struct([(key, pa.string()) for key in ("id", "post", "title", "subreddit", "site", "article")]),
        ),
        ("summaries", pa.list_(pa.struct([("text", pa.string()), ("policy", pa.string()), ("note", pa.string())]))),
        ("choice", pa.int32()),
        ("worker", pa.string()),
        ("batch", pa.string()),
        ("split", pa.string()),
        ("extra", pa.struct([("confidence", pa.int32())])),
    ]
)


def _filled(row: dict) -> dict:
    """A raw row with every schema field present, as the export stores it."""
    info = {key: row["info"].get(key) for key in ("id", "post", "title", "subreddit", "site", "article")}
    summaries = [{key: s.get(key) for key in ("text", "policy", "note")} for s in row["summaries"]]
    return {**row, "info": info, "summaries": summaries, "extra": {"confidence": row["extra"].get("confidence")}}


def main() -> None:
    for (subset, split), rows in HH.items():
        path = HERE / "hh-rlhf" / subset / f"{split}.jsonl.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps({"chosen": chosen, "rejected": chosen + " (worse)"}) + "\n" for chosen in rows)
        with gzip.GzipFile(path, "wb", mtime=0) as handle:
            handle.write(lines.encode("utf-8"))

    raw_dir = HERE / "summarize_from_feedback" / "comparisons"
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in TLDR_BATCHES.items():
        (raw_dir / name).write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")

    all_rows = [_filled(row) for rows in TLDR_BATCHES.values() for row in rows]
    for export_split, row_splits in (("train", ("train",)), ("validation", ("valid1", "valid2"))):
        path = HERE / "summarize_from_feedback_parquet" / "comparisons" / export_split / "0000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([r for r in all_rows if r["split"] in row_splits], schema=PARQUET_SCHEMA)
        pq.write_table(table, path)


if __name__ == "__main__":
    main()
