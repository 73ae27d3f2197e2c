import numpy as np
import pytest

from less_select.fusion import align_columns, reciprocal_rank_fusion


def test_rrf_matches_a_loop_reference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 2)), rng.normal(size=(7, 2))
    fused = reciprocal_rank_fusion([a, b], [1.0, 0.5], constant=60)
    ref = np.zeros((7, 2))
    for m, w in ((a, 1.0), (b, 0.5)):
        for j in range(2):
            order = sorted(range(7), key=lambda i: (-m[i, j], i))
            for r, i in enumerate(order, start=1):
                ref[i, j] += w / (60 + r)
    np.testing.assert_allclose(fused, ref)


def test_rrf_rewards_rows_both_methods_rank_high_and_checks_shapes():
    a = np.array([[3.0], [2.0], [1.0], [0.0]])
    b = np.array([[0.0], [3.0], [2.0], [1.0]])
    fused = reciprocal_rank_fusion([a, b])
    assert int(fused[:, 0].argmax()) == 1  # second by one, first by the other
    with pytest.raises(ValueError, match="differ in shape"):
        reciprocal_rank_fusion([a, np.zeros((3, 1))])
    m = align_columns(np.array([[1.0, 2.0]]), ["x", "y"], ["y", "x"])
    assert m.tolist() == [[2.0, 1.0]]


def _pool(tmp_path, n=12):
    import json
    path = tmp_path / "pool.jsonl"
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"e{i}", "messages": [{"role": "user", "content": f"q{i}"},
                                                             {"role": "assistant", "content": f"a{i}"}]}) + "\n")
    return path


def test_fuse_stage_aligns_rows_by_provenance_and_ranks_the_fused_scores(tmp_path):
    import json

    from less_select.data import load_examples
    from less_select.errors import UserError
    from less_select.fusion import FuseConfig, run_fuse
    from less_select.selection import BudgetConfig, write_selection
    from less_select.subtask_rules import BalancedRule

    examples, _ = load_examples([_pool(tmp_path)])
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(12, 2)), rng.normal(size=(12, 2))
    write_selection(tmp_path / "A", examples, None, BudgetConfig(top_k=4), "less",
                    per_subtask=a, subtasks=["s1", "s2"])
    # the second method lists its rows in another order and its subtasks the other way round
    perm = rng.permutation(12)
    write_selection(tmp_path / "B", [examples[i] for i in perm], None, BudgetConfig(top_k=4), "rds_plus",
                    per_subtask=b[perm][:, ::-1], subtasks=["s2", "s1"])
    report = run_fuse(FuseConfig(selections=[str(tmp_path / "A"), str(tmp_path / "B")],
                                 output_dir=str(tmp_path / "F"), top_k=4))
    expected = BalancedRule().rank(reciprocal_rank_fusion([a, b]))[:4]
    chosen = [json.loads(l)["id"] for l in open(tmp_path / "F" / "top_k4.jsonl")]
    assert chosen == [f"e{i}" for i in expected]
    assert report["method"] == "hybrid" and report["subtask_rule"] == "balanced"
    with pytest.raises(UserError, match="at least two"):
        run_fuse(FuseConfig(selections=[str(tmp_path / "A")], output_dir=str(tmp_path / "G")))
    with pytest.raises(UserError, match="not a finished selection folder"):
        run_fuse(FuseConfig(selections=[str(tmp_path / "A"), str(tmp_path)], output_dir=str(tmp_path / "G")))
