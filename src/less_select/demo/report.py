"""The demo's report: a console table, three figures and a ``summary.md`` whose sentences are computed
from the numbers (no hard-coded claims)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

ROLE_COLORS = {"relevant": "tab:green", "distractor": "tab:red", "other": "tab:gray"}
COLUMNS = ("method", "n_selected", "target_loss", "exact_match", "seconds")


def _num(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _fmt(key: str, value) -> str:
    if value is None:
        return "-"
    if key == "exact_match":
        v = _num(value)
        return "-" if math.isnan(v) else f"{100 * v:.1f}%"
    if key == "target_loss":
        v = _num(value)
        return "-" if math.isnan(v) else f"{v:.3f}"
    if key == "seconds":
        v = _num(value)
        return "-" if math.isnan(v) else f"{v:.1f}"
    return str(value)


def _table_cells(rows: Sequence[Mapping]) -> tuple[list[str], list[list[str]]]:
    extra = [k for r in rows for k in r if k not in COLUMNS]
    extra = list(dict.fromkeys(extra))  # keep order, drop duplicates
    header = list(COLUMNS) + extra
    return header, [[_fmt(k, r.get(k)) for k in header] for r in rows]


def format_table(rows: Sequence[Mapping]) -> str:
    """A fixed-width console table of the result rows (exact match as a percentage)."""
    header, cells = _table_cells(rows)
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    right = {"n_selected", "target_loss", "exact_match", "seconds"}

    def line(values):
        return "  ".join(v.rjust(w) if h in right else v.ljust(w)
                         for v, w, h in zip(values, widths, header)).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    return "\n".join(out)


def markdown_table(rows: Sequence[Mapping]) -> str:
    header, cells = _table_cells(rows)
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(out)


def family_shares(family_counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float]]:
    """{method: {family: share}} from {method: {family: count}} (shares sum to 1 per method)."""
    out = {}
    for method, counts in family_counts.items():
        total = sum(counts.values())
        out[method] = {f: (c / total if total else 0.0) for f, c in counts.items()}
    return out


def _role_of(family: str, roles: Mapping[str, str] | None) -> str:
    return (roles or {}).get(family, "other")


def _role_shares(family_counts, roles) -> dict[str, dict[str, float]]:
    out = {}
    for method, shares in family_shares(family_counts).items():
        acc = {"relevant": 0.0, "distractor": 0.0, "other": 0.0}
        for fam, s in shares.items():
            acc[_role_of(fam, roles)] += s
        out[method] = acc
    return out


# ----------------------------------------------------------------------------- sentences

def summary_sentences(rows: Sequence[Mapping], family_counts: Mapping[str, Mapping[str, int]] | None = None,
                      roles: Mapping[str, str] | None = None,
                      reference_methods: Sequence[str] = ("random", "full")) -> list[str]:
    """Plain statements derived from the numbers: the best method on each metric, how LESS compares
    with random and the full pool, and what share of each selection is skill-relevant."""
    out: list[str] = []
    valid = [r for r in rows if not math.isnan(_num(r.get("exact_match")))]
    by_method = {str(r["method"]): r for r in rows}
    if valid:
        best = max(valid, key=lambda r: (_num(r["exact_match"]), -_num(r.get("target_loss"))))
        ties = [r["method"] for r in valid if _num(r["exact_match"]) == _num(best["exact_match"])]
        if len(ties) > 1:
            out.append(f"Best exact match: {100 * _num(best['exact_match']):.1f}%, shared by "
                       f"{', '.join(map(str, ties))}.")
        else:
            others = sorted((_num(r["exact_match"]) for r in valid if r is not best), reverse=True)
            gap = f" ({100 * (_num(best['exact_match']) - others[0]):+.1f} points over the next " \
                  f"best)" if others else ""
            out.append(f"Best exact match: {best['method']} with "
                       f"{100 * _num(best['exact_match']):.1f}%{gap}.")
    losses = [r for r in rows if not math.isnan(_num(r.get("target_loss")))]
    if losses:
        low = min(losses, key=lambda r: _num(r["target_loss"]))
        out.append(f"Lowest target loss: {low['method']} ({_num(low['target_loss']):.3f}).")
    less = by_method.get("less")
    if less is not None:
        for ref in reference_methods:
            other = by_method.get(ref)
            sentence = _less_vs(less, other, ref) if other is not None else None
            if sentence:
                out.append(sentence)
    if family_counts and roles:
        rs = _role_shares(family_counts, roles)
        ranked = sorted(rs.items(), key=lambda kv: -kv[1]["relevant"])
        desc = "; ".join(f"{m} {100 * s['relevant']:.0f}% relevant / {100 * s['distractor']:.0f}% "
                         f"distractor" for m, s in ranked)
        out.append(f"Skill-relevant share of each selection: {desc}.")
    if valid and len(valid) >= 2:
        spread = max(_num(r["exact_match"]) for r in valid) - min(_num(r["exact_match"]) for r in valid)
        n_test = next((r.get("n_test") for r in rows if r.get("n_test")), None)
        if n_test:
            se = 100 * math.sqrt(0.25 / float(n_test))
            out.append(f"With {n_test} test examples one example is "
                       f"{100 / float(n_test):.2f} points of exact match; differences below about "
                       f"{2 * se:.0f} points (2 standard errors at 50%) may be noise.")
        elif spread < 0.02:
            out.append("All methods are within 2 points of exact match: treat the ranking as noise.")
    return out


def _less_vs(less: Mapping, other: Mapping, ref: str) -> str | None:
    """One sentence comparing LESS's row with a reference method's (None when nothing compares)."""
    dem = _num(less.get("exact_match")) - _num(other.get("exact_match"))
    dloss = _num(less.get("target_loss")) - _num(other.get("target_loss"))
    parts = []
    if not math.isnan(dem):
        parts.append(f"{100 * dem:+.1f} points of exact match")
    if not math.isnan(dloss):
        parts.append(f"{dloss:+.3f} target loss")
    if not parts:
        return None
    if not math.isnan(dem):
        verdict = ("better" if dem > 0 else "worse" if dem < 0 else "level") + " on exact match"
    else:
        verdict = ("better" if dloss < 0 else "worse" if dloss > 0 else "level") + " on target loss"
    size = ""
    ns, no = _num(less.get("n_selected")), _num(other.get("n_selected"))
    if not math.isnan(ns) and not math.isnan(no) and no > 0 and ns != no:
        size = f", training on {ns / no:.0%} as many examples"
    return f"LESS vs {ref}: {', '.join(parts)} ({verdict}{size})."


# ----------------------------------------------------------------------------- figures

def _plot_metrics(rows, path: Path) -> None:
    import matplotlib.pyplot as plt
    methods = [str(r["method"]) for r in rows]
    loss = [_num(r.get("target_loss")) for r in rows]
    em = [100 * _num(r.get("exact_match")) for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.4 * len(methods) + 4), 4))
    for ax, vals, title in ((axes[0], loss, "target test loss (lower is better)"),
                            (axes[1], em, "exact match % (higher is better)")):
        bars = ax.bar(methods, [0 if math.isnan(v) else v for v in vals],
                      color=["tab:blue" if m == "less" else "tab:gray" for m in methods])
        for b, v in zip(bars, vals):
            ax.annotate("-" if math.isnan(v) else f"{v:.2f}" if "loss" in title else f"{v:.1f}",
                        (b.get_x() + b.get_width() / 2, b.get_height()), ha="center",
                        va="bottom", fontsize=8)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_scores(scores, score_families, roles, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np
    scores = np.asarray(scores, dtype=float)
    fams = list(score_families)
    ok = np.isfinite(scores)
    fig, ax = plt.subplots(figsize=(7, 4))
    if ok.any():
        bins = np.linspace(scores[ok].min(), scores[ok].max() + 1e-12, 40)
        for role in ("other", "distractor", "relevant"):
            sel = np.array([_role_of(f, roles) == role for f in fams]) & ok
            if sel.any():
                ax.hist(scores[sel], bins=bins, alpha=0.6, color=ROLE_COLORS[role],
                        label=f"{role} ({int(sel.sum())})")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("LESS score")
    ax.set_ylabel("pool examples")
    ax.set_title("LESS scores of the pool by family role")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_family_share(family_counts, roles, path: Path) -> None:
    import matplotlib.pyplot as plt
    shares = family_shares(family_counts)
    methods = list(shares)
    order = {"relevant": 0, "distractor": 1, "other": 2}
    fams = sorted({f for s in shares.values() for f in s},
                  key=lambda f: (order[_role_of(f, roles)], f))
    cmaps = {"relevant": plt.get_cmap("Greens"), "distractor": plt.get_cmap("Reds"),
             "other": plt.get_cmap("Greys")}
    per_role = {r: [f for f in fams if _role_of(f, roles) == r] for r in order}
    fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(methods) + 4), 4.5))
    bottom = [0.0] * len(methods)
    for fam in fams:
        role = _role_of(fam, roles)
        group = per_role[role]
        shade = 0.45 + 0.45 * (group.index(fam) / max(1, len(group) - 1)) if len(group) > 1 else 0.7
        vals = [100 * shares[m].get(fam, 0.0) for m in methods]
        ax.bar(methods, vals, bottom=bottom, color=cmaps[role](shade), label=f"{fam} ({role})",
               edgecolor="white", linewidth=0.5)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_ylabel("% of selection")
    ax.set_title("Task families in each selection")
    ax.legend(fontsize=7, bbox_to_anchor=(1.01, 1), loc="upper left")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- report

def write_report(out_dir: str | Path, rows: Sequence[Mapping],
                 family_counts: Mapping[str, Mapping[str, int]],
                 less_scores: Sequence[float] | None = None,
                 score_families: Sequence[str] | None = None,
                 roles: Mapping[str, str] | None = None, *, title: str = "less-select demo",
                 notes: Sequence[str] = ()) -> dict[str, Path]:
    """Write ``metrics.png``, ``less_scores.png``, ``family_share.png`` and ``summary.md``.

    * ``rows``: one mapping per method with ``method, n_selected, target_loss, exact_match`` (a
      fraction in [0, 1]) and ``seconds``; extra keys become extra table columns (``n_test``, if
      present, is used to state the noise level).
    * ``family_counts``: {method: {family: count}} of each selection (the full pool included).
    * ``less_scores`` / ``score_families``: the LESS score and family of every pool example.
    * ``roles``: {family: "relevant" | "distractor" | "other"} (families not listed are "other").
    * ``notes``: extra lines (e.g. settings, timings) appended to the summary as they are.
    Returns the paths written.
    """
    import matplotlib
    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out / "metrics.png", "less_scores": out / "less_scores.png",
             "family_share": out / "family_share.png", "summary": out / "summary.md"}
    rows = list(rows)
    _plot_metrics(rows, paths["metrics"])
    if less_scores is not None and score_families is not None:
        if len(less_scores) != len(score_families):
            raise ValueError(f"{len(less_scores)} LESS scores but {len(score_families)} families")
        _plot_scores(less_scores, score_families, roles, paths["less_scores"])
    else:
        _plot_scores([], [], roles, paths["less_scores"])
    _plot_family_share(family_counts, roles, paths["family_share"])

    md = [f"# {title}", "", "## Results", "", markdown_table(rows), "",
          "exact_match: share of held-out target questions answered exactly; target_loss: mean "
          "completion cross-entropy on them; seconds: wall time "
          "reported for the method.", ""]
    md += ["## What the numbers say", ""] + [f"- {s}" for s in summary_sentences(
        rows, family_counts, roles)] + [""]
    md += _family_table(family_counts, roles)
    if less_scores is not None and score_families is not None:
        md += _scores_by_role(less_scores, score_families, roles)
    md += ["![metrics](metrics.png)", "", "![LESS scores](less_scores.png)", "",
           "![family shares](family_share.png)", ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    paths["summary"].write_text("\n".join(md), encoding="utf-8")
    return paths


def _family_table(family_counts: Mapping[str, Mapping[str, int]], roles) -> list[str]:
    """Markdown lines: each task family's share of each selection, relevant families first."""
    md = ["## Task families in each selection", ""]
    shares = family_shares(family_counts)
    fams = sorted({f for s in shares.values() for f in s},
                  key=lambda f: ({"relevant": 0, "distractor": 1}.get(_role_of(f, roles), 2), f))
    md.append("| family | role | " + " | ".join(shares) + " |")
    md.append("|---|---|" + "|".join("---" for _ in shares) + "|")
    for fam in fams:
        md.append(f"| {fam} | {_role_of(fam, roles)} | " + " | ".join(
            f"{100 * shares[m].get(fam, 0.0):.1f}%" for m in shares) + " |")
    return md + [""]


def _scores_by_role(less_scores: Sequence[float], score_families: Sequence[str], roles) -> list[str]:
    """Markdown lines: the mean LESS score of the relevant, distractor and other examples."""
    import numpy as np
    sc = np.asarray(less_scores, dtype=float)
    md = ["## LESS scores by role", "", "| role | examples | mean score |", "|---|---|---|"]
    for role in ("relevant", "distractor", "other"):
        sel = np.array([_role_of(f, roles) == role for f in score_families], dtype=bool)
        sel &= np.isfinite(sc)
        mean = f"{sc[sel].mean():.4f}" if sel.any() else "-"
        md.append(f"| {role} | {int(sel.sum())} | {mean} |")
    return md + [""]
