"""Shared fixtures: a tiny offline tokenizer and Llama model, and small pool/target files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

WORDS = ("the cat sat on a mat while two dogs ran past quickly and one bird sang softly "
         "what is the sum of three and four answer yes no true false sort these words "
         "alpha beta gamma delta so the answer is").split()


def corpus(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = ["<|user|>\n", "<|assistant|>\n", "<|system|>\n", "So the answer is", "Answer:",
             "The answer is:", "A: Let's think step by step."]
    for _ in range(n):
        texts.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))))
    return texts


def make_pool_records(n: int, seed: int = 0) -> list[dict]:
    """Open-instruct `messages` records of varied length, with a `task` field."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 10)))
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        out.append({"dataset": "toy", "id": f"toy_{i}", "task": f"t{i % 3}",
                    "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from less_select.demo.tiny_model import build_tokenizer
    return build_tokenizer(corpus(), vocab_size=300)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """A saved tiny Llama (2 layers, hidden 32) + tokenizer, loadable by path like a hub model."""
    from less_select.demo.tiny_model import build_tiny_llama
    out = tmp_path_factory.mktemp("tiny_model")
    model = build_tiny_llama(len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_heads=4,
                             tokenizer=tiny_tokenizer, seed=0)
    tiny_tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out


@pytest.fixture
def tiny_model(tiny_tokenizer):
    from less_select.demo.tiny_model import build_tiny_llama
    return build_tiny_llama(len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_heads=4,
                            tokenizer=tiny_tokenizer, seed=0)


@pytest.fixture
def pool_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pool.jsonl", make_pool_records(24))


@pytest.fixture
def target_file(tmp_path) -> Path:
    recs = make_pool_records(6, seed=1)
    for i, r in enumerate(recs):
        r["subtask"] = "a" if i < 2 else "b"  # unequal subtask sizes on purpose
    return write_jsonl(tmp_path / "target.jsonl", recs)


@pytest.fixture
def quiet_datasets():
    """No progress bars from `datasets` during a test (restored after it)."""
    import datasets
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()
