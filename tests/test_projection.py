"""Random projections: pure functions of (kind, seed, P, d), blockwise, unbiased JL maps."""

from __future__ import annotations

import math

import pytest
import torch

from less_select import projection as pj
from less_select.errors import UserError
from less_select.projection import PROJECTORS, make_projector, projector_from_spec

KINDS = [("rademacher", {}), ("sparse", {}), ("sparse", {"nnz": 4})]
IDS = ["rademacher", "sparse1", "sparse4"]


def _make(kind, kw, P, d, seed=0, **extra):
    return make_projector(kind, P, d, seed=seed, **kw, **extra)


def _blocks(pr, x, cuts):
    """Project x by the coordinate blocks [cuts[i], cuts[i+1]) and sum, as the gradient code does."""
    out = torch.zeros(x.shape[0], pr.dim)
    for a, b in zip(cuts[:-1], cuts[1:]):
        out += pr.project_block(x[:, a:b], a)
    return out


# -- the hash -----------------------------------------------------------------------------------------

def test_tensor_hash_matches_pure_python_reference():
    vals = [0, 1, 2, 12345, 2**31 - 1, 2**40 + 7, 2**62 + 3, -1, -(2**63), 2**63 - 1, -987654321]
    got = pj.splitmix64(torch.tensor(vals, dtype=torch.int64)).tolist()
    want = [pj._signed(pj.splitmix64_reference(v)) for v in vals]
    assert got == want


def test_rademacher_entries_match_reference_definition():
    P, d, seed = 5000, 96, 7
    pr = make_projector("rademacher", P, d, seed=seed)
    key = pj._seed_key(seed, "rademacher") & pj._MASK64
    cols = [0, 1, 63, 64, 65, 1000, 4097, 4999]
    M = torch.cat([pr.block_matrix(c, 1) for c in cols], 1)
    for i, c in enumerate(cols):
        for r in (0, 1, 31, 63, 64, 95):
            h = pj.splitmix64_reference(key + (((c // 64) << 26) | r) * pj._GAMMA)
            sign = 1.0 if (h >> (c % 64)) & 1 else -1.0
            assert M[r, i].item() == pytest.approx(sign / math.sqrt(d), rel=1e-7)


def test_sparse_buckets_match_reference_definition():
    P, d, seed, nnz = 3000, 100, 5, 3
    pr = make_projector("sparse", P, d, seed=seed, nnz=nnz)
    key = pj._seed_key(seed, "sparse") & pj._MASK64
    for j in (0, 1, 255, 256, 2999):
        col = pr.block_matrix(j, 1)[:, 0]
        want = torch.zeros(d)
        for k in range(nnz):
            h = pj.splitmix64_reference(key + ((j << 8) | k) * pj._GAMMA)
            lo, hi = k * d // nnz, (k + 1) * d // nnz
            want[lo + (((h >> 32) * (hi - lo)) >> 32)] = (1.0 if h & 1 else -1.0) / math.sqrt(nnz)
        assert torch.equal(col, want)


# -- purity: same (kind, seed, P, d) gives the same map however it is applied ---------------------------

@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_same_spec_same_output_however_split(kind, kw):
    P, d = 1000, 64
    x = torch.randn(7, P, generator=torch.Generator().manual_seed(0))
    pr = _make(kind, kw, P, d, seed=3)
    full = pr.project(x)
    assert torch.equal(full, pr.project(x))                                   # repeated runs
    assert torch.equal(full, _make(kind, kw, P, d, seed=3).project(x))       # a fresh instance
    assert torch.equal(full, projector_from_spec(pr.spec()).project(x))      # rebuilt from the manifest
    assert torch.equal(full, _make(kind, kw, P, d, seed=3, cache_bytes=0).project(x))  # cache is invisible
    # uneven block splits, including ones that cut 64-column words: same matrix bit for bit, same output
    for cuts in ([0, 333, 700, P], [0, 1, 64, 65, 129, 500, 999, P], [0, 64, 128, P]):
        mats = [pr.block_matrix(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])]
        assert torch.equal(torch.cat(mats, 1), pr.block_matrix(0, P))
        torch.testing.assert_close(_blocks(pr, x, cuts), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full, x @ pr.block_matrix(0, P).T, rtol=1e-5, atol=1e-5)
    # rows are independent: batch 1 vs 7, and two "processes" each projecting half of the rows
    singles = torch.cat([pr.project(x[i:i + 1]) for i in range(7)])
    torch.testing.assert_close(singles, full, rtol=1e-6, atol=1e-6)
    rank0 = _make(kind, kw, P, d, seed=3).project(x[:4])
    rank1 = _make(kind, kw, P, d, seed=3).project(x[4:])
    torch.testing.assert_close(torch.cat([rank0, rank1]), full, rtol=1e-6, atol=1e-6)
    # low-precision gradients are projected as their float32 values
    xb = x.to(torch.bfloat16)
    assert torch.equal(pr.project(xb), pr.project(xb.float()))
    # a different seed is a different map
    other = _make(kind, kw, P, d, seed=4)
    assert not torch.equal(other.block_matrix(0, P), pr.block_matrix(0, P))
    assert (other.project(x) - full).abs().max() > 0.1


def test_rademacher_rows_do_not_depend_on_dim():
    """Entries depend on (seed, row, column) only: a smaller d is a rescaled prefix of a larger one."""
    P = 700
    x = torch.randn(3, P)
    big = make_projector("rademacher", P, 256, seed=1)
    small = make_projector("rademacher", P, 64, seed=1)
    torch.testing.assert_close(small.project(x), big.project(x)[:, :64] * 2.0, rtol=1e-5, atol=1e-5)


def test_kinds_use_unrelated_streams():
    a = make_projector("rademacher", 500, 32, seed=0).block_matrix(0, 500)
    b = make_projector("sparse", 500, 32, seed=0).block_matrix(0, 500)
    assert not torch.equal(torch.sign(a), torch.sign(b))


# -- statistics ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_inner_products_unbiased_with_jl_variance(kind, kw):
    P, d, seeds = 256, 32, 200
    g = torch.Generator().manual_seed(1)
    x = torch.randn(P, generator=g, dtype=torch.float64)
    y = 0.6 * x + 0.8 * torch.randn(P, generator=g, dtype=torch.float64)
    xy = torch.stack([x, y]).float()
    exact = float(x @ y)
    est = []
    for s in range(seeds):
        px, py = _make(kind, kw, P, d, seed=s).project(xy).double()
        est.append(float(px @ py))
    est = torch.tensor(est, dtype=torch.float64)
    var_theory = (float(x @ x) * float(y @ y) + exact**2 - 2 * float((x * x) @ (y * y))) / d
    se = math.sqrt(var_theory / seeds)
    assert abs(est.mean().item() - exact) < 4 * se, (est.mean().item(), exact, se)
    assert 0.6 < est.var().item() / var_theory < 1.6


@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_norms_preserved(kind, kw):
    P, d, n = 2000, 256, 300
    x = torch.randn(n, P, generator=torch.Generator().manual_seed(2))
    ratio = (_make(kind, kw, P, d, seed=11).project(x).pow(2).sum(1) / x.pow(2).sum(1)).double()
    spread = math.sqrt(2 / d)
    assert abs(ratio.mean().item() - 1) < 4 * spread / math.sqrt(n)
    assert 0.7 * spread < ratio.std().item() < 1.4 * spread


def test_rademacher_entries_are_balanced_signs():
    d = 64
    M = make_projector("rademacher", 2048, d, seed=9).block_matrix(0, 2048)
    assert torch.equal(M.abs(), torch.full_like(M, 1 / math.sqrt(d)))
    frac = (M > 0).float().mean().item()
    assert abs(frac - 0.5) < 0.01                     # 131072 entries: sd 0.0014
    # no structure between rows: row-pair correlations are ~ N(0, 1/P)
    C = (M @ M.T) * d / 2048
    off = C[~torch.eye(d, dtype=torch.bool)]
    assert off.abs().max() < 6 / math.sqrt(2048)


@pytest.mark.parametrize("nnz", [1, 4])
def test_sparse_one_hot_hits_exactly_nnz_buckets(nnz):
    P, d = 3000, 128
    pr = make_projector("sparse", P, d, seed=2, nnz=nnz)
    onehots = torch.zeros(5, 200)
    cols = [0, 17, 63, 150, 199]
    onehots[range(5), cols] = 1.0
    out = pr.project_block(onehots, 2800)
    for row in out:
        nz = row[row != 0]
        assert nz.numel() == nnz
        torch.testing.assert_close(nz.abs(), torch.full((nnz,), 1 / math.sqrt(nnz)))
        slots = (row != 0).nonzero().flatten() // (d // nnz)
        assert sorted(slots.tolist()) == list(range(nnz))   # one bucket per slice
    # buckets spread over [0, d): CountSketch loads are roughly uniform
    loads = (make_projector("sparse", P, d, seed=2).block_matrix(0, P) != 0).sum(1).float()
    assert loads.min() > 0 and loads.max() < 3 * P / d


# -- errors -------------------------------------------------------------------------------------------

def test_errors_name_the_fix():
    with pytest.raises(UserError, match="rademacher.*sparse"):
        make_projector("fastjl", 10, 4)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(UserError, match="dim"):
            make_projector("sparse", 10, bad)
    with pytest.raises(UserError, match="total_params"):
        make_projector("rademacher", 0, 4)
    with pytest.raises(UserError, match="nnz"):
        make_projector("rademacher", 10, 4, nnz=2)
    with pytest.raises(UserError, match="nnz"):
        make_projector("sparse", 10, 4, nnz=8)
    spec = make_projector("sparse", 10, 4).spec()
    with pytest.raises(UserError, match="hash"):
        projector_from_spec({**spec, "hash": "other-v9"})
    pr = make_projector("sparse", 10, 4)
    with pytest.raises(ValueError, match="outside"):
        pr.project_block(torch.zeros(2, 5), 6)
    with pytest.raises(ValueError):
        pr.project(torch.zeros(2, 9))


def test_registry_and_spec():
    assert set(PROJECTORS) == {"rademacher", "sparse", "identity"}
    spec = make_projector("sparse", 100, 16, seed=5, nnz=2).spec()
    assert spec == {"kind": "sparse", "seed": 5, "dim": 16, "total_params": 100,
                    "hash": pj.HASH_VERSION, "nnz": 2}
    empty = make_projector("rademacher", 100, 16).project_block(torch.zeros(3, 0), 100)
    assert empty.shape == (3, 16) and not empty.any()


def test_identity_is_exact_blockwise():
    x = torch.randn(3, 50)
    pr = make_projector("identity", 50, 50)
    assert pr.dim == 50 and pr.spec()["dim"] == 50
    assert torch.equal(_blocks(pr, x, [0, 7, 30, 50]), x)
    with pytest.raises(UserError, match="dims to \\[50\\]"):
        make_projector("identity", 50, 1)


@pytest.mark.parametrize("kind,kw", KINDS, ids=IDS)
def test_accumulator_sums_blocks_like_separate_projections(kind, kw):
    """One running sum over a batch's blocks (one working buffer, folded once) equals projecting
    each block on its own and adding the results, and the whole vector at once."""
    P, d = 1000, 64
    x = torch.randn(5, P, generator=torch.Generator().manual_seed(1))
    pr = _make(kind, kw, P, d, seed=2)
    cuts = [0, 10, 64, 300, 301, 777, P]
    acc = pr.accumulator()
    for a, b in zip(cuts[:-1], cuts[1:]):
        acc.add(x[:, a:b], a)
    got = acc.result()
    torch.testing.assert_close(got, _blocks(pr, x, cuts), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got, pr.project(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        acc.add(x[:3, :10], 0)                     # another batch's rows cannot join this sum
    with pytest.raises(ValueError, match="no block"):
        pr.accumulator().result()
