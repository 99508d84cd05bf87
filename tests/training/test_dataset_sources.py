"""Training records from any source (a JSONL file, a ``datasets`` Dataset/DatasetDict, a ``save_to_disk`` folder, a
data folder standing in for a hub dataset, a hub id) go through the same validation and ``dropped`` filter."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict
from helpers import make_records

from sami.errors import MissingFileError
from sami.jsonl import write_jsonl
from sami.record_sources import EVAL_SPLITS, DatasetSourceError, read_rows
from sami.records import RecordError
from sami.training import SAMIConfig, SAMIDataset, SAMITrainer
from sami.training.dataset import as_dataset


def _records_with_one_dropped(n: int = 4) -> list[dict]:
    records = make_records(n)
    records[1]["dropped"] = "identical"
    return records


def _kept_ids(dataset: SAMIDataset) -> list[str]:
    return [record["query_id"] for record in dataset.records]


def test_a_datasets_dataset_is_filtered_and_validated():
    """The bug of issue 11: a Dataset passed to the trainer kept a record dropped as identical."""
    dataset = as_dataset(Dataset.from_list(_records_with_one_dropped()))
    assert isinstance(dataset, SAMIDataset)
    assert _kept_ids(dataset) == ["q0", "q2", "q3"]
    assert dataset.dropped_reasons == {"identical": 1}
    single = make_records(2)
    single[0]["constitutions"], single[0]["responses"] = single[0]["constitutions"][:1], single[0]["responses"][:1]
    single[0]["response_tokens"], single[0]["finish_reasons"] = [3], ["eos"]
    single[0]["prompts"], single[0]["reasoning"] = [""], [None]
    with pytest.raises(RecordError, match="1 constitution"):
        as_dataset(Dataset.from_list([single[1], single[0]]))


def test_the_trainer_gets_the_filtered_records(tokenizer, model_factory, tmp_path):
    args = SAMIConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=2, report_to="none")
    trainer = SAMITrainer(model_factory(), args, train_dataset=Dataset.from_list(_records_with_one_dropped()),
                          eval_dataset={"held_out": Dataset.from_list(make_records(2))}, processing_class=tokenizer)
    assert _kept_ids(trainer.train_dataset) == ["q0", "q2", "q3"]
    assert _kept_ids(trainer.eval_dataset["held_out"]) == ["q0", "q1"]


def test_dataset_dicts_give_their_one_split_or_the_named_one():
    records = _records_with_one_dropped()
    one = DatasetDict({"train": Dataset.from_list(records)})
    assert _kept_ids(SAMIDataset(one)) == ["q0", "q2", "q3"]
    two = DatasetDict({"train": Dataset.from_list(records), "eval": Dataset.from_list(make_records(2))})
    with pytest.raises(DatasetSourceError, match=r"splits \['train', 'eval'\]"):
        SAMIDataset(two)
    assert _kept_ids(SAMIDataset(two, splits=("train",))) == ["q0", "q2", "q3"]
    assert _kept_ids(SAMIDataset(two, splits=EVAL_SPLITS)) == ["q0", "q1"]


def test_saved_folders_data_folders_and_files(tmp_path):
    records = _records_with_one_dropped()
    Dataset.from_list(records).save_to_disk(tmp_path / "saved")
    DatasetDict({"train": Dataset.from_list(records), "test": Dataset.from_list(make_records(2))}).save_to_disk(
        tmp_path / "saved_dict"
    )
    # the layout of a hub dataset repository: data files that datasets.load_dataset reads
    (tmp_path / "hub_like" / "data").mkdir(parents=True)
    Dataset.from_list(records).to_parquet(tmp_path / "hub_like" / "data" / "train-00000-of-00001.parquet")
    (tmp_path / "jsonl_dir").mkdir()
    write_jsonl(records, tmp_path / "jsonl_dir" / "train.jsonl")
    Dataset.from_list(records).to_parquet(tmp_path / "generations.parquet")
    write_jsonl(records, tmp_path / "generations.jsonl")

    for source in ("saved", "hub_like", "jsonl_dir", "generations.parquet", "generations.jsonl"):
        dataset = SAMIDataset(tmp_path / source)
        assert _kept_ids(dataset) == ["q0", "q2", "q3"], source
        assert dataset.dropped_reasons == {"identical": 1}, source
        assert dataset[0]["responses"] == records[0]["responses"], source
    assert _kept_ids(SAMIDataset(str(tmp_path / "saved_dict"), splits=EVAL_SPLITS)) == ["q0", "q1"]


def test_a_pushed_dataset_reads_back_as_the_records(tmp_path):
    """sami pushes a run's generations with free-form fields as JSON text (sami.hub): they read back as dicts."""
    from sami.hub import generations_dataset

    records = _records_with_one_dropped()
    write_jsonl(records, tmp_path / "generations.jsonl")
    write_jsonl(make_records(2), tmp_path / "eval_generations.jsonl")
    DatasetDict({"train": generations_dataset(tmp_path / "generations.jsonl"),
                 "eval": generations_dataset(tmp_path / "eval_generations.jsonl")}).save_to_disk(tmp_path / "iter_1")
    rows = read_rows(tmp_path / "iter_1", splits=("train",))
    assert [row["provenance"] for row in rows] == [record["provenance"] for record in records]
    assert _kept_ids(SAMIDataset(tmp_path / "iter_1", splits=("train",))) == ["q0", "q2", "q3"]


def test_missing_sources_and_unreachable_hub_ids_name_the_fix(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    with pytest.raises(MissingFileError, match="not found"):
        SAMIDataset(tmp_path / "missing.jsonl")
    with pytest.raises(MissingFileError, match="hub dataset id"):
        SAMIDataset("./no/such/folder")
    # no network in tests: offline mode makes the hub call fail at once, as it would without a connection
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetSourceError, match="cannot load the hub dataset 'sami-tests/no-such-dataset' "
                                                 r"\(config 'iter_1'\).*download it and give its folder"):
        SAMIDataset("sami-tests/no-such-dataset:iter_1")


def test_sami_train_takes_a_parquet_file_and_skips_dropped_records(tmp_path, tokenizer, model_factory):
    from sami.scripts.train import main

    base = tmp_path / "base"
    model_factory().save_pretrained(base)
    tokenizer.save_pretrained(base)
    Dataset.from_list(_records_with_one_dropped()).to_parquet(tmp_path / "train.parquet")  # a hub dataset's data file
    write_jsonl(make_records(2), tmp_path / "eval.jsonl")
    out = tmp_path / "checkpoint"
    code = main(["--model", str(base), "--generations", str(tmp_path / "train.parquet"), "--eval_generations",
                 str(tmp_path / "eval.jsonl"), "--output_dir", str(out), "--max_steps", "1", "--use_cpu", "true",
                 "--per_device_train_batch_size", "3", "--per_device_eval_batch_size", "2", "--disable_tqdm", "true",
                 "--dataloader_pin_memory", "false", "--attn_implementation", "eager"])
    assert code == 0
    state = json.loads((out / "trainer_state.json").read_text())
    assert [h for h in state["log_history"] if "loss" in h]  # the step ran on the 3 kept records
    assert any("eval_mi/bound" in h for h in state["log_history"])  # the held-out records were scored
