import numpy as np
import pytest
import torch

from less_select.baselines import RDSConfig, RDSPlusSelector, RDSSelector, make_baseline
from less_select.baselines.embeddings import embed_examples, pool_hidden

from .helpers import ex, random_examples

WORDS = ("the cat sat on a mat while two dogs ran past quickly and one bird sang softly "
         "what is the sum of three and four answer yes no true false").split()


@pytest.mark.parametrize("pooling", ["last", "weighted_mean", "mean"])
def test_padding_invariance(tiny_model, tiny_tokenizer, pooling):
    short = ex("s", "the cat", "yes")
    long = ex("l", " ".join(WORDS * 2), " ".join(WORDS))
    mid = ex("m", "what is the sum of three and four", "seven")
    batch = embed_examples(tiny_model, tiny_tokenizer, [short, long, mid], pooling=pooling,
                           max_tokens_per_batch=10**6)
    for i, e in enumerate([short, long, mid]):
        alone = embed_examples(tiny_model, tiny_tokenizer, [e], pooling=pooling)
        np.testing.assert_allclose(batch[i], alone[0], atol=1e-5, rtol=0)


def test_batching_plan_does_not_change_embeddings(tiny_model, tiny_tokenizer):
    exs = random_examples(WORDS, 17, seed=3)
    a = embed_examples(tiny_model, tiny_tokenizer, exs, pooling="weighted_mean",
                       max_tokens_per_batch=10**6)
    b = embed_examples(tiny_model, tiny_tokenizer, exs, pooling="weighted_mean",
                       max_tokens_per_batch=64, max_batch_size=3)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_pooling_formulas():
    h = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    last = pool_hidden(h, mask, "last")
    torch.testing.assert_close(last, torch.stack([h[0, 2], h[1, 3]]))
    wm = pool_hidden(h, mask, "weighted_mean")
    torch.testing.assert_close(wm[0], (1 * h[0, 0] + 2 * h[0, 1] + 3 * h[0, 2]) / 6)
    torch.testing.assert_close(wm[1], (h[1] * torch.tensor([1., 2., 3., 4.])[:, None]).sum(0) / 10)
    torch.testing.assert_close(pool_hidden(h, mask, "mean")[0], h[0, :3].mean(0))


@pytest.mark.parametrize("cls", [RDSSelector, RDSPlusSelector])
def test_duplicate_of_target_ranks_top(tiny_model, tiny_tokenizer, cls):
    pool = random_examples(WORDS, 30, seed=0)
    target = ex("t", "is the bird on a mat or with two dogs", "the answer is no")
    pool.insert(11, ex("dup", target.messages[0]["content"], target.messages[1]["content"]))
    sel = cls(RDSConfig(max_tokens_per_batch=256), model=tiny_model, tokenizer=tiny_tokenizer)
    scores = sel.score(pool, [target])
    assert scores.dtype == np.float64 and scores.shape == (31,)
    assert int(np.argmax(scores)) == 11
    assert scores[11] == pytest.approx(1.0, abs=1e-5)


def test_subtask_aggregation_and_loading_by_path(tiny_model_dir):
    pool = random_examples(WORDS, 12, seed=1)
    targets = random_examples(WORDS, 5, seed=2, prefix="t")
    for t, s in zip(targets, ["a", "a", "a", "b", "b"]):
        t.subtask = s
    sel = make_baseline("rds_plus", model=str(tiny_model_dir), dtype="float32")
    scores = sel.score(pool, targets)
    p, t = sel.embed(pool), sel.embed(targets)
    sim = p.astype(np.float64) @ t.T.astype(np.float64)
    expected = np.maximum(sim[:, :3].mean(1), sim[:, 3:].mean(1))
    np.testing.assert_allclose(scores, expected, atol=1e-6)


def test_peft_adapter_is_applied(tiny_model_dir, tmp_path):
    peft = pytest.importorskip("peft")
    from less_select.modeling import load_model
    base = load_model(str(tiny_model_dir), dtype="float32", device=torch.device("cpu"))
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8,
                                                      target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    for n, prm in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(prm, std=0.5)
    model.save_pretrained(tmp_path / "adapter")
    exs = random_examples(WORDS, 4, seed=5)
    plain = make_baseline("rds", model=str(tiny_model_dir), dtype="float32").embed(exs)
    adapted = make_baseline("rds", model=str(tiny_model_dir), adapter=str(tmp_path / "adapter"),
                            dtype="float32").embed(exs)
    assert np.abs(plain - adapted).max() > 1e-3
