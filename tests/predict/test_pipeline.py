"""The pipeline YAML's ``predict`` section: built from the shared keys and the datastore/select
sections, checked before any stage runs."""

from __future__ import annotations

import json

import pytest
import yaml

from less_select.errors import UserError
from less_select.pipeline import load_pipeline_config, run_pipeline_file

SECTION = {"sample_fraction": 0.5, "min_sample": 10, "pca_dims": 4, "folds": 3, "forward_features": False,
           "max_tokens_per_batch": 512}


def write(tmp_path, setup, section, targets=None):
    root, model_dir, ckpts, pools, target = setup
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"), "model": str(model_dir), "data": [str(p) for p in pools],
        "targets": targets or [{"task": str(target)}],
        "datastore": {"projector": "identity", "dims": [1024], "dtype": "float64", "max_seq_length": 64},
        "select": {"top_k": 6}, "predict": {"checkpoints": [str(ckpts)], **section}}))
    return path


def test_predict_section_runs_into_the_run_folder(tmp_path, predict_setup):
    results = run_pipeline_file(write(tmp_path, predict_setup, {**SECTION, "mode": "predicted"}),
                                only=["predict"])
    sel = tmp_path / "run" / "predict" / "targets" / "selection"
    assert results == {"predict/targets": str(sel)}
    assert (sel / "top_k6.jsonl").read_text().count("\n") == 6   # the select section's budget
    settings = json.loads((sel / "stage.json").read_text())["settings"]
    assert settings["projector"] == "identity" and settings["dims"] == [1024]   # the datastore section's
    assert settings["mode"] == "predicted" and settings["sample_fraction"] == 0.5
    assert not (tmp_path / "run" / "warmup").exists()


def test_predict_section_errors_are_one_line_before_any_stage(tmp_path, predict_setup):
    with pytest.raises(UserError, match="predict") as err:
        load_pipeline_config(write(tmp_path, predict_setup, {**SECTION, "sample_fraction": "half"}))
    assert "\n" not in str(err.value) and "sample_fraction" in str(err.value)
    two = write(tmp_path, predict_setup, SECTION, targets=[{"task": "bbh"}, {"task": "mmlu"}])
    with pytest.raises(UserError, match="predict needs a 'task'"):
        load_pipeline_config(two)
    assert not (tmp_path / "run").exists()
