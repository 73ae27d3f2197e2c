"""Small example builders for the baseline tests."""

from __future__ import annotations

import random

from less_select.data.example import Example


def ex(i, user: str, assistant: str, subtask: str | None = None) -> Example:
    return Example(id=f"ex{i}", messages=[{"role": "user", "content": user},
                                          {"role": "assistant", "content": assistant}],
                   subtask=subtask)


def random_examples(words: list[str], n: int, seed: int, prefix: str = "p",
                    subtask: str | None = None) -> list[Example]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(4, 12)))
        a = " ".join(rng.choice(words) for _ in range(rng.randint(2, 8)))
        out.append(ex(f"{prefix}{i}", q, a, subtask))
    return out
