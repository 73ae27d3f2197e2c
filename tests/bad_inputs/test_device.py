"""``--device`` (the one shared option, ``configs.SHARED["device"]``) on every stage that runs a
model: a GPU that is not there is refused in one line naming the option, before anything is read or
written, on the command line and in the Python API; ``cpu`` runs; and, as for the datastore, the
device is not part of a stage's skip key (an output made on a GPU is reused on the CPU)."""

from __future__ import annotations

import dataclasses
import importlib
import json

import pytest
import torch

from less_select.cli import STAGES, config_class
from less_select.errors import UserError

from .helpers import assert_refused, assert_user_error, run_cli

# the stages that load a model; each must take the shared option (not one of its own)
MODEL_STAGES = {"warmup", "datastore", "targets", "baseline", "train", "eval", "predict", "dynamic-train"}


def device_stages() -> list[str]:
    return sorted(c for c in STAGES if any(f.metadata.get("shared") == "device"
                                           for f in dataclasses.fields(config_class(c))))


DEVICE_STAGES = device_stages()


@pytest.fixture
def no_cuda(monkeypatch):
    """This machine as one without CUDA, whatever it has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _required(cls) -> dict:
    return {f.name: (["x"] if "list" in str(f.type) else "x") for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}


def test_every_model_stage_takes_the_shared_device_and_dtype_options():
    assert set(DEVICE_STAGES) >= MODEL_STAGES
    for command in MODEL_STAGES:
        names = {f.metadata.get("shared") for f in dataclasses.fields(config_class(command))}
        assert {"device", "dtype"} <= names, command


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
@pytest.mark.parametrize("command", DEVICE_STAGES)
def test_command_line_refuses_a_missing_gpu(command, device, no_cuda, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [command]
    for name, value in _required(config_class(command)).items():
        args += ["--" + name.replace("_", "-"), "x"]
    rc, err = run_cli([*args, "--device", device], capsys)
    assert_refused(rc, err, f"--device {device}", "no CUDA GPU")
    assert list(tmp_path.iterdir()) == [], "a refused command wrote something"


def test_command_line_refuses_an_unknown_device(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc, err = run_cli(["eval", "--model", "x", "--task", "bbh", "--device", "tpu"], capsys)
    assert_refused(rc, err, "--device", "expected auto, cpu, cuda or cuda:N")


@pytest.mark.parametrize("command", DEVICE_STAGES)
def test_python_api_refuses_a_missing_gpu(command, no_cuda, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cls = config_class(command)
    config = dataclasses.replace(cls(**_required(cls)), device="cuda")
    mod, name = STAGES[command][2].split(":")
    with pytest.raises(UserError) as exc:
        getattr(importlib.import_module(mod), name)(config)
    assert_user_error(exc.value, f"{cls.__name__}.device", "no CUDA GPU")
    assert list(tmp_path.iterdir()) == []


def test_training_places_the_model_where_device_says(no_cuda):
    from less_select.training.trainer import TrainOptions, training_arguments
    opts = TrainOptions(model="m", output_dir="o", device="cpu", dtype="auto")
    args = training_arguments(opts, "o")
    assert args.use_cpu and not args.bf16  # auto on the CPU: float32, no mixed precision
    assert training_arguments(dataclasses.replace(opts, device="auto"), "o").use_cpu
    with pytest.raises(UserError, match="--device cuda: torch sees no CUDA GPU"):
        training_arguments(dataclasses.replace(opts, device="cuda"), "o")


def test_training_refuses_a_gpu_the_trainer_would_not_use(monkeypatch):
    """The Trainer trains on this process's GPU: another index is chosen with CUDA_VISIBLE_DEVICES."""
    from less_select.training.trainer import TrainOptions, training_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "0")
    opts = TrainOptions(model="m", output_dir="o", device="cuda:1")
    with pytest.raises(UserError, match="CUDA_VISIBLE_DEVICES=1"):
        training_device(opts)
    assert training_device(dataclasses.replace(opts, device="cuda")) == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert training_device(opts) == torch.device("cuda", 1)


def test_device_is_not_part_of_any_skip_key():
    """Same rule as the datastore's RUN_ONLY: warmup, train, dynamic-train, baseline (stage_settings)
    and predict (its selection settings) give the same key for every device."""
    from less_select.baselines.stage import BaselineConfig
    from less_select.datastore.build import RUN_ONLY as DATASTORE_RUN_ONLY
    from less_select.predict.stage import PredictConfig, selection_settings
    from less_select.stage_folder import stage_settings
    assert "device" in DATASTORE_RUN_ONLY
    for command in ("warmup", "train", "dynamic-train"):
        cls = config_class(command)
        a, b = (stage_settings(dataclasses.replace(cls(**_required(cls)), device=d), []) for d in ("cpu", "auto"))
        assert a == b and "device" not in a and "dtype" in a, command
    assert stage_settings(BaselineConfig(device="cpu"), []) == stage_settings(BaselineConfig(), [])
    assert selection_settings(PredictConfig(device="cpu")) == selection_settings(PredictConfig())


def test_eval_runs_on_the_cpu(tiny_model_dir, tmp_path):
    from less_select.evaluation.run import EvalConfig, load_for_eval
    model, _ = load_for_eval(EvalConfig(model=str(tiny_model_dir), task="bbh", device="cpu"))
    p = next(model.parameters())
    assert p.device.type == "cpu" and p.dtype == torch.float32  # dtype auto on the CPU


def test_rds_baseline_runs_on_the_cpu_and_records_the_device(tiny_model_dir, pool_file, target_file,
                                                             tmp_path, capsys):
    out = tmp_path / "sel"
    args = ["baseline", "--method", "rds", "--data", pool_file, "--task", target_file, "--model",
            tiny_model_dir, "--output-dir", out, "--percentage", "0.25", "--device", "cpu"]
    assert run_cli(args, capsys)[0] == 0
    record = json.loads((out / "stage.json").read_text())
    assert record["config"]["device"] == "cpu" and "device" not in record["settings"]
    assert json.loads((out / "selection.json").read_text())["options"]["device"] == "cpu"
    before = (out / "stage.json").stat().st_mtime_ns
    # the same selection with another device is up to date: skipped, not refused or redone
    assert run_cli(args[:-1] + ["auto"], capsys)[0] == 0
    assert (out / "stage.json").stat().st_mtime_ns == before


@pytest.mark.parametrize("section", ["warmup", "datastore", "targets", "train", "eval"])
def test_pipeline_yaml_refuses_a_missing_gpu_before_any_stage(section, no_cuda, tmp_path, capsys):
    import yaml
    cfg = {"run_dir": str(tmp_path / "run"), "model": str(tmp_path / "model"),
           "data": [str(tmp_path / "pool.jsonl")], "targets": [{"task": str(tmp_path / "t.jsonl")}],
           "train": {}, "eval": {}}
    if section == "targets":
        cfg["targets"][0]["device"] = "cuda"
    else:
        cfg[section] = {"device": "cuda"}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, err = run_cli(["run", path], capsys)
    where = "targets[0]" if section == "targets" else section
    assert_refused(rc, err, f"{where}.device", "no CUDA GPU")
    assert not (tmp_path / "run").exists()
