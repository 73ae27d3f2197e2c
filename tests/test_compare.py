"""``less-select compare`` end to end on the tiny model: report structure, budget, shares, Jaccard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from less_select.compare import CompareConfig, jaccard_matrix, load_compare_config, run_compare
from less_select.errors import UserError

from .conftest import make_pool_records, write_jsonl

METHODS = ["less", "random", "bm25", "dsir"]


def tiny_compare(tmp_path: Path, model_dir, pool_files, target_file, **kw) -> dict:
    train = dict(epochs=1, max_steps=2, per_device_batch_size=4, effective_batch_size=4, lora_r=2, lora_alpha=4,
                 learning_rate=1e-3, warmup_ratio=0.0, dtype="float32", logging_steps=1)
    cfg = dict(
        model=str(model_dir), data=[str(f) for f in pool_files], task=str(target_file),
        output_dir=str(tmp_path / "cmp"), methods=METHODS, include_full=True, percentage=0.25,
        max_seq_length=64,
        warmup={"percentage": 0.5, "epochs": 1, "per_device_batch_size": 4,
                "effective_batch_size": 4, "lora_r": 2, "lora_alpha": 4, "learning_rate": 1e-3,
                "warmup_ratio": 0.0, "dtype": "float32"},
        datastore={"dims": [16], "projector": "sparse", "dtype": "float32", "chunk_size": 64},
        train=train)
    cfg.update(kw)
    return run_compare(cfg)


def brute_jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


def selected_ids(out: Path, report: dict, method: str) -> set[str]:
    sel = report["selections"][method]
    path = Path(sel["dir"]) / sel["file"]
    return {json.loads(line)["id"] for line in path.read_text().splitlines()}


@pytest.mark.slow
def test_compare_end_to_end(tmp_path, tiny_model_dir, target_file):
    pool_a = write_jsonl(tmp_path / "a" / "pool_a.jsonl", make_pool_records(24, seed=0))
    recs = make_pool_records(16, seed=5)
    for r in recs:
        r["id"] = "b_" + r["id"]
        r["task"] = "tb" if int(r["id"].split("_")[-1]) % 2 else "t0"
    pool_b = write_jsonl(tmp_path / "b" / "pool_b.jsonl", recs)
    report = tiny_compare(tmp_path, tiny_model_dir, [pool_a, pool_b], target_file)
    out = tmp_path / "cmp"

    # files and structure
    assert (out / "report" / "comparison.json").is_file()
    md = (out / "report" / "comparison.md").read_text()
    assert json.loads((out / "report" / "comparison.json").read_text())["rows"] == report["rows"]
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["base", *METHODS, "full"]
    col = "loss:target"
    assert report["metric_columns"] == [col]
    for name, r in rows.items():
        assert math.isfinite(r["metrics"][col]), name
        assert f"| {name} |" in md
    for section in ("Share of each pool source", "Share of each pool `task`", "Jaccard"):
        assert section in md
    assert "| method | n selected | selection s | n trained | train steps | train s |" in md
    assert "reused" not in md

    # budget: every method selects floor(p * |pool|)
    n_pool = 24 + 16
    assert report["pool"]["n"] == n_pool
    k = int(0.25 * n_pool)
    assert report["budget"]["n_select"] == k
    for m in METHODS:
        assert rows[m]["n_selected"] == k
        assert len(selected_ids(out, report, m)) == k
        assert rows[m]["selection_seconds"] > 0
        assert rows[m]["train_seconds"] > 0
        assert rows[m]["train_steps"] == 2
    assert rows["full"]["n_selected"] == n_pool and rows["base"]["n_selected"] == 0
    assert rows["base"]["train_seconds"] is None
    less = report["less_cost_breakdown"]
    assert set(less["breakdown"]) == {"warmup", "datastore", "targets", "select"}
    assert less["seconds"] == pytest.approx(sum(less["breakdown"].values()))
    assert rows["less"]["selection_seconds"] == pytest.approx(less["seconds"])

    # shares sum to 1 and match the selected files
    for m in METHODS:
        sh = report["shares"][m]
        assert sum(sh["by_source"].values()) == pytest.approx(1.0)
        assert sum(sh["by_task"].values()) == pytest.approx(1.0)
        ids = selected_ids(out, report, m)
        assert sh["by_source"].get("pool_b.jsonl", 0.0) == pytest.approx(
            sum(i.startswith("b_") for i in ids) / k)
    assert report["pool"]["share_by_source"] == pytest.approx({"pool_a.jsonl": 0.6, "pool_b.jsonl": 0.4})

    # Jaccard: symmetric, 1 on the diagonal, equal to a brute-force set computation
    jac = report["jaccard"]
    assert list(jac) == METHODS
    for a in METHODS:
        assert jac[a][a] == 1.0
        for b in METHODS:
            assert jac[a][b] == jac[b][a]
            assert jac[a][b] == pytest.approx(brute_jaccard(selected_ids(out, report, a),
                                                            selected_ids(out, report, b)))

    # a rerun reuses every stage and reports the costs measured the first time
    again = run_compare(dict(json.loads((out / "report" / "comparison.json").read_text())["config"]))
    assert [r["selection_seconds"] for r in again["rows"]] == [r["selection_seconds"] for r in report["rows"]]
    assert [r["train_seconds"] for r in again["rows"]] == [r["train_seconds"] for r in report["rows"]]
    assert all(again["less_cost_breakdown"]["reused"].values())
    assert all(t["reused"] for t in again["training"].values())
    assert all(e["reused"] for e in again["evaluation"].values())
    assert again["jaccard"] == report["jaccard"]


def test_jaccard_matrix_matches_sets():
    sets = {"a": [1, 2, 3, 4], "b": [3, 4, 5], "c": [9], "d": [1, 2, 3, 4]}
    jac = jaccard_matrix(sets)
    for x in sets:
        for y in sets:
            assert jac[x][y] == pytest.approx(brute_jaccard(set(sets[x]), set(sets[y])))
    assert jac["a"]["d"] == 1.0 and jac["a"]["c"] == 0.0


def test_options_are_given_once_and_checked(tmp_path, pool_file):
    base = dict(model="m", data=[str(pool_file)], task="bbh", output_dir=str(tmp_path / "o"))
    from less_select.compare import stage_options
    cfg = load_compare_config(dict(base, seed=7, max_seq_length=64, train={"lora_r": 4, "epochs": 2}))
    opts = stage_options(cfg)
    assert opts["train"] == {"seed": 7, "lora_r": 4, "epochs": 2, "max_seq_length": 64}
    assert opts["warmup"] == {"seed": 7, "max_seq_length": 64}
    assert "seed" not in stage_options(load_compare_config(base))["train"]  # unset: the stage's own
    with pytest.raises(UserError, match="give it once"):  # a compare-wide option and its section
        stage_options(load_compare_config(dict(base, max_seq_length=64, train={"max_seq_length": 32})))
    for removed in ("train_epochs", "train_max_steps", "eval_max_new_tokens", "eval_bbh_max_per_task"):
        with pytest.raises(UserError, match="unknown option"):  # nested fields have one name
            load_compare_config(dict(base, **{removed: 2}))
    with pytest.raises(UserError, match="unknown method"):
        load_compare_config(dict(base, methods=["less", "bogus"]))
    with pytest.raises(UserError, match="required"):
        load_compare_config(dict(base, task=""))
    with pytest.raises(UserError, match="unknown option"):
        load_compare_config(dict(base, nonsense=1))


def test_device_and_dtype_reach_every_model_loading_stage(tmp_path, pool_file):
    from less_select.compare import stage_options
    from less_select.compare.methods import BaselineMethod, Context
    base = dict(model="m", data=[str(pool_file)], task="bbh", output_dir=str(tmp_path / "o"))
    opts = stage_options(load_compare_config(dict(base, device="cpu", dtype="float32")))
    for section in ("warmup", "datastore", "targets", "train", "eval"):
        assert (opts[section]["device"], opts[section]["dtype"]) == ("cpu", "float32"), section
    assert "device" not in opts["select"]
    unset = stage_options(load_compare_config(base))
    assert all("device" not in unset[s] and "dtype" not in unset[s] for s in unset)  # stages' own
    with pytest.raises(UserError, match="give it once"):
        stage_options(load_compare_config(dict(base, device="cpu", train={"device": "auto"})))
    cfg = load_compare_config(dict(base, methods=["rds"], device="cpu", dtype="float32"))
    ctx = Context(config=cfg, options=stage_options(cfg), pool=[str(pool_file)], out=tmp_path / "o",
                  costs=None)
    b_cfg = BaselineMethod().stage_config(ctx, "rds")
    assert (b_cfg.device, b_cfg.dtype) == ("cpu", "float32")


@pytest.mark.parametrize("section,key", [("train", "model"), ("train", "output_dir"),
                                         ("eval", "task"), ("warmup", "pool_files"),
                                         ("datastore", "max_examples"), ("select", "top_k")])
def test_a_field_compare_connects_is_refused_in_its_section_before_any_stage(tmp_path, pool_file,
                                                                             section, key):
    cfg = dict(model="m", data=[str(pool_file)], task=str(pool_file), output_dir=str(tmp_path / "o"),
               methods=["less", "random"], **{section: {key: "x"}})
    with pytest.raises(UserError, match=rf"{section}\.{key} is set by compare itself"):
        run_compare(cfg)
    assert not (tmp_path / "o" / "less_run").exists() and not (tmp_path / "o" / "selections").exists()


def test_set_fills_stage_fields_by_their_own_names(tmp_path, pool_file):
    base = dict(model="m", data=[str(pool_file)], task="bbh", output_dir=str(tmp_path / "o"))
    cfg = load_compare_config(dict(base, set=["train.epochs=2", "eval.max_new_tokens=20",
                                              "datastore.dims=[16, 32]"], train={"lora_r": 4}))
    assert cfg.train == {"lora_r": 4, "epochs": 2} and cfg.eval == {"max_new_tokens": 20}
    assert cfg.datastore == {"dims": [16, 32]} and cfg.set == []
    with pytest.raises(UserError, match="given twice"):
        load_compare_config(dict(base, set=["train.epochs=2"], train={"epochs": 3}))
    for bad in ("train.epochs", "epochs=2", "baselines.k1=1", "nope.x=1"):
        with pytest.raises(UserError, match="SECTION.FIELD=VALUE"):
            load_compare_config(dict(base, set=[bad]))


def test_yaml_config_with_command_line_override(tmp_path, pool_file):
    import yaml
    y = tmp_path / "cmp.yaml"
    y.write_text(yaml.safe_dump({"model": "m", "data": [str(pool_file)], "task": "bbh",
                                 "output_dir": str(tmp_path / "o"), "percentage": 0.1,
                                 "train": {"lora_r": 8}}))
    cfg = load_compare_config(CompareConfig(config=str(y), percentage=0.2))
    assert cfg.percentage == 0.2 and cfg.train == {"lora_r": 8} and cfg.model == "m"


def test_cli_registers_compare():
    import argparse

    from less_select.configs import add_arguments, from_namespace
    p = argparse.ArgumentParser()
    add_arguments(p, CompareConfig)
    ns = p.parse_args(["--model", "m", "--data", "a.jsonl", "b.jsonl", "--task", "bbh",
                       "--output-dir", "o", "--methods", "less", "random", "--include-full",
                       "--set", "train.max_steps=3", "--eval-tasks", "loss:bbh", "bbh"])
    cfg = from_namespace(CompareConfig, ns)
    assert cfg.data == ["a.jsonl", "b.jsonl"] and cfg.include_full and cfg.set == ["train.max_steps=3"]
    assert cfg.eval_tasks == ["loss:bbh", "bbh"] and cfg.methods == ["less", "random"]
    with pytest.raises(SystemExit):
        p.parse_args(["--warmup", "x"])  # nested sections are YAML/Python only


def test_max_examples_writes_the_capped_pool_once(tmp_path, pool_file):
    from less_select.compare import pool_composition, prepare_pool
    cfg = load_compare_config(dict(model="m", data=[str(pool_file)], task="bbh",
                                   output_dir=str(tmp_path / "o"), max_examples=5))
    files = prepare_pool(cfg, tmp_path / "o")
    assert files == [str(tmp_path / "o" / "pool" / "pool.jsonl")]
    lines = Path(files[0]).read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == [f"toy_{i}" for i in range(5)]
    mtime = Path(files[0]).stat().st_mtime_ns
    assert prepare_pool(cfg, tmp_path / "o") == files and Path(files[0]).stat().st_mtime_ns == mtime
    comp = pool_composition(files, False)
    assert comp["n"] == 5 and comp["by_source"] == {"pool.jsonl": 5}


@pytest.mark.slow
def test_compare_runs_the_robust_preset_as_its_own_less_method(tmp_path, tiny_model_dir, target_file):
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(24, seed=0))
    report = tiny_compare(tmp_path, tiny_model_dir, [pool], target_file, methods=["less", "less_robust"],
                          include_full=False)
    out = tmp_path / "cmp"
    faithful = json.loads((out / "less_run" / "datastore" / "manifest.json").read_text())
    robust = json.loads((out / "less_robust_run" / "datastore" / "manifest.json").read_text())
    assert faithful["loss_tokens"] == "completion" and robust["loss_tokens"] == "sequence"
    sel = {m: json.loads((Path(report["selections"][m]["dir"]) / "selection.json").read_text())
           for m in ("less", "less_robust")}
    assert sel["less"]["subtask_rule"] == "max" and sel["less_robust"]["subtask_rule"] == "balanced"
    assert {r["method"] for r in report["rows"]} >= {"less", "less_robust"}
    with pytest.raises(UserError, match="contradicts preset 'robust'"):
        tiny_compare(tmp_path / "x", tiny_model_dir, [pool], target_file, methods=["less_robust"],
                     datastore={"dims": [16], "loss_tokens": "completion"})


@pytest.mark.slow
def test_predict_is_one_more_method_with_its_own_warmup_and_cost(tmp_path, tiny_model_dir, target_file):
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(40, seed=0))
    predict = {"mode": "predicted", "sample_fraction": 0.75, "min_sample": 10, "folds": 3,
               "pca_dims": 2, "forward_features": False}
    report = tiny_compare(tmp_path, tiny_model_dir, [pool], target_file, methods=["random", "predict"],
                          include_full=False, include_base=False, baselines={"predict": predict})
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["random", "predict"] and rows["predict"]["n_selected"] == 10
    cost = report["selection_costs"]["predict"]
    assert set(cost["breakdown"]) == {"warmup", "predict"}
    assert cost["seconds"] == pytest.approx(sum(cost["breakdown"].values()))
    sel = json.loads((Path(report["selections"]["predict"]["dir"]) / "selection.json").read_text())
    assert sel["method"] == "predict:predicted" and sel["prediction"]["n_real_scored"] == 30
    assert len(selected_ids(tmp_path / "cmp", report, "predict")) == 10
    assert (tmp_path / "cmp" / "predict_run" / "warmup").is_dir()


@pytest.mark.slow
def test_dynamic_trains_its_own_row_and_is_evaluated_like_the_others(tmp_path, tiny_model_dir,
                                                                      target_file):
    pool = write_jsonl(tmp_path / "pool.jsonl", make_pool_records(24, seed=0))
    dynamic = {"warmup_step": 1, "update_step": 1, "update_times": 1, "proj_dim": 16}
    report = tiny_compare(tmp_path, tiny_model_dir, [pool], target_file, methods=["random", "dynamic"],
                          include_full=False, baselines={"dynamic": dynamic})
    rows = {r["method"]: r for r in report["rows"]}
    assert list(rows) == ["base", "random", "dynamic"]
    assert rows["dynamic"]["train_steps"] == 2 and rows["dynamic"]["n_selected"] == 2 * 4
    assert rows["dynamic"]["train_seconds"] is None and rows["dynamic"]["selection_seconds"] > 0
    assert math.isfinite(rows["dynamic"]["metrics"]["loss:target"])
    assert report["evaluation"]["dynamic"]["adapter"] == str(tmp_path / "cmp" / "train" / "dynamic")
    assert list(report["jaccard"]) == ["random"] and "dynamic" not in report["shares"]
    assert (tmp_path / "cmp" / "train" / "dynamic" / "selections" / "step_1.json").is_file()
    md = (tmp_path / "cmp" / "report" / "comparison.md").read_text()
    assert "dynamic: selects while training" in md
