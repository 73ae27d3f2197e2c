"""Selection-quality benchmark on real data (docs/quality.md): does each method select what trains
the target, when the targets are written in another answer format than the pool's examples?

    python -m benchmarks.quality.run                 # full: 3 suites x 3 seeds (~70 min on 2 cores)
    python -m benchmarks.quality.run --quick         # 1 suite, 1 seed, small pool (< 10 min)

Prints a table and writes ``benchmarks/results/quality[_quick].json``. Needs the real data folder
(``--data-dir``, default ``../shared/data`` next to the repository). The base model is built once
into ``--cache`` (see base_model.py); every stage output is cached there too, so an interrupted run
resumes.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import pipeline as P
from .base_model import QUICK_RECIPE, RECIPE, build_base_model
from .suites import SUITES, SuiteSizes, build_suite

log = logging.getLogger("quality")
REPO = Path(__file__).resolve().parents[2]
PERCENTAGE = 0.05
# method -> (kind, options); kinds: less (loss_tokens, rule), baseline (name, rule), hybrid (parts, rule)
METHODS = {
    "random": ("baseline", "random", "max"),
    "bm25": ("baseline", "bm25", "max"),
    "dsir": ("baseline", "dsir", "max"),
    "rds": ("baseline", "rds", "max"),
    "rds_plus": ("baseline", "rds_plus", "max"),
    "bm25+balanced": ("baseline", "bm25", "balanced"),
    "rds_plus+balanced": ("baseline", "rds_plus", "balanced"),
    "less": ("less", "completion", "max"),
    "less+balanced": ("less", "completion", "balanced"),
    "less_seq": ("less", "sequence", "max"),
    "less_seq+balanced": ("less", "sequence", "balanced"),
    "less_prompt+balanced": ("less", "prompt", "balanced"),
    "hybrid": ("hybrid", ("less_seq", "rds_plus"), "balanced"),
    "hybrid_bm25": ("hybrid", ("less_seq", "bm25"), "balanced"),
    "hybrid3": ("hybrid", ("less_seq", "rds_plus", "bm25"), "balanced"),
}
TRAINED = ("random", "bm25", "rds_plus", "less", "less+balanced", "less_seq+balanced", "hybrid", "hybrid3")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def select_all(model: str, paths: dict, work: Path, scale: P.Scale, seed: int, targets_kind: str,
               tasks: list[str]) -> dict[str, Path]:
    """Every method's selection folder for one target format (``mismatch`` or ``match``)."""
    from less_select.data import load_examples
    ckpts = P.warmup(model, paths["pool"], work / "warmup", scale, seed)
    folders: dict[str, Path] = {}
    stores = {}
    for name, (kind, what, rule) in METHODS.items():
        out = work / targets_kind / name
        if kind == "less":
            if what not in stores:
                store = P.pool_store(model, paths["pool"], ckpts, work / f"store_{what}", scale, seed, what)
                stores[what] = (store, P.target_store(store, paths[f"targets_{targets_kind}"],
                                                      work / f"targets_{what}_{targets_kind}", scale))
            folders[name] = P.less_select(*stores[what], out, rule, PERCENTAGE)
        elif kind == "baseline":
            folders[name] = P.baseline_select(what, model, paths["pool"], paths[f"targets_{targets_kind}"],
                                              out, scale, seed, rule, PERCENTAGE)
    examples, _ = load_examples([paths["pool"]])
    by_id = {e.id: e for e in examples}
    pool_ids = [e.id for e in examples]
    for name, (kind, parts, rule) in METHODS.items():
        if kind == "hybrid":
            mats = [P.selection_matrix(folders[p], pool_ids) for p in parts]
            folders[name] = P.fused_select(mats, [1.0] * len(mats), by_id, tasks,
                                           work / targets_kind / name, rule, PERCENTAGE)
    return folders


def recovery(folder: Path, pool_ids: list[str], tasks: list[str], n_plant: int) -> dict:
    """Per-task precision@k of planted examples (k = planted per task) by each task's own column,
    and what the final selection holds (planted share, per-task and per-source shares)."""
    per_subtask, names, rows = P.selection_matrix(folder, pool_ids)
    planted_task = [r.split("/")[1] if r.startswith("planted/") else None for r in rows]
    prec = {}
    for task in tasks:
        col = per_subtask[:, names.index(task)] if task in names else per_subtask[:, 0]
        top = np.lexsort((np.arange(len(col)), -col))[:n_plant]
        prec[task] = float(np.mean([planted_task[i] == task for i in top]))
    report = json.loads((folder / "selection.json").read_text())
    sel = read_jsonl(next(folder.glob("top_*.jsonl")))
    sel_tasks = collections.Counter(r["id"].split("/")[1] for r in sel if r["id"].startswith("planted/"))
    by_dataset = collections.Counter(r.get("dataset") for r in sel)
    return {"precision_at_k": prec, "mean_precision_at_k": float(np.mean(list(prec.values()))),
            "planted_share_of_selection": sum(sel_tasks.values()) / len(sel),
            "selected_per_task": {t: sel_tasks.get(t, 0) for t in tasks},
            "selected_by_dataset": {k: v / len(sel) for k, v in by_dataset.most_common()},
            "n_selected": len(sel), "warnings": report.get("warnings", [])}


def run_suite_seed(name: str, model: str, data_dir: Path, cache: Path, sizes: SuiteSizes,
                   scale: P.Scale, seed: int, train: bool) -> dict:
    suite = build_suite(name, data_dir, sizes, seed=0)  # the pool is fixed; seeds vary the methods
    paths = suite.write(cache / "suites" / f"{name}_{sizes.n_background}_{sizes.n_plant}")
    work = cache / "runs" / f"{name}_{sizes.n_background}_{sizes.n_plant}" / f"seed{seed}"
    pool_ids = [r["id"] for r in read_jsonl(paths["pool"])]
    result: dict = {"suite": name, "seed": seed, "tasks": suite.tasks, "n_pool": len(pool_ids)}
    for kind in ("mismatch", "match"):
        t0 = time.perf_counter()
        folders = select_all(model, paths, work, scale, seed, kind, suite.tasks)
        result[kind] = {m: recovery(f, pool_ids, suite.tasks, sizes.n_plant) for m, f in folders.items()}
        result[f"{kind}_seconds"] = time.perf_counter() - t0
        if kind == "mismatch" and train:
            heldout = {"target_format": paths["heldout"], "planted_format": paths["heldout_planted_format"]}
            loss = {"base": P.heldout_loss(model, None, heldout, scale)}
            for m in TRAINED:
                loss[m] = P.train_and_eval(model, folders[m], work / "train" / m, heldout, scale, seed)
            result["heldout_loss"] = loss
    return result


def summarize(results: list[dict]) -> dict:
    """Mean and spread over seeds of each (suite, format, method) and the loss comparisons."""
    out: dict = {}
    for suite in sorted({r["suite"] for r in results}):
        rs = [r for r in results if r["suite"] == suite]
        tasks = rs[0]["tasks"]
        s: dict = {}
        for kind in ("mismatch", "match"):
            s[kind] = {}
            for m in METHODS:
                p = [r[kind][m]["mean_precision_at_k"] for r in rs]
                per_task = {t: float(np.mean([r[kind][m]["precision_at_k"][t] for r in rs])) for t in tasks}
                share = [r[kind][m]["planted_share_of_selection"] for r in rs]
                s[kind][m] = {"precision_mean": float(np.mean(p)), "precision_std": float(np.std(p)),
                              "precision_min_task": min(per_task.values()), "per_task": per_task,
                              "planted_share_mean": float(np.mean(share))}
        if all("heldout_loss" in r for r in rs):
            s["heldout_loss"] = loss_summary(rs, tasks)
        out[suite] = s
    return out


def loss_summary(rs: list[dict], tasks: list[str]) -> dict:
    out = {}
    for fmt in ("target_format", "planted_format"):
        rows = {}
        for m in ("base", *TRAINED):
            macro = [r["heldout_loss"][m][fmt]["macro"] for r in rs]
            per_task = {t: float(np.mean([r["heldout_loss"][m][fmt]["per_task"][t] for r in rs])) for t in tasks}
            rows[m] = {"macro_mean": float(np.mean(macro)), "macro_std": float(np.std(macro)), "per_task": per_task}
        for m in TRAINED:
            rows[m]["tasks_below_random"] = sum(rows[m]["per_task"][t] < rows["random"]["per_task"][t]
                                                for t in tasks) / len(tasks)
        out[fmt] = rows
    return out


def print_table(summary: dict) -> None:
    for suite, s in summary.items():
        print(f"\n## {suite}: mean precision@k of planted examples (min over tasks), planted share of top 5%")
        print("| method | mismatch P@k | min task | share | matched P@k | loss, task format | < random "
              "| loss, target format | < random |")
        print("|---|---|---|---|---|---|---|---|---|")
        losses = s.get("heldout_loss", {})
        for m in METHODS:
            a, b = s["mismatch"][m], s["match"][m]
            cells = []
            for fmt in ("planted_format", "target_format"):
                l = losses.get(fmt, {}).get(m)
                cells.append(f"{l['macro_mean']:.3f} ± {l['macro_std']:.3f}" if l else "-")
                cells.append(f"{l['tasks_below_random']:.0%}" if l and m != "random" else "-")
            print(f"| {m} | {a['precision_mean']:.3f} ± {a['precision_std']:.3f} | {a['precision_min_task']:.2f} "
                  f"| {a['planted_share_mean']:.2f} | {b['precision_mean']:.3f} | {' | '.join(cells)} |")
        if "base" in losses.get("planted_format", {}):
            print(f"| base (no training) | | | | | {losses['planted_format']['base']['macro_mean']:.3f} | "
                  f"| {losses['target_format']['base']['macro_mean']:.3f} | |")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 suite, 1 seed, 400 background examples")
    ap.add_argument("--suites", nargs="*", default=None, choices=SUITES)
    ap.add_argument("--seeds", nargs="*", type=int, default=None)
    ap.add_argument("--no-train", action="store_true", help="recovery metrics only (no held-out loss)")
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--cache", default=str(REPO / "benchmarks" / "quality" / "cache"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch
    torch.set_num_threads(a.threads)
    data_dir, cache = Path(a.data_dir), Path(a.cache)
    if not (data_dir / "train" / "processed").is_dir():
        raise SystemExit(f"{data_dir}: not a LESS data folder (train/processed, eval/); pass --data-dir")
    sizes = SuiteSizes(n_background=400, n_plant=10, n_heldout=10) if a.quick else \
        SuiteSizes(n_background=1000, n_plant=20, n_heldout=20)
    suites = a.suites or (["bbh"] if a.quick else list(SUITES))
    seeds = a.seeds or ([0] if a.quick else [0, 1, 2])
    scale = P.Scale()
    start = time.perf_counter()
    from less_select.errors import UserError
    try:
        model = str(build_base_model(data_dir, cache, QUICK_RECIPE if a.quick else RECIPE, threads=a.threads))
        results = []
        for suite in suites:
            for seed in seeds:
                log.info("suite %s seed %d", suite, seed)
                results.append(run_suite_seed(suite, model, data_dir, cache, sizes, scale, seed, not a.no_train))
    except UserError as exc:  # e.g. a cached run folder made with other settings: one line, not a traceback
        raise SystemExit(f"error: {exc}\n(cached runs are under {cache / 'runs'}; move them aside to "
                         "recompute)") from None
    summary = summarize(results)
    print_table(summary)
    base_info = json.loads((Path(model) / "pretrain.json").read_text())
    doc = {"benchmark": "quality", "quick": a.quick, "suites": suites, "seeds": seeds,
           "sizes": asdict(sizes), "scale": asdict(scale), "percentage": PERCENTAGE,
           "base_model": base_info, "seconds": time.perf_counter() - start,
           "machine": {"platform": platform.platform(), "cpus": __import__("os").cpu_count(),
                       "threads": a.threads},
           "summary": summary, "runs": results}
    out = Path(a.out) if a.out else REPO / "benchmarks" / "results" / f"quality{'_quick' if a.quick else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"\nwrote {out} ({doc['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
