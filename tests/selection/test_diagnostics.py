import numpy as np

from less_select.data import Example
from less_select.diagnostics import selection_diagnostics


def _ex(i, answer, source="a.jsonl", dataset="d1"):
    return Example(id=str(i), messages=[{"role": "user", "content": "q"},
                                        {"role": "assistant", "content": answer}],
                   source=source, line=i + 1, raw={"dataset": dataset})


def test_flags_one_source_a_starved_subtask_and_a_length_band():
    pool = [_ex(i, "yes", source="t0.jsonl", dataset="t0") for i in range(10)] + \
           [_ex(10 + i, "a long answer " * 10, source="cot.jsonl", dataset="cot") for i in range(10)]
    chosen = np.arange(10)                     # only the one-word t0 answers
    best = ["s1"] * 20
    targets = [_ex(100, "a long answer " * 8)]
    d = selection_diagnostics(pool, chosen, best, ["s1", "s2", "s3"], targets)
    text = " | ".join(d["warnings"])
    assert "100% of the selection comes from one source file (t0.jsonl)" in text
    assert "s2, s3" in text and "balanced" in text
    assert "median of 1 word(s), the targets' 24" in text
    assert d["numbers"]["selected_by_best_subtask"] == {"s1": 10, "s2": 0, "s3": 0}


def test_a_balanced_mixed_selection_gives_no_warning():
    pool = [_ex(i, "an answer of five words", source=f"f{i % 2}.jsonl", dataset=f"d{i % 2}")
            for i in range(12)]
    best = ["s1", "s2", "s3"] * 4
    d = selection_diagnostics(pool, np.arange(12), best, ["s1", "s2", "s3"], [pool[0]])
    assert d["warnings"] == []
