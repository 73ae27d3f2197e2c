"""The ``dynamic-train`` stage: CLI, outputs, errors, resume after a kill, torchrun == 1 process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from less_select.cli import main
from less_select.dynamic import DynamicLessSelection
from less_select.dynamic.stage import DynamicTrainConfig, run_dynamic_train


def flags(model_dir, pool_file, target_file, out, **kw):
    opts = {"model": model_dir, "output-dir": out, "pool-files": pool_file, "task": target_file,
            "warmup-step": 2, "update-step": 2, "update-times": 2, "per-device-batch-size": 2,
            "effective-batch-size": 4, "lora-r": 4, "lora-alpha": 8, "proj-dim": 64,
            "max-seq-length": 64, "learning-rate": 1e-3, "dtype": "float32", **kw}
    out = []
    for k, v in opts.items():
        out += [f"--{k}"] + ([str(x) for x in v] if isinstance(v, list) else [str(v)])
    return out + ["--lora-target-modules", "q_proj", "v_proj"]


def config(model_dir, pool_file, target_file, out, **kw):
    base = dict(model=str(model_dir), output_dir=str(out), pool_files=[str(pool_file)], task=str(target_file),
                warmup_step=2, update_step=2, update_times=2, per_device_batch_size=2,
                effective_batch_size=4, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"],
                proj_dim=64, max_seq_length=64, learning_rate=1e-3, dtype="float32")
    return DynamicTrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_cli_writes_adapter_selections_and_summary(tmp_path, tiny_model_dir, pool_file, target_file, capsys):
    out = tmp_path / "dyn"
    assert main(["dynamic-train", *flags(tiny_model_dir, pool_file, target_file, out)]) == 0
    assert (out / "adapter_model.safetensors").is_file() and not (tmp_path / "dyn.part").exists()
    assert sorted(p.name for p in (out / "selections").iterdir()) == ["step_0.json", "step_2.json", "step_4.json"]
    assert not list(out.glob("checkpoint-*"))
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 6 and summary["reselection_steps"] == [2, 4]
    step2 = json.loads((out / "selections" / "step_2.json").read_text())
    assert step2["per_source_share"] == {"pool.jsonl": 1.0} and len(step2["indices"]) == 8
    assert set(step2["per_subtask_share"]) == {"a", "b"}
    # the same command again is skipped; other settings are refused, naming the field
    assert main(["dynamic-train", *flags(tiny_model_dir, pool_file, target_file, out)]) == 0
    assert main(["dynamic-train", *flags(tiny_model_dir, pool_file, target_file, out, **{"update-times": 1})]) == 2
    assert "update_times" in capsys.readouterr().err


def test_schedule_larger_than_the_pool_is_a_one_line_cli_error(tmp_path, tiny_model_dir, pool_file,
                                                                target_file, capsys):
    out = tmp_path / "dyn"
    rc = main(["dynamic-train", *flags(tiny_model_dir, pool_file, target_file, out, **{"update-step": 7})])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0
    assert "update_step x global batch = 7 x 4 = 28 exceeds the pool (24 examples)" in err
    assert not out.exists() and not (tmp_path / "dyn.part").exists()


def adapter(path):
    return load_file(str(path / "adapter_model.safetensors"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_adapter(tmp_path, tiny_model_dir, pool_file, target_file, monkeypatch):
    """LoRA dropout on (the RNG state must be restored too); killed after step 3, checkpoint at 2."""
    whole = run_dynamic_train(config(tiny_model_dir, pool_file, target_file, tmp_path / "whole",
                                     save_steps=2, lora_dropout=0.1))

    def kill(self, args, state, control, **kw):
        if state.global_step == 3:
            raise KeyboardInterrupt
    monkeypatch.setattr(DynamicLessSelection, "on_step_end", kill, raising=False)
    cfg = config(tiny_model_dir, pool_file, target_file, tmp_path / "cut", save_steps=2, lora_dropout=0.1)
    with pytest.raises(KeyboardInterrupt):
        run_dynamic_train(cfg)
    part = tmp_path / "cut.part"
    assert (part / "checkpoint-2").is_dir() and (part / "selections" / "step_2.json").is_file()
    monkeypatch.undo()
    resumed = run_dynamic_train(cfg)
    summary = json.loads((resumed / "training_summary.json").read_text())
    assert summary["resumed_from"] == "checkpoint-2" and summary["reselection_steps"] == [4]
    a, b = adapter(whole), adapter(resumed)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    for step in (0, 2, 4):
        sa = json.loads((whole / "selections" / f"step_{step}.json").read_text())
        sb = json.loads((resumed / "selections" / f"step_{step}.json").read_text())
        assert sa["indices"] == sb["indices"]


@pytest.mark.slow
def test_torchrun_two_ranks_score_shards_and_agree_with_one_process(tmp_path, tiny_tokenizer):
    """gloo on CPU, 2 ranks: each scores half the candidates and targets; the gathered scores are the
    same on both ranks and equal those of one process (so every rank selects the same examples)."""
    from .ddp_worker import scores
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = os.path.join(os.path.dirname(__file__), "ddp_worker.py")
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                    "--master-port", "29533", worker, str(tmp_path)], check=True, env=env, capture_output=True)
    r0, r1 = np.load(tmp_path / "rank0.npy"), np.load(tmp_path / "rank1.npy")
    np.testing.assert_array_equal(r0, r1)
    np.testing.assert_allclose(r0, scores(tiny_tokenizer), atol=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_train_the_same_adapter_as_one(tmp_path, tiny_model_dir, pool_file, target_file):
    """The stage under torchrun (2 gloo ranks, per-device batch 2, no accumulation) re-selects at the
    configured steps, on the same examples, and ends with the same adapter and the same logged loss
    as one process with accumulation 2. A large adam_epsilon makes the update depend on the gradient's
    scale, so a loss that the Trainer multiplies by the world size (HF's scaling for a token-summed
    loss, wrong for our per-example mean) would show in the adapter, not only in the logs."""
    kw = {"adam-epsilon": 0.1, "logging-steps": 1, "lora-dropout": 0.0}  # dropout: per-rank RNG
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", "29534", "-m", "less_select.cli", "dynamic-train",
                           *flags(tiny_model_dir, pool_file, target_file, tmp_path / "multi", **kw)],
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["dynamic-train", *flags(tiny_model_dir, pool_file, target_file, tmp_path / "one", **kw)]) == 0
    multi, one = (json.loads((tmp_path / d / "training_summary.json").read_text()) for d in ("multi", "one"))
    assert multi["steps"] == one["steps"] == 6 and multi["reselection_steps"] == [2, 4]
    assert not (tmp_path / "multi.part").exists()
    for step in (0, 2, 4):
        sa, sb = (json.loads((tmp_path / d / "selections" / f"step_{step}.json").read_text())
                  for d in ("multi", "one"))
        assert sa["indices"] == sb["indices"]
    losses = [[h["loss"] for h in s["log_history"] if "loss" in h] for s in (multi, one)]
    assert len(losses[0]) == 6 and np.allclose(losses[0], losses[1], rtol=1e-4)
    a, b = adapter(tmp_path / "multi"), adapter(tmp_path / "one")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
