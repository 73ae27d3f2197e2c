"""Streaming influence scores against a brute-force loop over docs/method.md ("Influence"), bit for bit
against the whole-chunk computation the blocked scorer replaced, the read-ahead reader, and selection order."""

import json

import numpy as np
import pytest

from less_select.datastore import store as ds
from less_select.errors import UserError
from less_select import scoring
from less_select.scoring import compute_scores, subtask_means, unit_rows
from less_select.selection import BudgetConfig
from less_select.subtask_rules import rank_order


def write_store(root, mats, weights, subtasks=None, chunk_size=3, proj=None):
    """A store on disk from in-memory unit rows {checkpoint: [n, d]}."""
    root.mkdir(parents=True)
    names = list(mats)
    n, d = mats[names[0]].shape
    for name, m in mats.items():
        for c in range(ds.n_chunks(n, chunk_size)):
            ds.write_chunk(root, name, d, c, m[c * chunk_size:(c + 1) * chunk_size])
    manifest = {"format_version": ds.FORMAT_VERSION, "n_rows": n, "chunk_size": chunk_size,
                "gradient_type": "adam" if subtasks is None else "sgd",
                "projectors": [proj or {"kind": "identity", "dim": d, "seed": 0, "total_params": d}],
                "checkpoints": [{"name": k, "weight": w, "adapter_sha256": k} for k, w in zip(names, weights)]}
    (root / ds.MANIFEST).write_text(json.dumps(manifest))
    (root / "stage.json").write_text("{}")  # marks the store finished, as the builder does
    (root / ds.INDEX).write_text("".join(json.dumps({"row": i, "subtask": subtasks[i] if subtasks else None}) + "\n"
                                         for i in range(n)))
    return root


def unit(rng, n, d):
    x = rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def brute_force(pool, targets, weights, subtasks):
    """Inf(z, V_k) = 1/|V_k| sum_{z' in V_k} sum_i w_i cos(.,.); s = max_k, one loop per term."""
    n = next(iter(pool.values())).shape[0]
    out = np.zeros(n)
    ks = sorted(set(subtasks))
    for z in range(n):
        best = -np.inf
        for k in ks:
            members = [j for j, s in enumerate(subtasks) if s == k]
            total = 0.0
            for j in members:
                for (name, w) in zip(pool, weights):
                    a = pool[name][z].astype(np.float64)
                    b = targets[name][j].astype(np.float64)
                    total += w * a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
            best = max(best, total / len(members))
        out[z] = best
    return out


def test_streamed_scores_equal_brute_force_with_unequal_subtasks(tmp_path):
    rng = np.random.default_rng(0)
    names, weights = ["checkpoint-1", "checkpoint-2", "checkpoint-3"], [0.5, 0.3, 0.2]
    pool = {k: unit(rng, 11, 16) for k in names}
    targets = {k: unit(rng, 6, 16) for k in names}
    subtasks = ["b", "a", "b", "c", "b", "b"]  # sizes 1, 4, 1; not contiguous
    write_store(tmp_path / "pool", pool, weights)
    write_store(tmp_path / "tgt", targets, weights, subtasks=subtasks)
    got = compute_scores(tmp_path / "pool", tmp_path / "tgt", out_file=tmp_path / "s.npy")
    want = brute_force(pool, targets, weights, subtasks)
    assert got.subtasks == ["a", "b", "c"]
    np.testing.assert_allclose(got.score, want, rtol=1e-5, atol=1e-6)
    assert np.load(tmp_path / "s.npy").shape == (11, 3)


def test_mismatched_checkpoints_or_projection_refused(tmp_path):
    rng = np.random.default_rng(1)
    write_store(tmp_path / "pool", {"c1": unit(rng, 4, 8)}, [1.0])
    write_store(tmp_path / "tgt", {"c2": unit(rng, 2, 8)}, [1.0], subtasks=["a", "a"])
    with pytest.raises(UserError, match="other checkpoints"):
        compute_scores(tmp_path / "pool", tmp_path / "tgt")
    write_store(tmp_path / "tgt2", {"c1": unit(rng, 2, 8)}, [1.0], subtasks=["a", "a"],
                proj={"kind": "sparse", "dim": 8, "seed": 1, "total_params": 8})
    with pytest.raises(UserError, match="projection"):
        compute_scores(tmp_path / "pool", tmp_path / "tgt2")
    mf = json.loads((tmp_path / "pool" / ds.MANIFEST).read_text())
    (tmp_path / "pool" / ds.MANIFEST).write_text(json.dumps({**mf, "kind": "pool"}))
    with pytest.raises(UserError, match="--targets needs a targets store"):
        compute_scores(tmp_path / "pool", tmp_path / "pool")


def test_rank_order_is_stable_and_refuses_nan():
    scores = np.array([0.2, 0.5, 0.2, 0.5, 0.1])
    assert rank_order(scores).tolist() == [1, 3, 0, 2, 4]
    with pytest.raises(UserError, match="NaN"):
        rank_order(np.array([0.1, np.nan]))


def test_budget():
    assert BudgetConfig(percentage=0.05).n_select(270_679) == 13_533
    assert BudgetConfig(top_k=7).n_select(100) == 7
    with pytest.raises(UserError):
        BudgetConfig(percentage=1.5).n_select(10)


def test_projection_noise_estimate():
    from less_select.scoring import projection_noise
    means = {"c": np.array([[0.6, 0.0], [0.0, 0.3]])}
    ck = [{"name": "c"}]
    scores = np.random.default_rng(0).normal(0, 0.01, 1000)
    small = projection_noise(means, [1.0], ck, 1024, scores, "sparse")
    large = projection_noise(means, [1.0], ck, 16384, scores, "sparse")
    assert small["noise_std"] == pytest.approx(0.6 / 32)            # |mean row| / sqrt(d)
    assert large["noise_std"] == pytest.approx(small["noise_std"] / 4)
    assert small["expected_correlation_with_exact"] < large["expected_correlation_with_exact"]
    d95 = small["dim_for_correlation_0.95"]
    at_d95 = projection_noise(means, [1.0], ck, d95, scores, "sparse")
    assert at_d95["expected_correlation_with_exact"] == pytest.approx(0.95, abs=1e-3)
    assert small["noise_dominated"] and not at_d95["noise_dominated"]
    exact = projection_noise(means, [1.0], ck, 2, scores, "identity")
    assert exact["noise_std"] == 0 and exact["expected_correlation_with_exact"] == 1.0

def whole_chunk_scores(pool_path, targets_path):
    """The previous implementation: per chunk, acc += w_i * unit_rows(X_i) @ M_i^T."""
    pool, targets = ds.Datastore(pool_path), ds.Datastore(targets_path)
    dim = pool.dims[0]
    means = {c["name"]: subtask_means(targets, c["name"], dim)[0] for c in pool.checkpoints}
    out = np.zeros((pool.n_rows, next(iter(means.values())).shape[0]), np.float32)
    streams = [pool.iter_blocks(c["name"], dim) for c in pool.checkpoints]
    for blocks in zip(*streams):
        start = blocks[0][0]
        acc = np.zeros((blocks[0][1].shape[0], out.shape[1]), np.float32)
        for (_, block), c in zip(blocks, pool.checkpoints):
            acc += float(c["weight"]) * (unit_rows(block) @ means[c["name"]].T)
        out[start:start + acc.shape[0]] = acc
    return out


def noisy_unit(rng, n, d):
    """Unit rows stored in float16 (norms off by float16 rounding), some rows scaled away from 1
    and one zero row, so renormalization and its 1e-12 floor matter."""
    x = unit(rng, n, d).astype(np.float32)
    x[::5] *= 0.5
    x[3] = 0.0
    return x.astype(np.float16)


@pytest.mark.parametrize("n,d,chunk,labels,threads", [
    (5300, 2048, 2500, "xyxzyxw", 2),  # blocks of 1024 rows, a short remainder merged, a short last chunk
    (3000, 4096, 2400, "aaa", 1),      # one subtask (K = 1: a matrix-vector product)
    (300, 1000, 128, "xyz", 3),        # small chunks scored whole; d not a multiple of 8
])
def test_bit_identical_to_whole_chunk_scores(tmp_path, n, d, chunk, labels, threads):
    rng = np.random.default_rng(n + d)
    names, weights = ["checkpoint-1", "checkpoint-2"], [0.7, 0.3]
    write_store(tmp_path / "pool", {k: noisy_unit(rng, n, d) for k in names}, weights, chunk_size=chunk)
    write_store(tmp_path / "tgt", {k: unit(rng, len(labels), d) for k in names}, weights,
                subtasks=list(labels), chunk_size=chunk)
    got = compute_scores(tmp_path / "pool", tmp_path / "tgt", out_file=tmp_path / "s.npy", threads=threads)
    want = whole_chunk_scores(tmp_path / "pool", tmp_path / "tgt")
    assert got.per_subtask.shape == (n, len(set(labels)))
    assert np.array_equal(got.per_subtask.view(np.uint32), want.view(np.uint32))
    assert np.array_equal(np.load(tmp_path / "s.npy").view(np.uint32), want.view(np.uint32))


def test_block_bounds():
    assert scoring.block_bounds(4096, 8192, 27) == [(i, i + 256) for i in range(0, 4096, 256)]
    assert scoring.block_bounds(1000, 2048, 7) == [(0, 1000)]  # a second block would be short
    assert scoring.block_bounds(2500, 2048, 7) == [(0, 1024), (1024, 2500)]
    assert scoring.block_bounds(2400, 4096, 1) == [(0, 1024), (1024, 2400)]  # >= MIN_BLOCK_MNK
    for lo, hi in scoring.block_bounds(20_000, 512, 1):
        assert lo % scoring.ROW_ALIGN == 0 and (hi - lo) * 512 >= scoring.MIN_BLOCK_MNK


def test_thread_settings_restored(tmp_path):
    import torch
    rng = np.random.default_rng(0)
    write_store(tmp_path / "pool", {"c": unit(rng, 20, 8)}, [1.0], chunk_size=6)
    write_store(tmp_path / "tgt", {"c": unit(rng, 2, 8)}, [1.0], subtasks=["a", "b"])
    before = torch.get_num_threads()
    compute_scores(tmp_path / "pool", tmp_path / "tgt", threads=2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("damage,match", [
    ("delete", "chunk .*chunk-00001.npy is missing"),
    ("truncate", "chunk .*chunk-00001.npy cannot be read"),
    ("shape", "holds float16 \\(2, 8\\), expected float16 \\(6, 8\\)"),
    ("garbage", "cannot be read"),
])
def test_read_ahead_refuses_broken_chunks(tmp_path, damage, match):
    rng = np.random.default_rng(1)
    write_store(tmp_path / "pool", {"c": unit(rng, 20, 8)}, [1.0], chunk_size=6)
    write_store(tmp_path / "tgt", {"c": unit(rng, 2, 8)}, [1.0], subtasks=["a", "a"])
    f = ds.chunk_path(tmp_path / "pool", "c", 8, 1)
    if damage == "delete":
        f.unlink()
    elif damage == "truncate":
        f.write_bytes(f.read_bytes()[:-10])
    elif damage == "shape":
        np.save(f, unit(rng, 2, 8))
    else:
        f.write_bytes(b"not a numpy file" * 10)
    with pytest.raises(UserError, match=f"corrupt .*{match}"):
        compute_scores(tmp_path / "pool", tmp_path / "tgt")


def test_read_ahead_yields_every_chunk_in_order_and_stops_early(tmp_path):
    rng = np.random.default_rng(2)
    rows = unit(rng, 23, 8)
    write_store(tmp_path / "pool", {"a": rows, "b": rows[::-1].copy()}, [0.5, 0.5], chunk_size=5)
    store = ds.Datastore(tmp_path / "pool")
    seen = [(start, a.copy(), b.copy()) for start, (a, b) in store.read_ahead(["a", "b"], 8)]
    assert [s for s, _, _ in seen] == [0, 5, 10, 15, 20]
    assert np.array_equal(np.concatenate([a for _, a, _ in seen]), rows)
    assert np.array_equal(np.concatenate([b for _, _, b in seen]), rows[::-1])
    it = store.read_ahead(["a"], 8)
    next(it)
    it.close()  # the reader thread is stopped and joined, not left running
    import threading
    assert not any(t.name == "chunk-reader" for t in threading.enumerate())
