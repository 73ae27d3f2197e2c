"""The comparison report: one row per method (metrics, selection and training cost), each method's
share of every pool source and ``task``, the overlap of the selections (Jaccard), as
``report/comparison.json`` and the tables of ``report/comparison.md``."""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path

import numpy as np

from ..configs import to_dict
from .config import BASE_ROW, FULL_ROW


def build_report(cfg, opts: dict, composition: dict, pool: list[str], n_budget: int,
                 eval_tasks: list[str], selections: dict, selection_dirs: dict, train_results: dict,
                 eval_results: dict) -> dict:
    """Everything a comparison measured, machine readable (``comparison.json``)."""
    rows = [_row(row, selections.get(row), train_results.get(row, {}), eval_results[row],
                 composition["n"]) for row in eval_results]
    keys = {m: selected_keys(d) for m, d in selection_dirs.items()}
    method_shares = {m: {"by_source": shares(sel["selected_by_source"], sel["n_selected"]),
                         "by_task": shares(sel["selected_by_task"], sel["n_selected"])}
                     for m, sel in selections.items() if m in selection_dirs}
    return {
        "task": cfg.task, "methods": list(cfg.methods), "model": cfg.model,
        "train_model": cfg.train_model or cfg.model, "pool_files": pool,
        "budget": {"percentage": cfg.percentage, "top_k": cfg.top_k, "n_select": n_budget},
        "pool": {**composition, "share_by_source": shares(composition["by_source"], composition["n"]),
                 "share_by_task": shares(composition["by_task"], composition["n"])},
        "eval_tasks": eval_tasks,
        "metric_columns": list(dict.fromkeys(c for r in rows for c in r["metrics"])),
        "rows": rows,
        "less_cost_breakdown": selections.get("less", {}).get("cost"),
        "selection_costs": {m: s["cost"] for m, s in selections.items()},
        "shares": method_shares,
        "jaccard": jaccard_matrix(keys) if keys else {},
        "selections": {m: {"dir": str(d), "file": selections[m]["selected_file"],
                           "n_selected": selections[m]["n_selected"],
                           "warnings": selections[m].get("warnings", []),
                           "noise_warning": selections[m].get("noise_warning")}
                       for m, d in selection_dirs.items()},
        "training": train_results,
        "evaluation": eval_results,
        "stage_options": opts,
        "config": to_dict(cfg),
        "environment": environment(),
    }


def _row(row: str, sel: dict | None, tr: dict, ev: dict, n_pool: int) -> dict:
    metrics = {metric_column(t, r["metric"]): r["value"] for t, r in ev["tasks"].items()}
    if row == BASE_ROW:
        n, sel_s = 0, None
    elif row == FULL_ROW:
        n, sel_s = n_pool, 0.0
    else:
        n, sel_s = sel["n_selected"], sel["cost"]["seconds"]
    return {"method": row, "n_selected": n, "selection_seconds": sel_s,
            "train_seconds": tr.get("seconds"), "train_examples": tr.get("examples"),
            "train_steps": tr.get("steps"), "train_loss": tr.get("train_loss"),
            "eval_seconds": ev["seconds"], "metrics": metrics}


# --------------------------------------------------------------------------- measures

def selected_keys(selection_dir: str | Path) -> list[tuple[str, int]]:
    """(resolved file, line) of each selected example, from the selection's ``scores.csv``."""
    path = Path(selection_dir) / "scores.csv"
    with open(path, newline="", encoding="utf-8") as fh:
        return [(str(Path(r["file"]).resolve()), int(r["line"])) for r in csv.DictReader(fh)
                if r["selected"] == "1"]


def jaccard_matrix(sets: dict[str, list]) -> dict[str, dict[str, float]]:
    """Jaccard |A n B| / |A u B| between every pair of selections (1 on the diagonal)."""
    names = list(sets)
    universe = {k: i for i, k in enumerate(sorted({k for s in sets.values() for k in s}))}
    member = np.zeros((len(names), len(universe)), dtype=np.float64)
    for r, name in enumerate(names):
        member[r, [universe[k] for k in set(sets[name])]] = 1.0
    inter = member @ member.T
    size = member.sum(axis=1)
    union = size[:, None] + size[None, :] - inter
    jac = np.divide(inter, union, out=np.ones_like(inter), where=union > 0)
    return {a: {b: float(jac[i, j]) for j, b in enumerate(names)} for i, a in enumerate(names)}


def shares(counts: dict[str, int], total: int) -> dict[str, float]:
    return {k: v / total for k, v in counts.items()} if total else {}


def headline(result: dict) -> tuple[str, float | None]:
    """(metric name, value) a result is summarized by: the LESS headline, else the first metric's
    macro average (the loss for loss: tasks)."""
    if result.get("headline"):
        h = result["headline"]
        return h["metric"], h["value"]
    metric = result["metrics"][0]
    return metric, (result.get("average") or {}).get(metric)


def metric_column(task: str, metric: str) -> str:
    """Column name: ``loss:bbh`` (``loss:<file stem>`` for a file), else ``<task> <metric>``."""
    if task.startswith("loss:") and metric == "loss":
        from ..data.targets import task_name
        return "loss:" + task_name(task[5:])
    return f"{task} {metric}"


def environment() -> dict:
    import torch
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


# --------------------------------------------------------------------------- markdown

def render_markdown(report: dict, max_task_rows: int = 15) -> str:
    """``comparison.md``: the main table, then shares, overlap and warnings."""
    parts = [main_table(report)]
    if report["shares"]:
        parts += _share_tables(report, max_task_rows)
    warned = {m: s["warnings"] for m, s in report["selections"].items() if s.get("warnings")}
    if warned:  # the selection diagnostics (diagnostics.py): dominance by a source, subtask, length
        parts += ["", "## Selection warnings", ""]
        parts += [f"- **{m}**: {w}" for m, ws in warned.items() for w in ws]
    return "\n".join(parts) + "\n"


def main_table(report: dict) -> str:
    """The title, the setting, the table of rows and its notes (what the CLI prints)."""
    cols = report["metric_columns"]
    head = ["method", "n selected", "selection s", "n trained", "train steps", "train s"] + cols
    body = [[r["method"], str(r["n_selected"]), _fmt(r["selection_seconds"], 2),
             _fmt(r["train_examples"]), _fmt(r["train_steps"]), _fmt(r["train_seconds"], 2)]
            + [_fmt(r["metrics"].get(c)) for c in cols] for r in report["rows"]]
    env, b = report["environment"], report["budget"]
    budget = f"top {b['top_k']}" if b["top_k"] > 0 else f"{b['percentage']:g} of the pool"
    parts = [f"# Selection methods compared on {report['task']}",
             f"Pool: {report['pool']['n']} examples from {len(report['pool_files'])} file(s); budget "
             f"{budget} = {b['n_select']} examples; selection model `{report['model']}`, trained "
             f"model `{report['train_model']}`; {env['device']}, {env['threads']} torch thread(s) of "
             f"{env['cpu_count']} CPU(s), torch {env['torch']}.",
             "", _md_table(head, body), "",
             "Selection s: wall seconds of the method's selection (LESS: warmup + datastore + targets "
             "+ select; `base` is the untrained model, `full` the whole pool). n trained: selected "
             "examples that keep a completion token after truncation (the others are dropped by "
             "training). Loss columns are the macro-averaged target-set loss (lower is better)."]
    less = report.get("less_cost_breakdown")
    if less:
        parts.append("\nLESS cost: " + " + ".join(f"{k} {v:.1f} s" for k, v in
                                                 less["breakdown"].items())
                     + f" = {less['seconds']:.1f} s.")
    joint = [m for m, c in report["selection_costs"].items() if c.get("includes_training")]
    if joint:
        parts.append(f"{', '.join(joint)}: selects while training; its selection s includes the "
                     "training, n selected counts the examples drawn over all steps.")
    reused = [c.get("reused") for c in report["selection_costs"].values()]
    reused = [any(r.values()) if isinstance(r, dict) else r for r in reused]
    if any(reused) or any(t.get("reused") for t in report["training"].values()):
        parts.append("Some stages were reused from an earlier run; their seconds are the ones "
                     "measured when they ran.")
    return "\n".join(parts)


def _share_tables(report: dict, max_task_rows: int) -> list[str]:
    methods, pool = list(report["shares"]), report["pool"]
    sources = list(pool["share_by_source"])
    s_rows = [["pool"] + [_fmt(pool["share_by_source"].get(s, 0.0), 3) for s in sources]]
    s_rows += [[m] + [_fmt(report["shares"][m]["by_source"].get(s, 0.0), 3) for s in sources]
               for m in methods]
    tasks = list(pool["share_by_task"])
    shown, rest = tasks[:max_task_rows], tasks[max_task_rows:]
    t_rows = [[t, _fmt(pool["share_by_task"][t], 3)]
              + [_fmt(report["shares"][m]["by_task"].get(t, 0.0), 3) for m in methods]
              for t in shown]
    if rest:
        t_rows.append([f"({len(rest)} other tasks)", _fmt(sum(pool["share_by_task"][t] for t in rest), 3)]
                      + [_fmt(sum(report["shares"][m]["by_task"].get(t, 0.0) for t in rest), 3)
                         for m in methods])
    jac = report["jaccard"]
    return ["", "## Share of each pool source in the selection", "",
            _md_table(["method"] + sources, s_rows),
            "", "## Share of each pool `task` in the selection", "",
            _md_table(["task", "pool"] + methods, t_rows),
            "", "## Overlap between selections (Jaccard)", "",
            _md_table([""] + methods, [[a] + [_fmt(jac[a][b], 3) for b in methods] for a in methods])]


def format_summary(config, report: dict) -> str:
    """What ``less-select compare`` prints: the main table and where the report was written."""
    report_dir = Path(report["config"]["output_dir"]) / "report"
    return f"{main_table(report).rstrip()}\n\nwrote {report_dir / 'comparison.md'} and comparison.json"


def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
