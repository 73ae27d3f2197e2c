"""Batched per-example LoRA gradients against a batch-size-1 autograd reference (float64)."""

import pytest
import torch

from less_select.data import Example
from less_select.data.batching import collate
from less_select.data.encode import encode_example
from less_select.gradients.per_example import lora_layout, per_example_gradients, per_example_loss


def lora_model(tiny_model, dtype=torch.float64, dropout=0.1):
    from peft import LoraConfig, get_peft_model
    cfg = LoraConfig(r=4, lora_alpha=16, lora_dropout=dropout, init_lora_weights=False,
                     target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    torch.manual_seed(0)
    return get_peft_model(tiny_model.to(dtype), cfg)


def encoded_examples(tokenizer, n=5):
    texts = [("what is the sum", "yes"), ("sort these words alpha beta gamma delta please", "alpha beta"),
             ("true", "false no yes true so the answer is"), ("the cat sat on a mat", "two dogs"),
             ("one bird sang", "softly")]
    exs = [Example(id=str(i), messages=[{"role": "user", "content": q}, {"role": "assistant", "content": a}])
           for i, (q, a) in enumerate(texts[:n])]
    return [encode_example(e, tokenizer, 64) for e in exs]


def reference_gradient(model, enc, pad_id):
    """Batch of one, plain autograd on the LoRA parameters, in the same flattened order."""
    model.eval()
    batch = collate([enc], pad_id)
    model.zero_grad()
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    loss, _ = per_example_loss(out.logits, batch["labels"])
    loss.sum().backward()
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    return torch.cat([p.grad.reshape(-1) for p in params])


def test_batched_equals_batch_one_reference_with_padding(tiny_model, tiny_tokenizer):
    model = lora_model(tiny_model)
    encs = encoded_examples(tiny_tokenizer)
    assert len({len(e.input_ids) for e in encs}) > 2  # unequal lengths: the batch is padded
    batch = collate(encs, tiny_tokenizer.pad_token_id)
    grads = per_example_gradients(model, batch)                    # [N, P]
    assert grads.dtype == torch.float64
    assert grads.shape[1] == sum(p.numel for p in lora_layout(model))
    for i, enc in enumerate(encs):
        ref = reference_gradient(model, enc, tiny_tokenizer.pad_token_id)
        rel = (grads[i] - ref).norm() / ref.norm()
        assert rel < 1e-6, (i, float(rel))


def test_gradients_do_not_depend_on_batch_composition(tiny_model, tiny_tokenizer):
    model = lora_model(tiny_model)
    encs = encoded_examples(tiny_tokenizer)
    full = per_example_gradients(model, collate(encs, tiny_tokenizer.pad_token_id))
    pair = per_example_gradients(model, collate(encs[1:3], tiny_tokenizer.pad_token_id))
    torch.testing.assert_close(full[1:3], pair, rtol=1e-9, atol=1e-12)


def test_dropout_is_off_and_model_mode_restored(tiny_model, tiny_tokenizer):
    model = lora_model(tiny_model, dropout=0.5)
    model.train()
    batch = collate(encoded_examples(tiny_tokenizer, 2), tiny_tokenizer.pad_token_id)
    g1 = per_example_gradients(model, batch)
    g2 = per_example_gradients(model, batch)
    assert torch.equal(g1, g2)
    assert model.training
    assert all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)


def test_per_example_loss_is_mean_over_completion_tokens():
    logits = torch.randn(2, 4, 7, dtype=torch.float64)
    labels = torch.tensor([[-100, 3, 4, -100], [-100, -100, 2, -100]])
    loss, n = per_example_loss(logits, labels)
    assert n.tolist() == [2, 1]
    ce = torch.nn.functional.cross_entropy
    assert torch.isclose(loss[0], (ce(logits[0, 0:1], labels[0, 1:2]) + ce(logits[0, 1:2], labels[0, 2:3])) / 2)
    assert torch.isclose(loss[1], ce(logits[1, 1:2], labels[1, 2:3]))


def test_model_without_lora_is_a_user_error(tiny_model):
    from less_select.errors import UserError
    with pytest.raises(UserError, match="no LoRA"):
        lora_layout(tiny_model)


def test_output_head_computes_only_the_loss_positions(tiny_model, tiny_tokenizer):
    """The head sees [T, H] (T = completion tokens of the batch), not [N, S, H]; the gradients are
    those of the full-logits loss (the batch-one reference above uses full logits)."""
    from less_select.gradients.per_example import PerExampleLoraGradients
    model = lora_model(tiny_model)
    encs = encoded_examples(tiny_tokenizer)
    batch = collate(encs, tiny_tokenizer.pad_token_id)
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        with PerExampleLoraGradients(model, lambda p, g: None) as collector:
            _, n_tokens = collector.run(batch)
    finally:
        handle.remove()
    assert seen == [(int(n_tokens.sum()), model.config.vocab_size)]
    assert int(n_tokens.sum()) < batch["input_ids"].numel()


def test_flat_loss_equals_the_per_position_definition():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11, dtype=torch.float64)
    labels = torch.randint(0, 11, (3, 6))
    labels[:, :2] = -100
    labels[2, 4:] = -100
    loss, n = per_example_loss(logits, labels)
    ce = torch.nn.functional.cross_entropy
    for i in range(3):
        pos = [t for t in range(5) if labels[i, t + 1] != -100]
        ref = sum(ce(logits[i, t], labels[i, t + 1]) for t in pos) / len(pos)
        assert n[i] == len(pos) and torch.isclose(loss[i], ref)
