"""export.py: a selection as an HF dataset folder and a LLaMA-Factory dataset_info.json entry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from less_select.data import load_examples
from less_select.errors import UserError
from less_select.export import parse_formats
from less_select.selection import BudgetConfig, write_selection

from ..conftest import make_pool_records, write_jsonl

datasets = pytest.importorskip("datasets")

pytestmark = pytest.mark.usefixtures("quiet_datasets")


def _select(tmp_path, files, export, top_k=3, out="sel"):
    examples, _ = load_examples(files)
    scores = np.linspace(0.0, 1.0, len(examples))  # the last examples score best
    return examples, write_selection(tmp_path / out, examples, scores,
                                     BudgetConfig(top_k=top_k, export=export), "less")


def test_parse_formats():
    assert parse_formats(["hf,llamafactory"]) == ["hf", "llamafactory"]
    assert parse_formats(["LlamaFactory", "hf", "hf"]) == ["llamafactory", "hf"]
    assert parse_formats([]) == [] and parse_formats("none") == []
    with pytest.raises(UserError, match="--export: unknown export 'trl'; choose from hf, llamafactory"):
        parse_formats(["hf,trl"])


def test_budget_rejects_unknown_export():
    from less_select.configs import from_dict
    with pytest.raises(UserError, match="unknown export 'csv'"):
        from_dict(BudgetConfig, {"export": ["csv"]})


def test_hf_folder_holds_the_selection_best_first(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(8))
    examples, report = _select(tmp_path, [pool], ["hf"])
    ds = datasets.load_from_disk(str(tmp_path / "sel" / "top_k3_hf"))
    assert ds.column_names == ["id", "rank", "score", "source", "line", "messages"]
    assert ds["id"] == ["toy_7", "toy_6", "toy_5"] and ds["rank"] == [1, 2, 3]
    assert ds["line"] == [8, 7, 6] and ds["source"] == [str(pool)] * 3
    assert ds[0]["messages"] == examples[7].messages
    assert report["exports"] == {"hf": {"folder": "top_k3_hf"}}


def test_hf_prompt_completion_columns(tmp_path):
    recs = [{"prompt": f"Q{i}:", "completion": f" A{i}"} for i in range(4)]
    _select(tmp_path, [write_jsonl(tmp_path / "pc.jsonl", recs)], ["hf"], top_k=2)
    ds = datasets.load_from_disk(str(tmp_path / "sel" / "top_k2_hf"))
    assert "messages" not in ds.column_names
    assert ds["prompt"] == ["Q3:", "Q2:"] and ds["completion"] == [" A3", " A2"]


def test_llamafactory_entry_reads_the_jsonl_as_it_is(tmp_path):
    alpaca = [{"instruction": f"Say {i}.", "input": "", "output": str(i)} for i in range(5)]
    _select(tmp_path, [write_jsonl(tmp_path / "a.jsonl", alpaca)], ["llamafactory"])
    info = json.loads((tmp_path / "sel" / "dataset_info.json").read_text())
    assert info == {"less_top_k3": {
        "file_name": "top_k3.jsonl", "formatting": "alpaca",
        "columns": {"prompt": "instruction", "query": "input", "response": "output"}}}
    first = json.loads((tmp_path / "sel" / "top_k3.jsonl").read_text().splitlines()[0])
    assert first["instruction"] == "Say 4."  # the columns name the JSONL's own keys


def test_llamafactory_sharegpt_tags_follow_the_data(tmp_path):
    recs = [{"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": "yo"}]}
            for i in range(4)]
    _select(tmp_path, [write_jsonl(tmp_path / "s.jsonl", recs)], ["llamafactory"], top_k=2)
    entry = json.loads((tmp_path / "sel" / "dataset_info.json").read_text())["less_top_k2"]
    assert entry["columns"] == {"messages": "conversations"}
    assert entry["tags"] == {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                             "assistant_tag": "gpt", "system_tag": "system"}


def test_llamafactory_mixed_pool_gets_a_normalized_file(tmp_path):
    msgs = write_jsonl(tmp_path / "m.jsonl", make_pool_records(3))
    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Say 9.", "input": "", "output": "9"}])
    odd = make_pool_records(1, seed=4)[0]
    odd["id"] = "odd_0"
    odd["messages"].insert(0, {"role": "assistant", "content": "Hello."})
    odd_file = write_jsonl(tmp_path / "odd.jsonl", [odd])
    _, report = _select(tmp_path, [msgs, alpaca, odd_file], ["llamafactory"], top_k=5)
    entry = json.loads((tmp_path / "sel" / "dataset_info.json").read_text())["less_top_k5"]
    assert entry["file_name"] == "top_k5.messages.jsonl" and entry["columns"] == {"messages": "messages"}
    rows = [json.loads(x) for x in (tmp_path / "sel" / "top_k5.messages.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["odd_0", "a:1", "toy_2", "toy_1", "toy_0"]
    assert rows[1]["messages"] == [{"role": "user", "content": "Say 9."},
                                   {"role": "assistant", "content": "9"}]
    # the assistant-first conversation is one LLaMA-Factory would skip: counted, not hidden
    assert report["exports"]["llamafactory"]["not_alternating"] == 1


def test_rerun_without_export_removes_stale_exports(tmp_path):
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(6))
    _select(tmp_path, [pool], ["hf", "llamafactory"])
    assert (tmp_path / "sel" / "top_k3_hf").is_dir() and (tmp_path / "sel" / "dataset_info.json").is_file()
    _, report = _select(tmp_path, [pool], [])
    assert not (tmp_path / "sel" / "top_k3_hf").exists()
    assert not (tmp_path / "sel" / "dataset_info.json").exists()
    assert "exports" not in report


def test_failed_hf_export_keeps_the_earlier_one(tmp_path, monkeypatch):
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(6))
    _select(tmp_path, [pool], ["hf"])

    def refuse(self, path, *a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(datasets.Dataset, "save_to_disk", refuse)
    with pytest.raises(OSError, match="disk full"):
        _select(tmp_path, [pool], ["hf"], top_k=3)
    assert datasets.load_from_disk(str(tmp_path / "sel" / "top_k3_hf"))["rank"] == [1, 2, 3]
    assert not any(p.name.startswith(".") for p in (tmp_path / "sel").iterdir())


def test_cli_export_flag_takes_a_comma_list(tmp_path, capsys):
    from less_select.cli import main
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(6))
    out = tmp_path / "rand"
    assert main(["baseline", "--method", "random", "--data", str(pool), "--output-dir", str(out),
                 "--top-k", "2", "--export", "hf,llamafactory"]) == 0
    assert (out / "top_k2_hf").is_dir() and "random_top_k2" in json.loads((out / "dataset_info.json").read_text())
    assert main(["baseline", "--method", "random", "--data", str(pool), "--output-dir", str(tmp_path / "x"),
                 "--export", "csv"]) == 2
    assert "--export: unknown export 'csv'; choose from hf, llamafactory" in capsys.readouterr().err


def test_rerun_with_other_exports_updates_a_finished_selection(tmp_path, monkeypatch):
    """A finished selection rerun with other ``--export`` values gets those exports written or
    removed, without the selection being recomputed, and with the same rows and provenance as a
    fresh run's export; other changed settings are still refused."""
    from less_select.cli import main
    from less_select.baselines import stage as baseline_stage
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(8))
    args = ["baseline", "--method", "random", "--data", str(pool), "--top-k", "3"]
    assert main(args + ["--output-dir", str(tmp_path / "fresh"), "--export", "hf,llamafactory"]) == 0
    out = tmp_path / "later"
    assert main(args + ["--output-dir", str(out)]) == 0
    selected = (out / "top_k3.jsonl").read_bytes()

    def no_rescoring(*a, **k):
        raise AssertionError("the selection was recomputed")
    monkeypatch.setattr(baseline_stage, "score_per_subtask", no_rescoring)
    assert main(args + ["--output-dir", str(out), "--export", "hf,llamafactory"]) == 0
    assert (out / "top_k3.jsonl").read_bytes() == selected
    got = datasets.load_from_disk(str(out / "top_k3_hf")).to_list()
    want = datasets.load_from_disk(str(tmp_path / "fresh" / "top_k3_hf")).to_list()
    for g, w in zip(got, want, strict=True):
        assert g.pop("score") == pytest.approx(w.pop("score"), rel=1e-7)
        assert g == w                                      # id, rank, source, line, messages
    report = json.loads((out / "selection.json").read_text())
    assert sorted(report["exports"]) == ["hf", "llamafactory"]
    assert json.loads((out / "dataset_info.json").read_text()) == \
        json.loads((tmp_path / "fresh" / "dataset_info.json").read_text())
    assert main(args + ["--output-dir", str(out)]) == 0   # and dropped again
    assert not (out / "top_k3_hf").exists() and not (out / "dataset_info.json").exists()
    assert "exports" not in json.loads((out / "selection.json").read_text())
    assert main(args[:-1] + ["4", "--output-dir", str(out)]) == 2  # another budget: refused as before


@pytest.mark.parametrize("damage,named", [
    (lambda out: (out / "scores.csv").write_text("rank,score\n1,x\n"), "scores.csv"),
    (lambda out: (out / "scores.csv").unlink(), "scores.csv"),
    (lambda out: (out / "selection.json").write_text("{not json"), "selection.json"),
    (lambda out: (out / "top_k3.jsonl").write_text(""), "top_k3.jsonl: the file holds no records"),
    (lambda out: (out / "top_k3.jsonl").write_text(
        "".join((out / "top_k3.jsonl").read_text().splitlines(keepends=True)[:2])), "do not match selection.json"),
])
def test_damaged_selection_folder_refuses_new_exports_in_one_line(tmp_path, capsys, damage, named):
    """Adding exports to a damaged finished selection: a one-line error naming what is wrong, and
    nothing in the folder changed (its earlier export is kept)."""
    from less_select.cli import main
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(8))
    out = tmp_path / "sel"
    args = ["baseline", "--method", "random", "--data", str(pool), "--top-k", "3", "--output-dir", str(out)]
    assert main(args + ["--export", "hf"]) == 0
    damage(out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(args + ["--export", "hf,llamafactory"]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and "--overwrite" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
