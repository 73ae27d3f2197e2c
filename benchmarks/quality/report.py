"""Markdown tables of a quality benchmark result (``benchmarks/results/quality.json``).

    python -m benchmarks.quality.report [--json FILE] [--compact]

``--compact``: the README's table (the main methods, one row per suite and method); without it,
every method of every suite (docs/quality.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COMPACT = {"random": "random", "bm25": "BM25", "rds_plus": "RDS+", "less": "LESS (faithful)",
           "less_seq+balanced": "**LESS robust** (`preset: robust`)", "hybrid3": "hybrid3 (`fuse`: robust LESS + RDS+ + BM25)"}


def _loss(losses: dict, fmt: str, m: str) -> tuple[str, str]:
    l = losses.get(fmt, {}).get(m)
    if not l:
        return "-", "-"
    below = f"{l['tasks_below_random']:.0%}" if m != "random" else "-"
    return f"{l['macro_mean']:.3f} ± {l['macro_std']:.3f}", below


def table(doc: dict, methods: dict[str, str] | None = None) -> str:
    head = ("| suite | method | P@k, mismatched | min task | planted share | P@k, matched | loss, task format "
            "| tasks < random | loss, target format | tasks < random |")
    lines = [head, "|" + "---|" * 10]
    for suite, s in doc["summary"].items():
        losses = s.get("heldout_loss", {})
        for m in (methods or {k: k for k in s["mismatch"]}):
            a, b = s["mismatch"][m], s["match"][m]
            tl, tb = _loss(losses, "planted_format", m)
            ul, ub = _loss(losses, "target_format", m)
            name = (methods or {}).get(m, m)
            lines.append(f"| {suite} | {name} | {a['precision_mean']:.3f} ± {a['precision_std']:.3f} | "
                         f"{a['precision_min_task']:.2f} | {a['planted_share_mean']:.2f} | "
                         f"{b['precision_mean']:.3f} | {tl} | {tb} | {ul} | {ub} |")
        if "base" in losses.get("planted_format", {}):
            lines.append(f"| {suite} | no training | | | | | {losses['planted_format']['base']['macro_mean']:.3f} "
                         f"| | {losses['target_format']['base']['macro_mean']:.3f} | |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", default=str(Path(__file__).resolve().parents[1] / "results" / "quality.json"))
    ap.add_argument("--compact", action="store_true")
    a = ap.parse_args(argv)
    doc = json.loads(Path(a.json).read_text())
    print(table(doc, COMPACT if a.compact else None))


if __name__ == "__main__":
    main()
