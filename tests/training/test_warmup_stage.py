"""The warmup stage: seeded subset, one checkpoint per epoch with name-keyed moments and the mean lr."""

from __future__ import annotations

import json
import math

import pytest
import torch

from less_select.errors import UserError
from less_select.training import (WarmupConfig, list_checkpoints, load_checkpoint, run_warmup,
                                  warmup_subset)
from less_select.training.checkpoints import canonical_param_name
from less_select.training.trainer import load_for_training, make_trainer, training_arguments
from less_select.training.warmup import LessCheckpointCallback

WORDS = "the cat sat on a mat while two dogs ran past so the answer is yes no".split()


def _write_pool(path, n: int, long_prompt: bool = False):
    recs = [{"id": f"ex{i}", "messages": [
        {"role": "user", "content": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + i % 5))},
        {"role": "assistant", "content": " ".join(WORDS[(2 * i + j) % len(WORDS)] for j in range(2 + i % 3))}]}
        for i in range(n)]
    if long_prompt:  # truncated to max_seq_length before its answer: no completion token
        recs.append({"id": "long", "messages": [{"role": "user", "content": " ".join(WORDS * 10)},
                                                {"role": "assistant", "content": "yes"}]})
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _config(tmp_path, model_dir, pool, **kw):
    base = dict(model=str(model_dir), output_dir=str(tmp_path / "warmup"), pool_files=[str(pool)],
                percentage=1.0, epochs=3, per_device_batch_size=2, effective_batch_size=4,
                lora_r=4, lora_alpha=16, max_seq_length=48, learning_rate=1e-3, warmup_ratio=0.2,
                seed=3, dtype="float32")
    base.update(kw)
    return WarmupConfig(**base)


def _expected_lrs(lr: float, warmup: int, total: int) -> list[float]:
    """The lr of each optimizer step under HF's linear schedule (LambdaLR), stepped like the Trainer."""
    from transformers import get_linear_schedule_with_warmup
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = get_linear_schedule_with_warmup(opt, warmup, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_subset_honours_seed():
    a, b, a2 = warmup_subset(200, 0.1, 1), warmup_subset(200, 0.1, 2), warmup_subset(200, 0.1, 1)
    assert len(a) == 20 and a == sorted(a) and len(set(a)) == 20
    assert a == a2 and a != b
    assert warmup_subset(10, 0.01, 0) and len(warmup_subset(10, 0.01, 0)) == 1
    with pytest.raises(UserError, match="percentage"):
        warmup_subset(10, 0.0, 0)


def test_run_warmup_checkpoints(tmp_path, tiny_model_dir):
    pool = _write_pool(tmp_path / "pool.jsonl", 12, long_prompt=True)
    cfg = _config(tmp_path, tiny_model_dir, pool)
    out = run_warmup(cfg)
    assert not (tmp_path / "warmup.part").exists() and (out / "stage.json").is_file()

    subset = [json.loads(line) for line in (out / "warmup_subset.jsonl").read_text().splitlines()]
    assert len(subset) == 13
    assert [s["id"] for s in subset if not s["trained"]] == ["long"]

    ckpts = list_checkpoints(out)
    steps_per_epoch = math.ceil(12 / 2 / 2)  # 12 trained examples, batch 2, accumulation 2
    assert [p.name for p in ckpts] == [f"checkpoint-{steps_per_epoch * e}" for e in (1, 2, 3)]
    total = 3 * steps_per_epoch
    lrs = _expected_lrs(1e-3, math.ceil(0.2 * total), total)
    adapter_names = None
    for epoch, path in enumerate(ckpts, 1):
        assert (path / "adapter_model.safetensors").is_file() and (path / "adapter_config.json").is_file()
        assert not (path / "optimizer.pt").exists()
        meta = json.loads((path / "less_checkpoint.json").read_text())
        want = lrs[(epoch - 1) * steps_per_epoch: epoch * steps_per_epoch]
        assert meta["step_lrs"] == pytest.approx(want)
        ck = load_checkpoint(path)
        assert ck.epoch == epoch and ck.step == epoch * steps_per_epoch
        assert ck.mean_lr == pytest.approx(sum(want) / len(want))
        assert ck.betas == (0.9, 0.999) and ck.eps == 1e-8 and ck.base_model == str(tiny_model_dir)
        from safetensors import safe_open
        with safe_open(str(path / "adapter_model.safetensors"), "pt") as fh:
            adapter_names = {canonical_param_name(k): fh.get_slice(k).get_shape() for k in fh.keys()}
        assert set(ck.exp_avg) == set(adapter_names)  # 2 layers x 4 modules x (A, B)
        assert len(ck.exp_avg) == 16
        assert all(list(ck.exp_avg[n].shape) == adapter_names[n] for n in ck.exp_avg)
        assert all(ck.exp_avg_sq[n].abs().sum() > 0 for n in ck.exp_avg_sq)

    # same settings: skipped (nothing rewritten); other settings: refused, naming the field
    stamp = (out / "stage.json").stat().st_mtime_ns
    assert run_warmup(cfg) == out and (out / "stage.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="learning_rate"):
        run_warmup(_config(tmp_path, tiny_model_dir, pool, learning_rate=2e-3))


def test_warmup_seed_changes_subset(tmp_path, tiny_model_dir):
    pool = _write_pool(tmp_path / "pool.jsonl", 20)

    def ids(seed, name):
        cfg = _config(tmp_path, tiny_model_dir, pool, percentage=0.3, epochs=1, seed=seed,
                      output_dir=str(tmp_path / name))
        lines = (run_warmup(cfg) / "warmup_subset.jsonl").read_text().splitlines()
        return [json.loads(x)["id"] for x in lines]

    a, b, a2 = ids(1, "s1"), ids(2, "s2"), ids(1, "s1_again")
    assert len(a) == 6 and a == a2 and a != b


def test_saved_moments_equal_live_optimizer(tmp_path, tiny_model_dir):
    """Run the Trainer with the warmup callback, then compare the last checkpoint with the live state."""
    pool = _write_pool(tmp_path / "pool.jsonl", 8)
    cfg = _config(tmp_path, tiny_model_dir, pool, epochs=2, save_hf_optimizer=True)
    from less_select.data import load_examples
    from less_select.training.trainer import encode_for_training
    model, tok = load_for_training(cfg, "lora")
    rows, _, dropped = encode_for_training(load_examples(cfg.pool_files)[0], tok, cfg)
    assert dropped == 0
    out = tmp_path / "direct"
    trainer = make_trainer(model, tok, rows, training_arguments(cfg, out, save_strategy="epoch",
                                                                  save_only_model=False),
                           [LessCheckpointCallback(cfg.model)])
    trainer.train()
    last = list_checkpoints(out)[-1]
    ck = load_checkpoint(last)
    opt = trainer.optimizer
    names = {id(p): canonical_param_name(n) for n, p in model.named_parameters() if p.requires_grad}
    live = {names[id(p)]: opt.state[p] for g in opt.param_groups for p in g["params"]}
    assert set(live) == set(ck.exp_avg)
    for n, st in live.items():
        assert torch.equal(ck.exp_avg[n], st["exp_avg"]) and torch.equal(ck.exp_avg_sq[n], st["exp_avg_sq"])
    # save_hf_optimizer keeps HF's optimizer.pt, and it reads back to the same moments
    hf = load_checkpoint(last, format="hf")
    assert all(torch.equal(hf.exp_avg[n], ck.exp_avg[n]) for n in ck.exp_avg)
    assert hf.mean_lr == pytest.approx(ck.mean_lr)
