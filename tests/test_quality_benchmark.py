"""The quality benchmark's suites and metrics on the real data (skipped without ../shared/data):
every suite plants each task's examples once, keeps held-out and target rows disjoint from them,
and writes the targets in another answer format than the planted rows (the point of the suite)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.skipif(not (DATA / "train" / "processed").is_dir(), reason="needs ../shared/data")


def _answer(rec):
    return rec["messages"][-1]["content"]


@pytest.mark.parametrize("name", ["bbh", "cot", "mmlu"])
def test_suite_plants_each_task_with_a_format_mismatch(name):
    from benchmarks.quality.suites import SuiteSizes, build_suite
    sizes = SuiteSizes(n_background=50, n_plant=4, n_heldout=3)
    suite = build_suite(name, DATA, sizes, seed=0)
    planted = [r for r in suite.pool if r["id"].startswith("planted/")]
    assert len(planted) == 4 * len(suite.tasks) and len(suite.pool) == 50 + len(planted)
    assert len({r["id"] for r in suite.pool}) == len(suite.pool)  # ids unique: recovery keys on them
    questions = lambda rows: {r["messages"][0]["content"] for r in rows}  # noqa: E731
    assert not questions(planted) & questions(suite.heldout) and not questions(planted) & questions(suite.targets_match)
    for task in suite.tasks:
        mis = [_answer(r) for r in suite.targets_mismatch if r["subtask"] == task]
        match = [_answer(r) for r in suite.targets_match if r["subtask"] == task]
        plant = [_answer(r) for r in planted if r["task"] == task]
        assert mis and match and plant
        if name == "cot":  # CoT targets vs answer-only planted rows
            assert all("So the answer is" in a for a in mis) and not any("So the answer is" in a for a in plant)
        else:  # letters / Yes-No in the targets, option text / True-False in the planted rows
            assert not set(mis) & set(plant) or name == "bbh" and all("So the answer is" in a for a in mis)
        assert sum(len(a.split()) for a in match) / len(match) < 20  # matched: answer-only like planted


def test_recovery_counts_planted_rows_of_each_task(tmp_path):
    from benchmarks.quality.run import recovery
    from less_select.data import load_examples
    from less_select.selection import BudgetConfig, write_selection
    ids = ["planted/a/0", "x1", "planted/b/0", "planted/a/1", "x2", "planted/b/1"]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": i, "dataset": "d", "messages": [
        {"role": "user", "content": i}, {"role": "assistant", "content": "y"}]}) + "\n" for i in ids))
    examples, _ = load_examples([pool])
    m = np.array([[0.9, 0], [0.8, 0.1], [0, 0.9], [0.7, 0], [0.1, 0.8], [0, 0.1]])
    write_selection(tmp_path / "S", examples, None, BudgetConfig(top_k=4), "x", per_subtask=m,
                    subtasks=["a", "b"], subtask_rule="balanced")
    r = recovery(tmp_path / "S", ids, ["a", "b"], 2)
    assert r["precision_at_k"] == {"a": 0.5, "b": 0.5}  # a: planted/a/0 and x1; b: planted/b/0 and x2
    assert r["planted_share_of_selection"] == 0.5 and r["selected_per_task"] == {"a": 1, "b": 1}
