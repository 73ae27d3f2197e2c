"""data/hf_datasets.py: ``save_to_disk`` folders and hub ids as data sources, read as files are, with
(dataset@split, row) provenance."""

from __future__ import annotations

import csv
import datetime
import json

import pytest

from less_select.data import load_examples
from less_select.data.hf_datasets import parse_source, resolve_source, source_sha256
from less_select.errors import UserError

from ..conftest import make_pool_records, write_jsonl

datasets = pytest.importorskip("datasets")

pytestmark = pytest.mark.usefixtures("quiet_datasets")


ALPACA = [{"instruction": f"Add {i} and 1.", "input": "", "output": str(i + 1), "task": "add"}
          for i in range(5)]


def save(rows, path, split=None):
    ds = datasets.Dataset.from_list(rows, split=split)
    ds.save_to_disk(str(path))
    return path


def test_folder_is_read_like_a_file_with_row_provenance(tmp_path):
    folder = save(ALPACA, tmp_path / "pool_ds")
    examples, report = load_examples([folder])
    assert len(examples) == 5 and report.read == {str(folder): 5}
    ex = examples[2]
    # line N is row N - 1; ids default to name:line as for files
    assert (ex.source, ex.line, ex.id, ex.format) == (str(folder), 3, "pool_ds:3", "alpaca")
    assert ex.messages[0]["content"] == "Add 2 and 1." and ex.raw == ALPACA[2]


def test_dataset_dict_split_is_named_or_the_only_one(tmp_path):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(make_pool_records(4)),
                               "test": datasets.Dataset.from_list(make_pool_records(2, seed=3))})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(UserError, match=r"dd: the dataset has several splits; name one of train, test "
                                        r"as .*dd@train"):
        load_examples([tmp_path / "dd"])
    examples, _ = load_examples([f"{tmp_path / 'dd'}@test"])
    assert [e.source for e in examples] == [f"{tmp_path / 'dd'}@test"] * 2
    assert examples[1].id == "toy_1" and examples[1].line == 2
    with pytest.raises(UserError, match="has no split 'dev'; name one of train, test"):
        load_examples([f"{tmp_path / 'dd'}@dev"])
    datasets.DatasetDict({"only": dd["test"]}).save_to_disk(str(tmp_path / "one"))
    assert load_examples([tmp_path / "one"])[0][0].source == f"{tmp_path / 'one'}@only"


def test_datasets_and_files_together_and_split_name_of_a_single_dataset(tmp_path):
    folder = save(make_pool_records(3), tmp_path / "msgs", split="train")
    jsonl = write_jsonl(tmp_path / "more.jsonl", make_pool_records(2, seed=5))
    examples, report = load_examples([folder, jsonl])
    assert [e.source for e in examples] == [f"{folder}@train"] * 3 + [str(jsonl)] * 2
    assert report.total_read == 5
    with pytest.raises(UserError, match="holds the split 'train', not 'test'"):
        load_examples([f"{folder}@test"])


def test_bad_rows_name_dataset_and_row_and_lenient_counts_them(tmp_path):
    rows = [dict(r) for r in ALPACA]
    rows[3]["output"] = ""
    folder = save(rows, tmp_path / "bad")
    with pytest.raises(UserError, match=r"bad:4: field 'output' is empty .*--lenient"):
        load_examples([folder])
    examples, report = load_examples([folder], lenient=True)
    assert len(examples) == 4 and report.skipped == {str(folder): 1}
    assert report.skipped_examples[0].startswith(f"{folder}:4: field 'output' is empty")


def test_max_per_file_keeps_the_first_rows(tmp_path):
    folder = save(ALPACA, tmp_path / "pool_ds")
    examples, _ = load_examples([folder], max_per_file=2)
    assert [e.line for e in examples] == [1, 2]


def test_values_json_cannot_hold_are_written_back_as_json(tmp_path):
    rows = [{"prompt": "When?", "completion": " Now.", "when": datetime.date(2024, 5, 1)}]
    examples, _ = load_examples([save(rows, tmp_path / "dated")])
    assert examples[0].raw["when"] == "2024-05-01"
    json.dumps(examples[0].raw)


def test_source_grammar():
    src = parse_source("hf:org/name:cfg@validation")
    assert (src.name, src.hub, src.config, src.split) == ("org/name", True, "cfg", "validation")
    assert src.label() == "hf:org/name:cfg@validation"
    assert parse_source("hf:squad").label() == "hf:squad"
    assert parse_source("pool.jsonl") is None and parse_source("no/such@train") is None
    for bad in ("hf:", "hf:org/name@", "hf:org/name:@train"):
        with pytest.raises(UserError, match="hf:ID, hf:ID@SPLIT or hf:ID:CONFIG@SPLIT"):
            parse_source(bad)
    assert resolve_source("hf:org/name@train") == "hf:org/name@train"


def test_resolve_source_makes_folders_absolute(tmp_path, monkeypatch):
    save(ALPACA, tmp_path / "pool_ds")
    monkeypatch.chdir(tmp_path)
    assert resolve_source("pool_ds@train") == f"{tmp_path / 'pool_ds'}@train"
    assert resolve_source("x.jsonl") == str(tmp_path / "x.jsonl")


def test_hub_id_offline_is_a_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"hf:less-select/no-such-set@train: cannot reach the Hugging "
                                        r"Face hub .*network access.*save_to_disk"):
        load_examples(["hf:less-select/no-such-set@train"])


def test_content_hash_follows_the_rows(tmp_path):
    a = source_sha256(save(ALPACA, tmp_path / "a"))
    assert a == source_sha256(save(ALPACA, tmp_path / "b"))  # content, not the folder's name
    changed = [dict(r) for r in ALPACA]
    changed[0]["output"] = "x"
    assert source_sha256(save(changed, tmp_path / "c")) != a
    assert source_sha256(tmp_path / "missing") is None


def test_baseline_scores_record_dataset_and_row(tmp_path):
    from less_select.baselines.stage import BaselineConfig, run_baseline
    folder = save(make_pool_records(10), tmp_path / "pool_ds", split="train")
    targets = write_jsonl(tmp_path / "t.jsonl", make_pool_records(2, seed=9))
    run_baseline(BaselineConfig(method="bm25", data=[f"{folder}@train"], task=str(targets),
                                output_dir=str(tmp_path / "sel"), top_k=3))
    with open(tmp_path / "sel" / "scores.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10
    assert {r["file"] for r in rows} == {f"{folder}@train"}
    assert sorted(int(r["line"]) for r in rows) == list(range(1, 11))
    by_id = {r["id"]: int(r["line"]) for r in rows}
    assert by_id["toy_7"] == 8  # row 7 of the split


def test_datastore_and_select_record_dataset_and_row(tmp_path, tiny_model_dir, target_file):
    """A datasets folder through datastore -> index.jsonl -> select -> scores.csv and the selection
    JSONL, and the store notices when the dataset changes."""
    from less_select.datastore.build import TargetsConfig, run_datastore, run_targets
    from less_select.select_stage import SelectConfig, run_select

    from ..datastore.test_build import ds_config, make_checkpoints
    make_checkpoints(tiny_model_dir, tmp_path / "warmup", n=1)
    records = make_pool_records(8)
    folder = save(records, tmp_path / "pool_ds", split="train")
    store = run_datastore(ds_config(tmp_path, tiny_model_dir, f"{folder}@train", projector="sparse",
                                    dims=[16], dtype="float32"))
    index = [json.loads(x) for x in (store / "index.jsonl").read_text().splitlines()]
    assert {r["file"] for r in index} == {f"{folder}@train"}
    assert sorted(r["line"] for r in index) == list(range(1, 9))
    targets = run_targets(TargetsConfig(task=str(target_file), datastore=str(store),
                                        output_dir=str(tmp_path / "targets")))
    report = run_select(SelectConfig(datastore=str(store), targets=str(targets),
                                     output_dir=str(tmp_path / "sel"), top_k=3))
    with open(tmp_path / "sel" / "scores.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["file"] for r in rows} == {f"{folder}@train"}
    for r in rows:  # each row names the dataset row it scored
        assert records[int(r["line"]) - 1]["id"] == r["id"]
    selected = [json.loads(x) for x in (tmp_path / "sel" / "top_k3.jsonl").read_text().splitlines()]
    assert selected == [records[int(r["line"]) - 1] for r in rows[:3]] and report["n_selected"] == 3
    changed = [dict(r) for r in records]
    changed[0]["messages"] = [{"role": "user", "content": "new"}, {"role": "assistant", "content": "x"}]
    save(changed, tmp_path / "pool_ds2", split="train")
    import shutil
    shutil.rmtree(folder)
    (tmp_path / "pool_ds2").rename(folder)
    with pytest.raises(UserError, match="changed since .* was built; rebuild the datastore"):
        run_select(SelectConfig(datastore=str(store), targets=str(targets),
                                output_dir=str(tmp_path / "sel2"), top_k=3))


def test_targets_from_a_datasets_folder(tmp_path):
    from less_select.data.targets import build_target_examples, task_name
    rows = [dict(r, subtask="a" if i < 2 else None) for i, r in enumerate(make_pool_records(4))]
    folder = save(rows, tmp_path / "tgt", split="validation")
    examples = build_target_examples(f"{folder}@validation")
    assert [e.subtask for e in examples] == ["a", "a", "tgt@validation", "tgt@validation"]
    assert task_name(f"{folder}@validation") == "tgt@validation"
