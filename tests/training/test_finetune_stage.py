"""Final training: LoRA (adapter) and full fine-tuning produce loadable models whose weights changed."""

from __future__ import annotations

import json

import pytest
import torch

from less_select.errors import UserError
from less_select.modeling import load_model, load_model_with_adapter
from less_select.training import FinetuneConfig, run_finetune

WORDS = "the cat sat on a mat while two dogs ran past so the answer is yes no".split()


@pytest.fixture
def train_file(tmp_path):
    recs = [{"instruction": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + i % 4)),
             "output": " ".join(WORDS[(3 * i + j) % len(WORDS)] for j in range(2 + i % 3))}
            for i in range(10)]  # Alpaca format, as a selection of an Alpaca pool would be
    path = tmp_path / "selected.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def _config(tmp_path, model_dir, data, **kw):
    base = dict(model=str(model_dir), output_dir=str(tmp_path / "train"), train_files=[str(data)],
                epochs=2, per_device_batch_size=2, effective_batch_size=2, lora_r=4, lora_alpha=16,
                max_seq_length=64, learning_rate=1e-2, dtype="float32", seed=0)
    base.update(kw)
    return FinetuneConfig(**base)


def _state(model):
    return {n: p.detach().clone() for n, p in model.state_dict().items()}


def test_finetune_lora(tmp_path, tiny_model_dir, train_file):
    out = run_finetune(_config(tmp_path, tiny_model_dir, train_file, max_steps=3))
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 3 and summary["examples"] == 10
    base = _state(load_model(str(tiny_model_dir), "float32"))
    tuned = load_model_with_adapter(str(tiny_model_dir), str(out), "float32").merge_and_unload()
    changed = [n for n, t in _state(tuned).items() if not torch.equal(t, base[n])]
    # LoRA on q,k,v,o only: exactly those weights move when the adapter is merged
    assert changed and all(n.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "o_proj") for n in changed)
    assert len(changed) == 2 * 4


def test_finetune_full_on_another_model(tmp_path, tiny_tokenizer, train_file):
    """LESS-T: the trained model need not be the warmup model (here a different tiny architecture)."""
    from less_select.demo.tiny_model import build_tiny_llama
    other = tmp_path / "other_model"
    build_tiny_llama(len(tiny_tokenizer), hidden_size=16, intermediate_size=32, num_layers=1,
                     num_heads=2, tokenizer=tiny_tokenizer, seed=1).save_pretrained(other)
    tiny_tokenizer.save_pretrained(other)
    out = run_finetune(_config(tmp_path, other, train_file, method="full"))
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 2 * 5  # 10 examples / batch 2, 2 epochs
    base, tuned = _state(load_model(str(other), "float32")), _state(load_model(str(out), "float32"))
    assert set(base) == set(tuned)
    changed = {n for n in base if not torch.equal(base[n], tuned[n])}
    assert "lm_head.weight" in changed and "model.layers.0.mlp.up_proj.weight" in changed


def test_finetune_merged_lora_and_bad_method(tmp_path, tiny_model_dir, train_file):
    out = run_finetune(_config(tmp_path, tiny_model_dir, train_file, max_steps=2, merge_lora=True))
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    assert load_model(str(out), "float32") is not None
    with pytest.raises(UserError, match="method"):
        run_finetune(_config(tmp_path, tiny_model_dir, train_file, method="qlora",
                             output_dir=str(tmp_path / "bad")))


def test_finetune_refuses_to_reuse_a_model_trained_on_other_data(tmp_path, tiny_model_dir):
    """A selection file rewritten in place must not silently reuse the model trained on its old content."""
    import json

    import pytest

    from less_select.errors import UserError
    from less_select.training.finetune import FinetuneConfig, run_finetune
    data = tmp_path / "sel.jsonl"
    rec = {"messages": [{"role": "user", "content": "what is the sum"}, {"role": "assistant", "content": "yes"}]}
    data.write_text(json.dumps(rec) + "\n")
    cfg = FinetuneConfig(model=str(tiny_model_dir), train_files=[str(data)], output_dir=str(tmp_path / "f"),
                         max_steps=1, lora_r=2, lora_alpha=4, per_device_batch_size=1, effective_batch_size=1,
                         max_seq_length=32)
    run_finetune(cfg)
    run_finetune(cfg)  # same content: skipped
    data.write_text(json.dumps({**rec, "messages": rec["messages"][:1] + [{"role": "assistant", "content": "no"}]}) + "\n")
    with pytest.raises(UserError, match="data_sha256"):
        run_finetune(cfg)
