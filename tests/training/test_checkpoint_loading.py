"""Reading warmup checkpoints: our format, a real HF Trainer optimizer.pt, a name-keyed FSDP optimizer.bin."""

from __future__ import annotations

import functools
import shutil

import pytest
import torch

from less_select.data.batching import collate
from less_select.data.encode import encode_all
from less_select.errors import UserError
from less_select.training.checkpoints import (
    Checkpoint, canonical_param_name, checkpoint_weights, hf_param_order, list_checkpoints,
    load_checkpoint, save_moments, write_meta)

from less_select.data.example import Example

WORDS = "the cat sat on a mat while two dogs ran past so the answer is yes no".split()


def _examples(n: int) -> list[Example]:
    return [Example(id=str(i), messages=[
        {"role": "user", "content": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + i % 5))},
        {"role": "assistant", "content": " ".join(WORDS[(2 * i + j) % len(WORDS)] for j in range(2 + i % 3))}])
        for i in range(n)]


def test_canonical_param_name():
    want = "model.layers.0.self_attn.q_proj.lora_A.weight"
    for raw in ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
                "module.base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
                "_orig_mod.base_model.model.model.layers.0.self_attn.q_proj.lora_A.mine.weight",
                "base_model.model._fsdp_wrapped_module.model.layers.0._fsdp_wrapped_module."
                "_checkpoint_wrapped_module.self_attn.q_proj.lora_A.default.weight",
                "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",  # adapter file key
                want):
        assert canonical_param_name(raw) == want, raw
    assert canonical_param_name("base_model.model.lm_head.lora_B.default.weight") == "lm_head.lora_B.weight"
    assert canonical_param_name("base_model.model.model.norm.modules_to_save.default.weight") == \
        "model.norm.weight"


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory, tiny_tokenizer, tiny_model_dir):
    """Run the HF Trainer for 3 steps on a tiny LoRA model with its default checkpoint save.

    ``modules_to_save`` adds trainable norm weights, which the Trainer puts into its no-decay group:
    so the optimizer.pt index order differs from named_parameters order, as in real runs.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments
    from less_select.modeling import load_model

    out = tmp_path_factory.mktemp("hf_run")
    model = load_model(str(tiny_model_dir), "float32")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                             modules_to_save=["norm"], task_type="CAUSAL_LM"))
    rows, _ = encode_all(_examples(8), tiny_tokenizer, 64)
    args = TrainingArguments(output_dir=str(out), max_steps=3, per_device_train_batch_size=2,
                             learning_rate=1e-3, weight_decay=0.1, save_strategy="steps", save_steps=3,
                             logging_steps=1, report_to="none", use_cpu=True, seed=0,
                             remove_unused_columns=False)
    trainer = Trainer(model=model, args=args, train_dataset=rows, processing_class=tiny_tokenizer,
                      data_collator=functools.partial(collate, pad_token_id=tiny_tokenizer.pad_token_id))
    trainer.train()
    ckpt = out / "checkpoint-3"
    assert (ckpt / "optimizer.pt").is_file()
    return trainer, model, ckpt


def _named_state(trainer, model):
    """Live optimizer state by canonical name."""
    opt = trainer.optimizer
    names = {id(p): canonical_param_name(n) for n, p in model.named_parameters()}
    return {names[id(p)]: opt.state[p] for g in opt.param_groups for p in g["params"]}


def test_hf_fsdp_and_ours_agree(hf_run, tmp_path):
    trainer, model, hf_dir = hf_run
    order = hf_param_order(model)
    raw_order = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(map(canonical_param_name, raw_order)) == sorted(order)
    assert order != [canonical_param_name(n) for n in raw_order]  # the groups really reorder

    # FSDP-style optimizer.bin: the same state keyed by (wrapped) parameter name.
    osd = torch.load(hf_dir / "optimizer.pt", weights_only=True)
    indices = [i for g in osd["param_groups"] for i in g["params"]]
    raw_by_canon = {canonical_param_name(n): n for n in raw_order}
    fsdp_names = ["_fsdp_wrapped_module." + raw_by_canon[c] for c in order]
    fsdp_dir = tmp_path / "fsdp"
    shutil.copytree(hf_dir, fsdp_dir)
    (fsdp_dir / "optimizer.pt").unlink()
    torch.save({"state": {n: osd["state"][i] for n, i in zip(fsdp_names, indices)},
                "param_groups": [{**g, "params": fsdp_names} for g in osd["param_groups"][:1]]},
               fsdp_dir / "optimizer.bin")

    # Our format, from the live optimizer.
    live = _named_state(trainer, model)
    ours_dir = tmp_path / "checkpoint-3"
    shutil.copytree(hf_dir, ours_dir)
    save_moments(ours_dir / "optimizer_moments.safetensors",
                 {n: s["exp_avg"] for n, s in live.items()}, {n: s["exp_avg_sq"] for n, s in live.items()})
    write_meta(ours_dir, {"epoch": 1.0, "step": 3, "mean_lr": 5e-4, "betas": [0.9, 0.999], "eps": 1e-8})

    hf = load_checkpoint(hf_dir, param_names=order)
    hf_inferred = load_checkpoint(hf_dir)  # order rebuilt from adapter_config.json on the meta device
    fsdp = load_checkpoint(fsdp_dir)
    ours = load_checkpoint(ours_dir)
    assert (hf.format, fsdp.format, ours.format) == ("hf", "fsdp", "less")
    assert set(hf.exp_avg) == set(live) and "model.norm.weight" in live
    for ck in (hf_inferred, fsdp, ours):
        assert set(ck.exp_avg) == set(hf.exp_avg)
        for n in hf.exp_avg:
            assert torch.equal(ck.exp_avg[n], hf.exp_avg[n]), n
            assert torch.equal(ck.exp_avg_sq[n], hf.exp_avg_sq[n]), n
    for n, s in live.items():
        assert torch.equal(hf.exp_avg[n], s["exp_avg"]) and torch.equal(hf.exp_avg_sq[n], s["exp_avg_sq"])
    # learning rate: the mean of the lrs the Trainer logged (one per step, logging_steps=1)
    logged = [h["learning_rate"] for h in trainer.state.log_history if "learning_rate" in h]
    assert len(logged) == 3
    assert hf.mean_lr == pytest.approx(sum(logged) / 3) and fsdp.mean_lr == hf.mean_lr
    assert ours.mean_lr == 5e-4 and hf.step == 3 and hf.betas == (0.9, 0.999) and hf.eps == 1e-8


def test_hf_mismatched_param_list_errors(hf_run, tmp_path):
    trainer, model, hf_dir = hf_run
    order = hf_param_order(model)
    with pytest.raises(UserError, match=r"has \d+ parameters in its groups but \d+ parameter names"):
        load_checkpoint(hf_dir, param_names=order[:-1])
    with pytest.raises(UserError, match=r"has shape .* the parameter order is wrong"):
        load_checkpoint(hf_dir, param_names=list(reversed(order)))  # lora_B (32, 4) where lora_A (4, 32)
    bogus = order[:-1] + ["model.layers.9.mlp.up_proj.lora_A.weight"]
    with pytest.raises(UserError, match="is not in adapter_model.safetensors"):
        load_checkpoint(hf_dir, param_names=bogus)
    # without trainer_state.json the learning rate must come from the user
    bare = tmp_path / "checkpoint-3"
    shutil.copytree(hf_dir, bare)
    (bare / "trainer_state.json").unlink()
    with pytest.raises(UserError, match="records no learning rate.*--mean-lrs"):
        load_checkpoint(bare, param_names=order)
    ck = load_checkpoint(bare, param_names=order, mean_lr=1e-4)
    assert ck.mean_lr == 1e-4 and ck.step == 3


def test_no_optimizer_state_is_a_user_error(tmp_path):
    (tmp_path / "checkpoint-1").mkdir()
    with pytest.raises(UserError, match="no optimizer state"):
        load_checkpoint(tmp_path / "checkpoint-1")


def test_list_checkpoints_numeric_order(tmp_path):
    for step in (10, 9, 100):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-x").mkdir()
    (tmp_path / "warmup_subset.jsonl").write_text("")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-9", "checkpoint-10",
                                                           "checkpoint-100"]
    with pytest.raises(UserError, match="no checkpoint-<step> folders"):
        list_checkpoints(tmp_path / "checkpoint-9")


def _ck(lr):
    return Checkpoint(path=None, adapter_dir=None, step=0, epoch=None, mean_lr=lr, exp_avg={},
                      exp_avg_sq={})


def test_checkpoint_weights():
    assert checkpoint_weights([_ck(1e-5), _ck(3e-5)]) == pytest.approx([0.25, 0.75])
    with pytest.raises(UserError, match="mean_lr"):
        checkpoint_weights([_ck(1e-5), _ck(None)])
