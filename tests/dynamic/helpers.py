"""Shared set-up for the dynamic-selection tests: a tiny LoRA model, encoded pool/targets, a plain
``transformers.Trainer`` built here (not by the package)."""

from __future__ import annotations

import functools
import random

import torch

from less_select.data.batching import collate
from less_select.data.encode import encode_all
from less_select.data.formats import parse_messages
from less_select.data.example import Example
from less_select.dynamic import DynamicLessSelection, DynamicOptions, global_batch_of


WORDS = ("the cat sat on a mat while two dogs ran past quickly and one bird sang softly what is "
         "the sum of three and four answer yes no true false sort these words").split()


def make_pool_records(n: int, seed: int = 0) -> list[dict]:
    """Open-instruct ``messages`` records of varied length."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 10)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        out.append({"id": f"toy_{seed}_{i}", "messages": [{"role": "user", "content": q},
                                                          {"role": "assistant", "content": a}]})
    return out


def encoded_rows(tokenizer, n: int, seed: int):
    recs = make_pool_records(n, seed=seed)
    exs = [Example(id=r["id"], messages=parse_messages(r)["messages"]) for r in recs]
    enc, _ = encode_all(exs, tokenizer, 64)
    return [e for e in enc if e.n_completion_tokens > 0], recs


def lora_model(tokenizer, dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model
    from less_select.demo.tiny_model import build_tiny_llama
    torch.manual_seed(0)
    base = build_tiny_llama(len(tokenizer), hidden_size=32, intermediate_size=64, num_heads=4,
                            tokenizer=tokenizer, seed=0)
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout,
                                           target_modules=["q_proj", "v_proj"]))


def plain_trainer(tmp_path, tokenizer, opts: DynamicOptions, *, pool_n=40, model=None, seed=1,
                  per_device=2, accum=2, save_steps=0, **sel_kw):
    """A user's own Trainer script: TrainingArguments, Trainer, our callback and dataset."""
    from transformers import Trainer, TrainingArguments
    pool, _ = encoded_rows(tokenizer, pool_n, seed=0)
    targets, _ = encoded_rows(tokenizer, 6, seed=1)
    labels = ["a", "a", "b", "b", "b", "b"][:len(targets)]
    args = TrainingArguments(output_dir=str(tmp_path / "run"), max_steps=opts.total_steps,
                             per_device_train_batch_size=per_device, gradient_accumulation_steps=accum,
                             learning_rate=1e-2, lr_scheduler_type="constant", seed=seed,
                             report_to="none", use_cpu=True, logging_steps=1,
                             save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500,
                             remove_unused_columns=False, disable_tqdm=True)
    sel = DynamicLessSelection(pool, targets, labels, opts, global_batch=global_batch_of(args),
                               pad_token_id=tokenizer.pad_token_id,
                               selections_dir=tmp_path / "run" / "selections", **sel_kw)
    model = model if model is not None else lora_model(tokenizer)
    trainer = Trainer(model=model, args=args, train_dataset=sel.train_dataset,
                      data_collator=functools.partial(collate, pad_token_id=tokenizer.pad_token_id),
                      callbacks=[sel])
    return trainer, sel


def trained_one_step(tokenizer, model=None):
    """A model and an AdamW that took one real step (so exp_avg/exp_avg_sq are populated)."""
    model = model if model is not None else lora_model(tokenizer)
    rows, _ = encoded_rows(tokenizer, 8, seed=5)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = collate(rows, tokenizer.pad_token_id)
    model(**batch).loss.backward()
    opt.step()
    opt.zero_grad()
    return model, opt
