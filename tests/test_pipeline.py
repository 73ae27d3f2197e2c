"""The pipeline's config: its top-level keys are a dataclass (in docs/cli.md), every stage config is
built from its section before anything runs, and the eval section's tasks and models come from the
configs, not from re-parsing the YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from less_select import pipeline
from less_select.errors import UserError
from less_select.pipeline import PipelineConfig, load_pipeline_config, pipeline_config

ROOT = Path(__file__).resolve().parent.parent


def _write(tmp_path, **cfg) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "model": "m", "data": "pool.jsonl",
                                    **cfg}))
    return path


def test_top_level_keys_are_the_dataclass_and_documented(tmp_path):
    cfg = load_pipeline_config(_write(tmp_path, preset="robust", targets={"task": "t.jsonl"}))
    assert isinstance(cfg, PipelineConfig)
    assert cfg.data == ["pool.jsonl"] and cfg.preset == "robust"
    assert cfg.targets == [{"task": "t.jsonl"}]  # one mapping is one target
    assert cfg.train is None and cfg.eval is None
    doc = (ROOT / "docs" / "cli.md").read_text()
    for key in ("run_dir", "model", "data", "data_dir", "preset", "targets", "eval"):
        assert f"| `{key}` |" in doc, key


def test_unknown_preset_is_refused_naming_the_key(tmp_path):
    path = _write(tmp_path, preset="fast")
    with pytest.raises(UserError, match=rf"{path.name}: preset: 'fast' is not one of 'faithful', 'robust'"):
        load_pipeline_config(path)


def test_stage_configs_are_built_with_the_connecting_paths(tmp_path):
    cfg = pipeline_config({"run_dir": "r", "model": "m", "data": ["p.jsonl"], "preset": "robust",
                           "targets": [{"task": "d/t.v1.jsonl"}], "train": {"epochs": 1}}, "cfg")
    warm, ds, per_target = pipeline._stage_configs(cfg, "cfg")
    assert warm.pool_files == ["p.jsonl"] and warm.output_dir == str(Path("r") / "warmup")
    assert ds.checkpoints == [str(Path("r") / "warmup")] and ds.loss_tokens == "sequence"  # preset
    (name, t_cfg, s_cfg, f_cfg), = per_target
    assert name == "t.v1" and t_cfg.output_dir == str(Path("r") / "targets" / "t.v1")
    assert s_cfg.subtask_rule == "balanced" and f_cfg.epochs == 1
    assert f_cfg.train_files == [str(Path("r") / "selected" / "t.v1" / f"{s_cfg.file_stem}.jsonl")]


@pytest.mark.parametrize("train,after", [
    ({}, ("base", "trained")),                                 # LoRA: the adapter on the base model
    ({"merge_lora": True}, ("trained", None)),                 # merged: the saved model itself
    ({"method": "full"}, ("trained", None)),
    ({"model": "other"}, ("other", "trained")),                # LESS-T: train.model is evaluated
])
def test_evaluated_models_follow_the_train_config(tmp_path, monkeypatch, train, after):
    trained = tmp_path / "trained"
    trained.mkdir()
    cfg = pipeline_config({"run_dir": str(tmp_path / "run"), "model": "base", "data": ["p.jsonl"],
                           "targets": [{"task": "t.jsonl"}], "train": train,
                           "eval": {"tasks": "loss:bbh", "max_seq_length": 64}}, "cfg")
    from less_select.configs import from_dict
    from less_select.training.finetune import FinetuneConfig
    f_cfg = from_dict(FinetuneConfig, {"model": "base", "train_files": ["x"], "output_dir": str(trained),
                                       **train})
    seen = []
    monkeypatch.setattr("less_select.evaluation.run.run_eval",
                        lambda c: seen.append(c) or {"average": {"loss": 1.0}})
    out = pipeline._evaluate(pipeline._eval_config(cfg, "t.jsonl", "cfg"), tmp_path / "eval", f_cfg)
    assert set(out) == {"before/loss:bbh", "after/loss:bbh"}
    before, after_cfg = seen
    base = after[0] if after[0] != "trained" else "base"
    assert (before.model, before.adapter) == (base, None)
    expect = tuple(str(trained) if v == "trained" else v for v in after)
    assert (after_cfg.model, after_cfg.adapter) == expect
    assert after_cfg.task == "loss:bbh" and after_cfg.max_seq_length == 64


def test_eval_tasks_default_to_the_target_loss(tmp_path):
    cfg = pipeline_config({"run_dir": "r", "model": "m", "data": ["p.jsonl"], "eval": {}}, "cfg")
    ev = pipeline._eval_config(cfg, "d/t.jsonl", "cfg")
    assert ev.tasks == [] and ev.task == "loss:d/t.jsonl"
    with pytest.raises(UserError, match=r"cfg: eval\.tasks\[0\]: expected a string"):
        pipeline._eval_config(pipeline_config({**cfg.__dict__, "eval": {"tasks": [3]}}, "cfg"), "t", "cfg")


def test_required_keys_are_named(tmp_path):
    with pytest.raises(UserError, match="cfg: 'model' is required"):
        pipeline_config({"run_dir": "r", "model": "", "data": ["p"]}, "cfg")
    with pytest.raises(UserError, match=r"targets\[0\] must be a mapping with a 'task'"):
        pipeline_config({"run_dir": "r", "model": "m", "data": ["p"], "targets": [{"dims": [8]}]}, "cfg")
