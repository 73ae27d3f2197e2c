"""The training loss of an optimizer step: LESS's mean of per-example means by default, token-weighted
as an option. The gradient the Trainer hands the optimizer is compared with both, computed by hand."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import TrainerCallback

from less_select.data import Example
from less_select.training.trainer import (TrainOptions, encode_for_training, load_for_training,
                                     make_trainer, training_arguments)


class GradCapture(TrainerCallback):
    """The LoRA gradients just before the (first) optimizer step."""

    def __init__(self):
        self.grads = None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        if self.grads is None:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                          if p.requires_grad}


def _examples():
    # completions of very different lengths: the two reductions weight them very differently
    answers = ["yes", "the cat sat on a mat while two dogs ran past quickly and one bird sang softly "
               "so the answer is true", "no", "alpha beta gamma delta"]
    return [Example(id=f"e{i}", source="mem", line=i + 1,
                    messages=[{"role": "user", "content": f"what is the sum {i}"},
                              {"role": "assistant", "content": a}]) for i, a in enumerate(answers)]


def _by_hand(model, rows, reduction):
    """Gradient of the step loss, one example at a time (no padding, no Trainer)."""
    model = copy.deepcopy(model)
    model.train()
    total_tokens = sum(r.n_completion_tokens for r in rows)
    for r in rows:
        ids, labels = torch.tensor([r.input_ids]), torch.tensor([r.labels])
        logits = model(input_ids=ids).logits[0, :-1].float()
        ce = torch.nn.functional.cross_entropy(logits, labels[0, 1:], ignore_index=-100, reduction="sum")
        loss = ce / r.n_completion_tokens / len(rows) if reduction == "example" else ce / total_tokens
        loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("reduction", [None, "example", "token"])
def test_step_gradient_is_the_chosen_reduction(tiny_model_dir, tmp_path, reduction):
    kw = {} if reduction is None else {"loss_reduction": reduction}
    opts = TrainOptions(model=str(tiny_model_dir), output_dir=str(tmp_path / "out"), lora_r=4,
                        lora_alpha=8, lora_dropout=0.0, dtype="float32", max_grad_norm=0.0,
                        per_device_batch_size=2, effective_batch_size=4, seed=0, **kw)
    model, tok = load_for_training(opts, "lora")
    rows, _, _ = encode_for_training(_examples(), tok, opts)
    assert len({r.n_completion_tokens for r in rows}) == 4
    want = {red: _by_hand(model, rows, red) for red in ("example", "token")}
    capture = GradCapture()
    args = training_arguments(opts, tmp_path / "out", max_steps=1)
    trainer = make_trainer(model, tok, rows, args, [capture], loss_reduction=opts.loss_reduction)
    trainer.train()
    ran = opts.loss_reduction
    assert ran == (reduction or "example")  # LESS's reduction is the default
    other = "token" if ran == "example" else "example"
    nonzero = [n for n, g in want[ran].items() if g.abs().max() > 0]
    assert nonzero
    for n in nonzero:
        torch.testing.assert_close(capture.grads[n], want[ran][n], rtol=1e-4, atol=1e-7)
    # and the two reductions are far apart on this batch, so the test tells them apart
    diff = max(float((want[ran][n] - want[other][n]).norm() / want[ran][n].norm()) for n in nonzero)
    assert diff > 0.05
