"""Benchmark of influence scoring and the whole ``select`` stage at scale (GitHub issue 14, items 3, 6).

Sections (each prints a table and writes ``benchmarks/results/<section>.json``):

  score    A synthetic pool store (default 250,000 x 8192 float16 rows = 4.1 GB, 27 subtasks, chunks
           of 4096 rows) scored with a cold page cache by the implementation before issue 14 (kept
           below as ``previous_scores``) and by ``less_select.scoring.compute_scores``, interleaved
           A B A B in fresh processes; seconds, GB/s of store read, peak RSS, and whether the two
           score matrices are bit-identical. A third run in each round reads the store with the
           same reader and no arithmetic ("read-only"): the disk's rate, which no scorer can beat
           with a cold cache, and the current scorer's share of it.
  select   The whole select stage (``run_select``: scoring, ranking, scores.csv, the selection JSONL
           in the input format, selection.json) on a synthetic 1M-row store with matching
           1M-example pool JSONL files, in fresh processes; seconds and peak RSS, with the pool read
           as before issue 14 (every example loaded; ``previous_pool_examples``) and streamed
           (``data/pool_rows.py``), interleaved.

Cold cache: before every run each chunk file is evicted with posix_fadvise(POSIX_FADV_DONTNEED)
(clean pages of those files only, so other processes keep their cache); ``fincore`` (util-linux),
when installed, confirms how many bytes stayed resident. ``--drop-caches`` drops the whole page
cache instead (root only; it also evicts everyone else's cache).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, loadavg, machine_info, peak_rss_mb, print_table, write_result  # noqa: E402

SECTIONS = ("score", "select")
# The score section's runs, interleaved: the implementation before issue 14, the current one, and the
# store read alone (the same reader, no arithmetic): the disk's ceiling for any scorer on this machine.
IMPLS = ("previous", "current", "read-only")
CKPT = "checkpoint-1"


# ------------------------------------------------------------------------------- previous scoring

def previous_scores(pool_path: str, targets_path: str, out_file: str) -> np.ndarray:
    """``compute_scores``' loop as it was before issue 14, kept to measure against: every chunk of
    every checkpoint converted to a float32 copy, renormalized with two more whole-chunk
    temporaries, one matmul per chunk and checkpoint."""
    from less_select.datastore.store import Datastore
    from less_select.scoring import check_compatible, subtask_means, unit_rows
    pool, targets = Datastore(pool_path), Datastore(targets_path)
    dim = pool.dims[0]
    check_compatible(pool, targets, dim)
    weights = [float(c["weight"]) for c in pool.checkpoints]
    means, subtasks = {}, []
    for c in pool.checkpoints:
        means[c["name"]], subtasks = subtask_means(targets, c["name"], dim)
    result = np.lib.format.open_memmap(out_file, mode="w+", dtype=np.float32, shape=(pool.n_rows, len(subtasks)))
    streams = [pool.iter_blocks(c["name"], dim) for c in pool.checkpoints]
    for blocks in zip(*streams):
        start = blocks[0][0]
        acc = np.zeros((blocks[0][1].shape[0], len(subtasks)), np.float32)
        for (_, block), c, w in zip(blocks, pool.checkpoints, weights):
            acc += w * (unit_rows(block) @ means[c["name"]].T)
        result[start:start + acc.shape[0]] = acc
    result.flush()
    return result


# ------------------------------------------------------------------------------- synthetic stores

def unit_block(rows: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((rows, dim), dtype=np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    return base.astype(np.float16)


def write_store(path: Path, n: int, dim: int, chunk: int, index_lines, *, kind: str, seed: int,
                manifest_extra: dict | None = None, stage_settings: dict | None = None) -> Path:
    """A finished store in the real on-disk format. Chunks are one random block of unit rows rolled
    by a per-chunk amount (the content does not change the cost; the scores differ per row)."""
    from less_select.datastore import store as ds
    path.mkdir(parents=True, exist_ok=True)
    base = unit_block(chunk, dim, seed)
    for c in range(ds.n_chunks(n, chunk)):
        lo, hi = c * chunk, min((c + 1) * chunk, n)
        ds.write_chunk(path, CKPT, dim, c, np.roll(base, 7 * c + 1, axis=1)[:hi - lo])
    spec = {"kind": "sparse", "seed": 0, "dim": dim, "total_params": 2498560, "hash": "splitmix64-v1", "nnz": 1}
    mf = {"format_version": ds.FORMAT_VERSION, "gradient_type": "adam" if kind == "pool" else "sgd",
          "kind": kind, "dtype": "float16", "normalized": True,
          "checkpoints": [{"name": CKPT, "path": "x", "step": 1, "mean_lr": 1.0, "weight": 1.0,
                           "adapter_sha256": "0"}],
          "projectors": [spec], "chunk_size": chunk, "n_rows": n, **(manifest_extra or {})}
    with open(path / ds.INDEX, "w", encoding="utf-8") as fh:
        for line in index_lines:
            fh.write(line)
    (path / ds.SKIPPED).touch()
    (path / ds.MANIFEST).write_text(json.dumps(mf))
    (path / "stage.json").write_text(json.dumps({"stage": "datastore", "settings": stage_settings or {"config": {}}}))
    return path


def chunk_files(store: Path) -> list[Path]:
    return sorted((store / CKPT).rglob("chunk-*.npy"))


def evict(files: list[Path], drop_caches: bool) -> int | None:
    """Cold page cache for ``files``; returns the bytes still resident (None when unknown)."""
    if drop_caches:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    else:
        for f in files:
            fd = os.open(f, os.O_RDONLY)
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
    if not shutil.which("fincore"):
        return None
    res = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "-o", "RES", *map(str, files)],
                         capture_output=True, text=True)
    return sum(int(x) for x in res.stdout.split()) if res.returncode == 0 else None


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": values}


# ----------------------------------------------------------------------------------- score section

def _child_score(impl: str, pool: str, targets: str, out_file: str) -> None:
    t0 = time.perf_counter()
    if impl == "previous":
        previous_scores(pool, targets, out_file)
    elif impl == "read-only":
        from less_select.datastore.store import Datastore
        store = Datastore(pool)
        for _ in store.read_ahead([c["name"] for c in store.checkpoints], store.dims[0]):
            pass
    else:
        from less_select.scoring import compute_scores
        compute_scores(pool, targets, out_file=out_file)
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb()}))


def _run_child(args: list[str], env: dict | None = None) -> dict:
    res = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    if res.returncode != 0:
        raise SystemExit(f"child {args[:2]} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def section_score(args) -> dict:
    root = Path(args.workdir) / "score_store"
    shutil.rmtree(root, ignore_errors=True)
    n, dim, k, m = args.rows, args.dim, 27, 81
    t0 = time.perf_counter()
    pool = write_store(root / "pool", n, dim, args.chunk, (json.dumps({"row": r}) + "\n" for r in range(n)),
                       kind="pool", seed=0)
    targets = write_store(root / "targets", m, dim, args.chunk,
                          (json.dumps({"row": r, "subtask": f"t{r % k:02d}"}) + "\n" for r in range(m)),
                          kind="targets", seed=1)
    t_write = time.perf_counter() - t0
    files = chunk_files(pool)
    gb = sum(f.stat().st_size for f in files) / 1e9
    runs = []
    try:
        for rep in range(args.repeats):
            for impl in IMPLS:
                resident = evict(files, args.drop_caches)
                la = loadavg()
                r = _run_child(["--_child-score", impl, str(pool), str(targets), str(root / f"{impl}.npy")])
                r.update(impl=impl, repeat=rep, gb_per_s=gb / r["seconds"], rows_per_s=n / r["seconds"],
                         resident_bytes_before=resident, loadavg=la)
                runs.append(r)
                print(f"  {impl:8s} repeat {rep}: {r['seconds']:.1f}s, {r['gb_per_s']:.3f} GB/s, "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB, load {la}", flush=True)
        a, b = np.load(root / "previous.npy"), np.load(root / "current.npy")
        identical = bool(a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {impl: {key: spread([r[key] for r in runs if r["impl"] == impl])
                      for key in ("seconds", "gb_per_s", "peak_rss_mb")} for impl in IMPLS}
    by = {impl: [r for r in runs if r["impl"] == impl] for impl in IMPLS}
    speedup = [p["seconds"] / c["seconds"] for p, c in zip(by["previous"], by["current"])]
    of_disk = [d["seconds"] / c["seconds"] for d, c in zip(by["read-only"], by["current"])]
    print_table(f"Scoring {n:,} x {dim} float16 rows ({gb:.2f} GB, cold page cache), {k} subtasks, "
                f"{args.repeats} interleaved repeats (median [min-max])",
                ["implementation", "seconds", "GB/s", "peak RSS MB"],
                [[impl, _mmm(s["seconds"]), _mmm(s["gb_per_s"]), _mmm(s["peak_rss_mb"])]
                 for impl, s in summary.items()])
    print(f"  speedup per pair: {', '.join(f'{x:.2f}x' for x in speedup)}; scores bit-identical: {identical}")
    print(f"  current scoring as a share of the store's read-only rate, per repeat: "
          f"{', '.join(f'{x:.0%}' for x in of_disk)}")
    return {"rows": n, "dim": dim, "subtasks": k, "chunk_rows": args.chunk, "store_gb": gb,
            "write_seconds": t_write, "cold_cache_method": "drop_caches" if args.drop_caches else
            "posix_fadvise DONTNEED per chunk file", "bit_identical": identical,
            "speedup_per_pair": speedup, "share_of_read_only_rate": of_disk, "summary": summary, "runs": runs}


def _mmm(s: dict) -> str:
    return f"{s['median']:.3g} [{s['min']:.3g}-{s['max']:.3g}]"


# ---------------------------------------------------------------------------------- select section

def write_pool(root: Path, n: int, n_files: int) -> list[Path]:
    """``n`` examples in the messages format, spread over ``n_files`` JSONL files."""
    files = [root / f"pool-{j}.jsonl" for j in range(n_files)]
    per = -(-n // n_files)
    words = "the of and to in is was for on as with by at from that this be are an or".split()
    for j, f in enumerate(files):
        with open(f, "w", encoding="utf-8") as fh:
            for i in range(j * per, min((j + 1) * per, n)):
                q = " ".join(words[(i * 7 + t) % len(words)] for t in range(12 + i % 9))
                a = " ".join(words[(i * 3 + t) % len(words)] for t in range(20 + i % 13))
                fh.write(json.dumps({"id": f"ex{i}", "dataset": f"source{i % 5}", "task": f"task{i % 11}",
                                     "messages": [{"role": "user", "content": q},
                                                  {"role": "assistant", "content": a}]}) + "\n")
    return files


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def build_select_inputs(root: Path, n: int, dim: int, chunk: int, n_files: int) -> tuple[Path, Path]:
    files = write_pool(root, n, n_files)
    per = -(-n // n_files)

    def index():
        for r in range(n):
            j = r // per
            yield json.dumps({"row": r, "id": f"ex{r}", "file": str(files[j]), "line": r - j * per + 1,
                              "subtask": None, "n_tokens": 64}) + "\n"
    data_files = [{"path": str(f), "sha256": _sha256(f)} for f in files]
    pool = write_store(root / "pool", n, dim, chunk, index(), kind="pool", seed=0,
                       manifest_extra={"data_files": data_files, "n_examples": n, "lenient": False,
                                       "max_examples": 0},
                       stage_settings={"config": {"lenient": False, "max_examples": 0}})
    k, m = 27, 81
    targets = write_store(root / "targets", m, dim, chunk,
                          (json.dumps({"row": r, "subtask": f"t{r % k:02d}"}) + "\n" for r in range(m)),
                          kind="targets", seed=1)
    return pool, targets


def previous_pool_examples(store):
    """``select_stage.pool_examples_for_store`` as it was before issue 14, kept to measure against:
    every pool example loaded as an ``Example``, rows looked up by (file, line)."""
    from less_select.data import load_examples
    mf = store.manifest
    examples, _ = load_examples([f["path"] for f in mf["data_files"]], lenient=mf["lenient"],
                                max_per_file=mf["max_examples"] or None)
    by_key = {(e.source, e.line): e for e in examples}
    rows = [by_key[(r["file"], r["line"])] for r in store.index()]
    with open(store.path / "skipped.jsonl", encoding="utf-8") as fh:
        unscored = [(by_key[(r["file"], r["line"])], r["reason"]) for r in map(json.loads, fh)]
    return rows, unscored, len(examples)


def _child_select(impl: str, pool: str, targets: str, out: str) -> None:
    import logging
    logging.disable(logging.WARNING)
    from less_select import select_stage
    from less_select.select_stage import SelectConfig, run_select
    if impl == "previous":
        select_stage.pool_examples_for_store = previous_pool_examples
    t0 = time.perf_counter()
    report = run_select(SelectConfig(datastore=pool, targets=targets, output_dir=out, percentage=0.05))
    print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
                      "n_selected": report["n_selected"], "n_pool": report["n_pool"]}))


def section_select(args) -> dict:
    root = Path(args.workdir) / "select_inputs"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    n, dim = args.select_rows, args.select_dim
    t0 = time.perf_counter()
    pool, targets = build_select_inputs(root, n, dim, args.chunk, args.pool_files)
    t_write = time.perf_counter() - t0
    files = chunk_files(pool)
    gb = sum(f.stat().st_size for f in files) / 1e9
    pool_mb = sum(f.stat().st_size for f in root.glob("pool-*.jsonl")) / 1e6
    runs = []
    impls = args.select_impls.split(",")
    try:
        for rep, impl in ((rep, impl) for rep in range(args.select_repeats) for impl in impls):
            out = root / f"selection-{rep}-{impl}"
            resident = evict(files, args.drop_caches)
            la = loadavg()
            r = _run_child(["--_child-select", impl, str(pool), str(targets), str(out)])
            sel = out / "top_p0.05.jsonl"
            with open(sel, "rb") as fh:
                n_lines = sum(1 for _ in fh)
            with open(out / "scores.csv", "rb") as fh:
                n_csv = sum(1 for _ in fh) - 1
            r.update(impl=impl, repeat=rep, loadavg=la, resident_bytes_before=resident, selection_lines=n_lines,
                     scores_csv_rows=n_csv, selection_mb=sel.stat().st_size / 1e6)
            runs.append(r)
            shutil.rmtree(out, ignore_errors=True)
            print(f"  {impl:8s} repeat {rep}: {r['seconds']:.1f}s, peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"{n_lines:,} selected, load {la}", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    summary = {impl: {key: spread([r[key] for r in runs if r["impl"] == impl]) for key in ("seconds", "peak_rss_mb")}
               for impl in impls}
    print_table(f"select stage (run_select) on {n:,} pool examples ({args.pool_files} JSONL files, "
                f"{pool_mb:.0f} MB) and a {n:,} x {dim} store ({gb:.2f} GB, cold page cache), "
                f"27 subtasks, top 5% (median [min-max] of {args.select_repeats}; previous = every pool "
                "example loaded, current = streamed pool rows)",
                ["pool reading", "seconds", "peak RSS MB"],
                [[impl, _mmm(s["seconds"]), _mmm(s["peak_rss_mb"])] for impl, s in summary.items()])
    return {"rows": n, "dim": dim, "pool_files": args.pool_files, "pool_mb": pool_mb, "store_gb": gb,
            "write_seconds": t_write, "summary": summary, "runs": runs}


# ------------------------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of " + ",".join(SECTIONS))
    ap.add_argument("--quick", action="store_true", help="toy sizes (a smoke test in seconds)")
    ap.add_argument("--rows", type=int, default=250_000, help="pool rows of the score section")
    ap.add_argument("--dim", type=int, default=8192, help="projection dimension of the score section")
    ap.add_argument("--chunk", type=int, default=4096, help="rows per chunk file (the builder's default)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved pairs of the score section")
    ap.add_argument("--select-rows", type=int, default=1_000_000, help="pool examples of the select section")
    ap.add_argument("--select-dim", type=int, default=1024, help="projection dimension of the select section")
    ap.add_argument("--select-repeats", type=int, default=3)
    ap.add_argument("--select-impls", default="previous,current",
                    help="pool reading of the select section: previous (every example loaded), current (streamed)")
    ap.add_argument("--pool-files", type=int, default=4, help="JSONL files the synthetic pool is split into")
    ap.add_argument("--drop-caches", action="store_true",
                    help="drop the whole page cache (root) instead of evicting the store's files")
    ap.add_argument("--tag", default="", help="suffix of the results file name (e.g. 200k)")
    ap.add_argument("--workdir", default=os.environ.get("LESS_BENCH_WORKDIR", "/tmp/less_bench"))
    ap.add_argument("--results-dir", default=str(RESULTS))
    ap.add_argument("--_child-score", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--_child-select", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child_score:
        _child_score(*args._child_score)
        return 0
    if args._child_select:
        _child_select(*args._child_select)
        return 0
    if args.quick:
        args.rows, args.dim, args.chunk, args.repeats = 5000, 256, 512, 2
        args.select_rows, args.select_dim, args.select_repeats = 20_000, 64, 1
    sections = [s for s in args.sections.split(",") if s]
    if set(sections) - set(SECTIONS):
        ap.error(f"unknown sections {sorted(set(sections) - set(SECTIONS))}")
    info = machine_info()
    print(f"machine: {info['platform']}, {info['cpus']} CPUs, load average {info['loadavg_at_start']}")
    for name in sections:
        t0 = time.perf_counter()
        print(f"\n== {name}", flush=True)
        payload = globals()[f"section_{name}"](args)
        payload = {"section": name, "quick": args.quick, "machine": info,
                   "wall_seconds": time.perf_counter() - t0,
                   "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
                   "loadavg_end": loadavg(), **payload}
        stem = f"select_{name}" + ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
        path = write_result(stem, payload, Path(args.results_dir))
        print(f"  -> {path} ({payload['wall_seconds']:.0f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
