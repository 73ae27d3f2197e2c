"""Tiny pretraining lowers the loss and saves a loadable model; the report helpers work."""

from __future__ import annotations

import math

import pytest

from less_select.demo.pretrain import pretrain_tiny_model, tulu_texts
from less_select.demo.report import format_table, summary_sentences, write_report
from less_select.demo.tasks import make_demo_data, read_jsonl


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    data = make_demo_data(tmp_path_factory.mktemp("data"), seed=0, pool_size=200,
                          n_target_fewshot=4, n_test=12)
    texts = tulu_texts(read_jsonl(data.pool))
    result = pretrain_tiny_model(tmp_path_factory.mktemp("model"), texts, seed=0, steps=40,
                                 batch_size=16, lr=5e-3, vocab_size=300, hidden_size=32,
                                 num_layers=2, intermediate_size=64, num_threads=1)
    return data, result


def test_pretrain_lowers_loss_and_saves(small):
    _, r = small
    assert r.steps == 40 and len(r.losses) == 40
    assert all(math.isfinite(x) for x in r.losses)
    assert r.final_loss < 0.8 * r.first_loss
    assert (r.model_dir / "config.json").is_file()
    assert (r.model_dir / "tokenizer.json").is_file()


def test_pretrain_is_deterministic(small, tmp_path):
    data, _ = small
    texts = tulu_texts(read_jsonl(data.pool))[:64]
    kw = dict(seed=3, steps=4, batch_size=8, lr=5e-3, vocab_size=300, hidden_size=16,
              num_layers=1, intermediate_size=32, num_threads=1)
    a = pretrain_tiny_model(tmp_path / "a", texts, **kw)
    b = pretrain_tiny_model(tmp_path / "b", texts, **kw)
    assert a.losses == b.losses
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == \
        (tmp_path / "b" / "model.safetensors").read_bytes()


ROWS = [
    {"method": "less", "n_selected": 150, "target_loss": 0.41, "exact_match": 0.33, "seconds": 12.0,
     "n_test": 200},
    {"method": "random", "n_selected": 150, "target_loss": 1.10, "exact_match": 0.05, "seconds": 8.0,
     "n_test": 200},
    {"method": "bm25", "n_selected": 150, "target_loss": 2.0, "exact_match": 0.02, "seconds": 9.0,
     "n_test": 200},
    {"method": "full", "n_selected": 3000, "target_loss": 0.30, "exact_match": 0.40, "seconds": 60.0,
     "n_test": 200},
]
COUNTS = {"less": {"add_word": 60, "add_expr": 80, "sub_word": 10},
          "random": {"add_word": 6, "add_expr": 15, "sub_word": 18, "bool_expr": 111},
          "bm25": {"add_word": 40, "sub_word": 70, "compare_word": 40},
          "full": {"add_word": 120, "add_expr": 300, "sub_word": 360, "bool_expr": 2220}}
ROLES = {"add_word": "relevant", "add_expr": "relevant", "sub_word": "distractor",
         "compare_word": "distractor", "bool_expr": "other"}


def test_format_table():
    text = format_table(ROWS)
    lines = text.splitlines()
    assert len(lines) == 2 + len(ROWS)
    assert "method" in lines[0] and "exact_match" in lines[0]
    assert "33.0%" in text and "0.410" in text


def test_summary_sentences_follow_the_numbers():
    s = " ".join(summary_sentences(ROWS, COUNTS, ROLES))
    assert "Best exact match: full with 40.0%" in s
    assert "LESS vs random: +28.0 points" in s
    assert "LESS vs full: -7.0 points" in s and "worse on exact match" in s
    flipped = [dict(r, exact_match=1 - r["exact_match"]) for r in ROWS]
    assert "Best exact match: bm25" in " ".join(summary_sentences(flipped))


def test_write_report(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    fams = ["add_word"] * 20 + ["sub_word"] * 30 + ["bool_expr"] * 50
    scores = np.concatenate([rng.normal(0.5, 0.1, 20), rng.normal(0.2, 0.1, 30),
                             rng.normal(0.0, 0.1, 50)])
    paths = write_report(tmp_path / "report", ROWS, COUNTS, scores, fams, ROLES,
                         notes=["pretraining took 1.0 s"])
    for key in ("metrics", "less_scores", "family_share", "summary"):
        assert paths[key].is_file() and paths[key].stat().st_size > 100, key
    for key in ("metrics", "less_scores", "family_share"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = paths["summary"].read_text()
    assert "| less | 150 | 0.410 | 33.0% | 12.0 | 200 |" in md
    assert "add_expr" in md and "Best exact match" in md and "pretraining took" in md
    # scores with a NaN and no families listed in roles still plot
    write_report(tmp_path / "r2", ROWS[:1], {"less": {"x": 1}}, [float("nan"), 1.0], ["x", "y"])
