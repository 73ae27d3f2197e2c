"""Render benchmarks/results/*.json as the markdown tables of docs/performance.md.

    python benchmarks/report.py [--results-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _f(v, digits=3):
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 0.01:
            return f"{v:.{digits}g}"
        return f"{v:.2e}"
    return str(v)


def table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_f(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render(results: Path) -> str:
    out = []
    load = lambda n: json.loads((results / f"{n}.json").read_text()) if (results / f"{n}.json").is_file() else None  # noqa: E731
    tp = load("throughput")
    if tp:
        out.append(f"**Throughput** (d={tp['dim']}, sparse projector, same batches for both, "
                   f"{len(tp['runs'][0]['ratios'])} interleaved repeats; original: dense projection timed on "
                   f"{tp['runs'][0]['original']['dense_projection_rows_measured']} of {tp['dim']} rows and scaled)\n")
        out.append(table(["model", "P", "examples / tokens", "plain fwd+bwd ex/s", "datastore ex/s",
                          "datastore / plain, median [min-max]", "padding (greedy)", "original ex/s",
                          "datastore / original", "load avg"],
                         [[f"{r['size']} ({r['model_parameters'] / 1e6:.1f}M)", f"{r['total_params']:,}",
                           f"{r['examples']} / {r['tokens']}", r["plain_examples_per_s"],
                           r["datastore_examples_per_s"],
                           f"{r['ratio_median']:.3f} [{r['ratio_min']:.3f}-{r['ratio_max']:.3f}]",
                           f"{100 * r['padding']['padding_aware']['padding_over_real']:.0f}% "
                           f"({100 * r['padding']['greedy']['padding_over_real']:.0f}%)",
                           r["original"]["examples_per_s"], r["datastore_vs_original"],
                           f"{min(r['loadavg'])}-{max(r['loadavg'])}"] for r in tp["runs"]]))
    fid = load("fidelity")
    if fid:
        out.append(f"\n**Fidelity** ({fid['pool_examples']} pool examples vs {fid['target_examples']} BBH "
                   f"targets in {fid['subtasks']} subtasks; exact LESS score std {fid['exact_score_std']:.3g}, "
                   f"per-subtask influence std {fid['exact_influence_std']:.3g}; mean +- std over seeds)\n")
        out.append(table(["projector", "d", "seeds", "Spearman", "top-5% overlap", "cosine error (measured)",
                          "1/sqrt(d)", "influence error (measured)", "noise_std estimate", "vectors/s"],
                         [[s["projector"] + (f" nnz={s['nnz']}" if s["nnz"] else ""), s["dim"], s["seeds"],
                           f"{s['spearman_mean']:.3f} +- {s['spearman_std']:.3f}",
                           f"{s['top5_mean']:.2f} +- {s['top5_std']:.2f}", s["cosine_error_std"],
                           s["expected_cosine_error"], s["influence_error_std"], s["noise_std_estimate"],
                           s["projection_examples_per_s"]] for s in fid["summary"]]))
    sc = load("scoring")
    if sc:
        out.append(f"\n**Scoring** ({sc['rows']:,} x {sc['dim']} float16 rows, {sc['store_gb']:.1f} GB, "
                   f"{sc['subtasks']} subtasks, cold page cache)\n")
        out.append(table(["threads", "seconds", "rows/s", "GB/s", "peak RSS MB", "load avg"],
                         [[r["threads"], r["seconds"], r["rows_per_s"], r["gb_per_s"], r["peak_rss_mb"],
                           r["loadavg"]] for r in sc["runs"]]))
    sl = load("scaling")
    if sl:
        out.append(f"\n**Scaling** (end-to-end `run_datastore`, d={sl['dim']}, {sl['threads']} thread; linear fit "
                   f"{sl['fit_seconds_per_row']:.3f} s/row + {sl['fit_fixed_seconds']:.1f} s, R^2 {sl['fit_r2']:.3f})\n")
        out.append(table(["examples", "rows", "seconds", "rows/s", "peak RSS MB", "load avg"],
                         [[r["examples"], r["rows"], r["seconds"], r["rows_per_s"], r["peak_rss_mb"], r["loadavg"]]
                          for r in sl["runs"]]))
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--results-dir", default=str(Path(__file__).resolve().parent / "results"))
    print(render(Path(ap.parse_args().results_dir)))
