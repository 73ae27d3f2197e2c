"""Random projections R^P -> R^d for the gradient datastore (docs/method.md, "Projection").

Gradients arrive module by module, so every projector is *decomposable over coordinate blocks*:
``project_block(g[:, a:b], a)`` returns ``g[:, a:b] @ Pi[:, a:b].T`` and the caller sums the blocks.
The matrix ``Pi`` is a pure function of ``(kind, seed, P, d)`` (plus ``nnz`` for ``sparse``): its entries
come from a counter-based hash (splitmix64 finalizer on int64 torch tensors, wraparound arithmetic,
masked logical shifts) of ``(seed, row, column)``, so any column block is generated independently and
bit-identically on any device, for any block split, batch size or number of processes. Only the
float32 summation order of the output can differ (differences ~1e-7 relative).

Kinds (both are Johnson-Lindenstrauss maps with unbiased inner products, E<Pi x, Pi y> = <x, y>, and
Var<Pi x, Pi y> = (|x|^2 |y|^2 + <x,y>^2 - 2 sum_j x_j^2 y_j^2) / d, so cosines are kept to ~1/sqrt(d)):

``rademacher``
    Dense ``Pi[r, c] = +-1/sqrt(d)``, the paper's TRAK ``fast_jl`` equivalent (faithful mode). One 64-bit
    hash of ``(seed, row r, word c // 64)`` gives the signs of 64 consecutive columns (bit ``c % 64``
    set means +1). Cost O(N P d): the product is computed without materializing the float matrix, by a
    table ("four Russians") method: for each group of 8 columns, the 256 possible signed sums of the
    N inputs are tabulated, and each output row gathers one table entry per 8 columns
    (``embedding_bag``), i.e. N*P*d/8 additions plus d*P/64 hashes. Memory is bounded by column
    chunks of about 1 MB of hash words. Entries do not depend on d, so the first d' rows of a
    d-row projection times sqrt(d/d') are the d'-row projection with the same seed.
``sparse``
    Sparse JL / CountSketch (``nnz=1``, default): coordinate j adds ``s_k(j) x_j / sqrt(nnz)`` to
    bucket ``h_k(j)`` for k < nnz, where bucket k is drawn from the k-th of nnz equal slices of
    [0, d) (so the nnz buckets of one coordinate are distinct) and the sign and bucket come from one
    hash of ``(seed, j, k)``. Cost O(N P nnz) via one ``index_add_`` (signs are folded into the target
    index of a [positive | negative] buffer, so there is no multiply), far below a dense matmul. Same
    variance as the dense map to first order; CountSketch is less robust for gradients dominated by a
    few coordinates (raise nnz to 4 or 8 then).

Generated hashes of blocks seen before are kept up to ``cache_bytes`` (default 256 MiB; blocks repeat
every batch): 8 bytes per (coordinate, k) for ``sparse``, d/8 bytes per column for ``rademacher``.

``identity`` (no projection, ``dim = P``) gives exact features for small models and tests.

Use :func:`make_projector` (or :func:`projector_from_spec` with the dict :meth:`Projector.spec` wrote
into the datastore manifest).
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from .errors import UserError

__all__ = ["Projector", "BlockSum", "RademacherProjector", "SparseProjector", "IdentityProjector", "PROJECTORS", "make_projector",
           "projector_from_spec", "splitmix64", "splitmix64_reference", "HASH_VERSION"]

HASH_VERSION = "splitmix64-v1"
MAX_DIM = 1 << 26            # rows fit the 26-bit row field of the dense counter
MAX_PARAMS = 1 << 43         # columns fit the remaining 37-bit word field (and the sparse j << 8)
MAX_NNZ = 256
#: default budget for keeping generated hashes of blocks seen before (blocks repeat every batch)
DEFAULT_CACHE_BYTES = 256 << 20

_MASK64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(u: int) -> int:
    """The int64 (two's complement) value of a 64-bit unsigned integer."""
    u &= _MASK64
    return u - (1 << 64) if u >= (1 << 63) else u


def splitmix64_reference(z: int) -> int:
    """Pure-Python splitmix64 finalizer on unsigned 64-bit ints (the definition the tensor code follows)."""
    z &= _MASK64
    z = ((z ^ (z >> 30)) * _MIX1) & _MASK64
    z = ((z ^ (z >> 27)) * _MIX2) & _MASK64
    return z ^ (z >> 31)


def _srl(z: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (z >> k) & ((1 << (64 - k)) - 1)


def splitmix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finalizer on an int64 tensor, bit-identical to :func:`splitmix64_reference`."""
    return _mix_(z.clone())


def _mix_(z: torch.Tensor) -> torch.Tensor:
    """In-place :func:`splitmix64` (int64 multiplication wraps around; shifts are masked to be logical)."""
    for shift, mult in ((30, _MIX1), (27, _MIX2), (31, None)):
        t = z >> shift
        t &= (1 << (64 - shift)) - 1
        z ^= t
        if mult is not None:
            z.mul_(_signed(mult))
    return z


def _arange_term(start: int, stop: int, stride: int, device) -> torch.Tensor:
    """``(i * stride * gamma) mod 2^64`` for i in [start, stop), as int64 (wraparound multiply)."""
    return torch.arange(start, stop, dtype=torch.int64, device=device).mul_(_signed(stride * _GAMMA))


def _seed_key(seed: int, kind: str) -> int:
    """Per-(seed, kind) stream start; kinds get unrelated streams."""
    tag = int.from_bytes(kind.encode()[:8].ljust(8, b"\0"), "little")
    return _signed(splitmix64_reference(splitmix64_reference(seed & _MASK64) ^ tag))


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UserError(f"projection: {name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


class Projector(ABC):
    """A random linear map Pi: R^P -> R^d applied block by block (see the module docstring)."""

    kind: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ("cache_bytes",)

    def __init__(self, total_params: int, dim: int, seed: int = 0, device=None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.total_params = _check_int("total_params", total_params, 1, MAX_PARAMS)
        self.dim = _check_int("dim", dim, 1, MAX_DIM)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UserError(f"projection: seed must be an integer, got {seed!r}")
        self.seed = seed
        self.device = torch.device(device) if device is not None else None
        self.cache_bytes = _check_int("cache_bytes", cache_bytes, 0, 1 << 62)
        self._key = _seed_key(seed, self.kind)
        self._cache: dict[tuple, Any] = {}
        self._cached = 0

    # -- public API -------------------------------------------------------------------------------
    def accumulator(self) -> "BlockSum":
        """A running sum of block contributions: ``add(block, offset)`` for each block of one batch
        of rows, then ``result()`` -> ``[N, dim]``. The kind's working buffer (sparse: ``[N, 2 dim]``,
        rademacher: ``[dim, N]``) is allocated once and folded into the output once, not per block:
        with a hundred small LoRA blocks per batch the per-block buffer and fold cost more than
        the projection itself (docs/performance.md)."""
        return BlockSum(self)

    def project_block(self, block: torch.Tensor, offset: int) -> torch.Tensor:
        """``[N, p]`` coordinates ``offset..offset+p`` -> their ``[N, dim]`` float32 contribution."""
        acc = self.accumulator()
        acc.add(block, offset)
        return acc.result()

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, P]`` -> ``[N, dim]``: the whole vector as one block."""
        if x.dim() != 2 or x.shape[1] != self.total_params:
            raise ValueError(f"project expects [N, {self.total_params}], got {tuple(x.shape)}")
        return self.project_block(x, 0)

    def block_matrix(self, offset: int, p: int) -> torch.Tensor:
        """``Pi[:, offset:offset+p]`` as a dense ``[dim, p]`` float32 tensor (for inspection and tests)."""
        eye = torch.eye(p, dtype=torch.float32, device=self.device)
        return self.project_block(eye, offset).T.contiguous()

    def spec(self) -> dict:
        """Everything that determines Pi; record it in the datastore manifest."""
        return {"kind": self.kind, "seed": self.seed, "dim": self.dim,
                "total_params": self.total_params, "hash": HASH_VERSION}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()})"

    # -- for subclasses ---------------------------------------------------------------------------
    @property
    @abstractmethod
    def _scale(self) -> float:
        """Factor applied to the accumulated output."""

    def _new_state(self, n: int, device) -> torch.Tensor:
        """The kind's zeroed working buffer for ``n`` rows (default: the output itself)."""
        return torch.zeros(n, self.dim, dtype=torch.float32, device=device)

    @abstractmethod
    def _accumulate(self, state: torch.Tensor, block: torch.Tensor, offset: int) -> None:
        """Add the unscaled contribution of ``block`` (columns from ``offset``) into ``state``."""

    def _fold(self, state: torch.Tensor) -> torch.Tensor:
        """The working buffer as the unscaled ``[N, dim]`` output (default: itself)."""
        return state

    def _memo(self, key: tuple, make):
        """Return ``make()``, kept while the ``cache_bytes`` budget allows (a cache never changes results)."""
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        value = make()
        size = sum(t.numel() * t.element_size() for t in (value if isinstance(value, tuple) else (value,)))
        if self._cached + size <= self.cache_bytes:
            self._cache[key] = value
            self._cached += size
        return value


class RademacherProjector(Projector):
    """Dense +-1/sqrt(d) matrix (TRAK fast_jl equivalent), computed by the table method."""

    kind = "rademacher"
    #: hash words generated per chunk (d x words int64); ~1 MB keeps the chunk in L2 cache
    chunk_hash_bytes = 1 << 20
    #: bytes of the per-chunk sum table (256 sums per 8 columns per row of the batch)
    chunk_table_bytes = 2 << 20

    def __init__(self, total_params: int, dim: int, seed: int = 0, device=None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        super().__init__(total_params, dim, seed, device, cache_bytes)
        self._tables: dict[torch.device, torch.Tensor] = {}

    @property
    def _scale(self) -> float:
        return 1.0 / math.sqrt(self.dim)

    def _sign_table(self, device) -> torch.Tensor:
        """[256, 8]: entry (v, j) is +1 if bit j of byte v is set, else -1."""
        if device not in self._tables:
            bits = (torch.arange(256)[:, None] >> torch.arange(8)[None, :]) & 1
            self._tables[device] = (bits * 2 - 1).to(device=device, dtype=torch.float32)
        return self._tables[device]

    def _word_bytes(self, w0: int, w1: int, device) -> torch.Tensor:
        """``[dim, 8 * (w1 - w0)]`` uint8: byte k of hash word (r, w) holds columns 64w+8k .. 64w+8k+7."""
        def make():
            # hash of counter (w << 26) | r; the stream state is linear in the counter
            rows = _arange_term(0, self.dim, 1, device).add_(self._key)
            h = _mix_(rows[:, None] + _arange_term(w0, w1, 1 << 26, device)[None, :])
            if sys.byteorder == "little":
                return h.view(torch.uint8).reshape(self.dim, 8 * (w1 - w0))
            parts = [(_srl(h, 8 * k) if k else h) & 255 for k in range(8)]
            return torch.stack(parts, -1).to(torch.uint8).reshape(self.dim, -1)
        return self._memo(("bytes", w0, w1, str(device)), make)

    def _new_state(self, n: int, device) -> torch.Tensor:
        return torch.zeros(self.dim, n, dtype=torch.float32, device=device)  # [d, N]: bags are output rows

    def _fold(self, state: torch.Tensor) -> torch.Tensor:
        return state.T

    def _accumulate(self, acc: torch.Tensor, block: torch.Tensor, offset: int) -> None:
        n, p = block.shape
        device = acc.device
        table = self._sign_table(device)
        first, last = offset // 64, (offset + p + 63) // 64          # words touched by the block
        step = max(1, min(self.chunk_hash_bytes // (8 * self.dim),
                          self.chunk_table_bytes // (8 * 256 * 4 * n)))
        for w0 in range(first, last, step):
            w1 = min(w0 + step, last)
            c0, c1 = 64 * w0, 64 * w1                                   # chunk columns, word aligned
            lo, hi = max(c0, offset), min(c1, offset + p)
            x = block[:, lo - offset:hi - offset].to(torch.float32)
            if lo > c0 or hi < c1:                                      # pad partial words with zeros
                x = F.pad(x, (lo - c0, c1 - hi))
            groups = 8 * (w1 - w0)
            # sums[v * groups + g, :] = sum_j sign(bit j of v) * x[:, 8g + j]
            sums = table @ x.view(n, groups, 8).permute(2, 1, 0).reshape(8, groups * n)
            group = torch.arange(groups, dtype=torch.int32, device=device)
            idx = self._word_bytes(w0, w1, device).to(torch.int32).mul_(groups).add_(group)
            acc += F.embedding_bag(idx, sums.view(256 * groups, n), mode="sum")


class SparseProjector(Projector):
    """Sparse JL: each coordinate goes to ``nnz`` distinct buckets with random signs (CountSketch at 1)."""

    kind = "sparse"
    options = ("cache_bytes", "nnz")
    #: (coordinate, k) pairs hashed per chunk
    chunk_pairs = 1 << 20

    def __init__(self, total_params: int, dim: int, seed: int = 0, device=None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, nnz: int = 1):
        super().__init__(total_params, dim, seed, device, cache_bytes)
        self.nnz = _check_int("nnz", nnz, 1, min(MAX_NNZ, dim))

    @property
    def _scale(self) -> float:
        return 1.0 / math.sqrt(self.nnz)

    def spec(self) -> dict:
        return {**super().spec(), "nnz": self.nnz}

    def _buckets(self, j0: int, j1: int, device) -> torch.Tensor:
        """``[nnz, j1 - j0]`` int64 targets of coordinates j0..j1 in a ``[2 * dim]`` buffer:
        bucket ``b`` with sign +1 is ``b``, with sign -1 is ``dim + b`` (so no multiply by the signs)."""
        def make():
            # hash of counter (j << 8) | k; the stream state is linear in the counter
            state = (_arange_term(j0, j1, 1 << 8, device)[:, None]
                     + _arange_term(0, self.nnz, 1, device).add_(self._key)[None, :])
            h = _mix_(state)                                            # [j1 - j0, nnz]
            k = torch.arange(self.nnz, dtype=torch.int64, device=device)
            lo = (k * self.dim) // self.nnz                             # slice k is [lo_k, lo_{k+1})
            width = ((k + 1) * self.dim) // self.nnz - lo
            # bucket = lo_k + floor(u * width_k) with u = (top 32 bits of h) / 2^32 in [0, 1);
            # the sign is bit 0 of h (set: +1)
            bucket = _srl(h, 32).mul_(width).add_(lo << 32) >> 32
            bucket += (1 - (h & 1)) * self.dim
            return bucket.T.contiguous()            # int64: index_add_ is much slower with int32
        return self._memo(("buckets", j0, j1, str(device)), make)

    def _new_state(self, n: int, device) -> torch.Tensor:
        return torch.zeros(n, 2 * self.dim, dtype=torch.float32, device=device)  # [positive | negative]

    def _fold(self, state: torch.Tensor) -> torch.Tensor:
        return state[:, :self.dim] - state[:, self.dim:]

    def _accumulate(self, acc: torch.Tensor, block: torch.Tensor, offset: int) -> None:
        n, p = block.shape
        step = max(1, self.chunk_pairs // self.nnz)
        for j0 in range(offset, offset + p, step):
            j1 = min(j0 + step, offset + p)
            x = block[:, j0 - offset:j1 - offset].to(torch.float32)
            for bucket in self._buckets(j0, j1, acc.device):               # one pass per k < nnz
                acc.index_add_(1, bucket, x)


class IdentityProjector(Projector):
    """No projection (exact features; small models and tests only): ``dim`` must equal
    ``total_params`` (P), and a block's contribution is the block itself placed at its offset."""

    kind = "identity"

    def __init__(self, total_params: int, dim: int, seed: int = 0, device=None,
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        if dim != total_params:
            raise UserError(f"projection 'identity' keeps all P={total_params} coordinates: "
                            f"set dims to [{total_params}] (or use another projector)")
        super().__init__(total_params, total_params, seed, device, cache_bytes)

    @property
    def _scale(self) -> float:
        return 1.0

    def _accumulate(self, state: torch.Tensor, block: torch.Tensor, offset: int) -> None:
        state[:, offset:offset + block.shape[1]] += block.to(torch.float32)


class BlockSum:
    """Sum of the contributions of a batch's coordinate blocks (:meth:`Projector.accumulator`)."""

    def __init__(self, projector: Projector):
        self.projector = projector
        self.state: torch.Tensor | None = None
        self.n: int | None = None

    def add(self, block: torch.Tensor, offset: int) -> None:
        """Add ``block`` [N, p], the coordinates ``offset..offset+p`` of every row."""
        proj = self.projector
        if block.dim() != 2:
            raise ValueError(f"a projected block must be [N, p], got shape {tuple(block.shape)}")
        n, p = block.shape
        if offset < 0 or offset + p > proj.total_params:
            raise ValueError(f"block [{offset}, {offset + p}) is outside [0, {proj.total_params})")
        if self.n is not None and n != self.n:
            raise ValueError(f"block has {n} rows, earlier blocks of this sum had {self.n}")
        device = proj.device or block.device
        if self.state is None:
            self.n, self.state = n, proj._new_state(n, device)
        if n and p:
            proj._accumulate(self.state, block.to(device), offset)

    def result(self) -> torch.Tensor:
        """The ``[N, dim]`` float32 projection of the blocks added (zeros for no block)."""
        if self.state is None:
            raise ValueError("no block was added")
        return self.projector._fold(self.state).mul(self.projector._scale)


PROJECTORS: dict[str, type[Projector]] = {
    cls.kind: cls for cls in (RademacherProjector, SparseProjector, IdentityProjector)}


def make_projector(kind: str, total_params: int, dim: int, seed: int = 0, device=None, **kw) -> Projector:
    """Build the projector ``kind`` (one of :data:`PROJECTORS`).

    ``kw`` are the kind's options: ``nnz`` (sparse) and ``cache_bytes`` (both; how many bytes of generated
    hashes to keep for blocks seen again, which changes speed only). ``device`` is where the projection is
    computed and returned; None means the input's device.
    """
    cls = PROJECTORS.get(kind)
    if cls is None:
        raise UserError(f"projection: unknown kind {kind!r}; valid kinds: {', '.join(sorted(PROJECTORS))}")
    unknown = sorted(set(kw) - set(cls.options))
    if unknown:
        raise UserError(f"projection: {kind} does not take {', '.join(unknown)}; "
                        f"its options: {', '.join(cls.options)}")
    return cls(total_params, dim, seed, device, **kw)


def projector_from_spec(spec: dict, device=None, **kw) -> Projector:
    """Rebuild the projector a manifest recorded with :meth:`Projector.spec` (``kw``: ``cache_bytes``)."""
    spec = dict(spec)
    version = spec.pop("hash", HASH_VERSION)
    if version != HASH_VERSION:
        raise UserError(f"projection: the store was projected with hash {version!r}; this version of "
                        f"less-select implements {HASH_VERSION!r} only")
    try:
        kind, total = spec.pop("kind"), spec.pop("total_params")
        dim, seed = spec.pop("dim"), spec.pop("seed")
    except KeyError as e:
        raise UserError(f"projection: spec is missing {e.args[0]!r}") from None
    return make_projector(kind, total, dim, seed, device, **spec, **kw)
