"""Peak RSS of the datastore build against its memory budget (``--max-memory``, issue 14 item 4).

    python benchmarks/bench_memory.py                          # 30M model, budgets 1.5,2.5,4 GB + none
    python benchmarks/bench_memory.py --size 5m --budgets 0.8GB,1.2GB,2GB
    python benchmarks/bench_memory.py --quick                  # toy model, seconds

Each budget is one ``less-select datastore`` process on the same pool (N examples truncated to the
workload's sequence length); the table gives the token budget per batch the build derived from the
budget (its log line), the estimated peak, and the measured peak RSS of the process (wait4's
ru_maxrss), with the default 8192-token batches and no budget as the last row.
Results: ``benchmarks/results/memory.json``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bergson import _env, _run, prepare_inputs  # noqa: E402
from common import RESULTS, SIZES, loadavg, machine_info, print_table, setup_model, size_dir, \
    write_result  # noqa: E402

LOG_LINE = re.compile(r"--max-memory (\S+): (\d+) tokens per batch \(estimated peak ([0-9.]+) GiB\)")


def one_build(model_dir: Path, ckpt: Path, data: dict, seq_len: int, budget: str, work: Path,
              threads: int) -> dict:
    import shutil
    out = work / "out_memory"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(Path(sys.executable).parent / "less-select"), "--threads", str(threads), "datastore",
           "--model", str(model_dir), "--checkpoints", str(ckpt), "--data", str(data["pool"]),
           "--output-dir", str(out), "--max-seq-length", str(seq_len), "--dtype", "float32"]
    if budget:
        cmd += ["--max-memory", budget]
    log = work / "memory.log"
    r = _run(cmd, _env(threads, work / "hf_cache_memory"), log)
    shutil.rmtree(out, ignore_errors=True)
    m = LOG_LINE.search(log.read_text())
    r.update(budget=budget or "none", budget_gib=_gib(budget) if budget else None,
             tokens_per_batch=int(m.group(2)) if m else 8192,
             estimated_peak_gib=float(m.group(3)) if m else None, loadavg=loadavg())
    r["peak_rss_gib"] = r["peak_rss_mb"] / 1024
    r["within_budget"] = None if not budget else r["peak_rss_gib"] <= r["budget_gib"]
    return r


def _gib(text: str) -> float:
    from less_select.gradients.memory import parse_bytes
    return parse_bytes(text) / (1 << 30)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--size", default="30m", choices=sorted(SIZES))
    ap.add_argument("--budgets", default="1.5GB,2.5GB,4GB")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", default="/tmp/less_bench")
    ap.add_argument("--results-dir", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.budgets, args.examples = "quick", "0.9GB", 8
    wl = SIZES[args.size]
    work = size_dir(Path(args.workdir), args.size)
    model_dir, ckpt = setup_model(work, wl)
    data = prepare_inputs(work, model_dir, ckpt, args.examples, wl.seq_len)
    t0 = time.perf_counter()
    runs = []
    for budget in [b for b in args.budgets.split(",") if b] + [""]:
        r = one_build(model_dir, ckpt, data, wl.seq_len, budget, work, args.threads)
        runs.append(r)
        print(f"  budget {r['budget']}: {r['tokens_per_batch']} tokens/batch, peak RSS "
              f"{r['peak_rss_gib']:.2f} GiB, {r['seconds']:.0f} s", flush=True)
    print_table(f"Peak RSS against --max-memory ({args.size} model, {data['n']} examples, "
                f"{wl.seq_len}-token sequences, d=8192, fp32, {args.threads} thread(s))",
                ["budget", "tokens/batch", "estimated peak GiB", "measured peak GiB", "within budget",
                 "seconds", "load"],
                [[r["budget"], r["tokens_per_batch"], r["estimated_peak_gib"] or "-", r["peak_rss_gib"],
                  "-" if r["within_budget"] is None else ("yes" if r["within_budget"] else "NO"),
                  r["seconds"], r["loadavg"]] for r in runs])
    payload = {"section": "memory", "quick": args.quick, "size": args.size, "workload": wl.__dict__,
               "examples": data["n"], "tokens": data["tokens_total"], "machine": machine_info(),
               "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
               "wall_seconds": time.perf_counter() - t0, "runs": runs}
    path = write_result("memory_quick" if args.quick else "memory", payload, Path(args.results_dir))
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
