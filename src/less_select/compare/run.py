"""``less-select compare``: several selection methods on one pool and target at one budget, each
selection trained with the same settings and evaluated, and a report of metrics, costs, what each
method picked and how much the methods agree.

Layout of ``<output_dir>/``::

    pool/<file>.jsonl          the pool actually used, when ``max_examples`` caps the files
    less_run/                  the LESS pipeline run folder (warmup, datastore, targets, selected)
    selections/<method>/       each baseline's selection folder (top_p*.jsonl, scores.csv, selection.json)
    train/<method>/            the model trained on each selection (and on the whole pool: ``full``)
    eval/<method>/             evaluation results (``base``: the untrained model)
    costs.json                 measured seconds of every stage that ran (kept for reused stages)
    report/comparison.json     everything below, machine readable
    report/comparison.md       the tables

Every stage skips itself when its output is already there with the same settings, so rerunning the
same comparison only runs what is missing; the seconds of a reused stage are the ones measured when
it ran (``costs.json``).

Options are defined once: the nested sections (``warmup``, ``datastore``, ``targets``, ``select``,
``train``, ``eval``, ``baselines``; YAML/Python only) take the fields of the stage configs, and the
few flat flags (``train_epochs``, ``max_seq_length``, ...) fill those same fields; giving one both
ways is an error.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .configs import from_dict, non_negative, option, positive, to_dict, validate
from .errors import UserError
from .selection import BudgetConfig
from .stage_folder import stage_dir, stage_status, write_atomic

log = logging.getLogger(__name__)

DEFAULT_METHODS = ("less", "random", "bm25", "dsir", "rds", "rds_plus")
# LESS methods of compare -> the pipeline preset each runs with (presets.py); each gets its own run
LESS_METHODS = {"less": None, "less_robust": "robust"}
SECTIONS = ("warmup", "datastore", "targets", "select", "train", "eval", "baselines")
# Keys of a section that compare sets itself (from its own fields or the connecting paths).
RESERVED = {
    "warmup": ("model", "pool_files", "output_dir"),
    "datastore": ("model", "data", "checkpoints", "output_dir", "max_examples"),
    "targets": ("task", "data_dir", "datastore", "output_dir"),
    "select": ("percentage", "top_k", "datastore", "targets", "output_dir"),
    "train": ("model", "train_files", "output_dir"),
    "eval": ("model", "task", "adapter", "tokenizer", "data_dir", "output_dir"),
}
COSTS_FILE = "costs.json"
BASE_ROW, FULL_ROW = "base", "full"


@dataclass
class CompareConfig(BudgetConfig):
    """Run LESS and the baselines on one pool and target at the same budget, train on each selection
    with the same settings, evaluate, and write a report (report/comparison.md and .json)."""

    config: str = option("", help="YAML file of compare options (nested sections included); options "
                                  "given on the command line with a non-default value override it")
    model: str = option("", help="selection model (LESS warmup/gradients, RDS embeddings): hub id or "
                                 "local folder")
    train_model: str = option("", help="model trained on each selection (default: model; a different "
                                       "one is LESS-T)")
    data: list[str] = option(factory=list, help="pool files (JSONL/JSON/Parquet, optionally .gz)")
    task: str = option("", help="target: bbh, mmlu, tydiqa (LESS validation sets, need data_dir) or a "
                                "file of target examples")
    data_dir: str = option("", help="LESS data folder holding eval/ (for bbh, mmlu, tydiqa)")
    output_dir: str = option("", help="comparison folder (see the module docstring for its layout)")
    methods: list[str] = option(factory=lambda: list(DEFAULT_METHODS),
                                help="selection methods: less, less_robust (the robust preset, presets.py) and any of random, bm25, dsir, rds, "
                                     "rds_plus")
    include_full: bool = option(False, help="also train on the whole pool (row 'full')")
    include_base: bool = option(True, help="also evaluate the untrained train_model (row 'base')")
    max_examples: int = option(0, help="use only the first N examples of each pool file (0: all); the "
                                       "capped pool is written to <output_dir>/pool/",
                               check=non_negative)
    lenient: bool = option(False, help="skip (and count) malformed pool records")
    seed: int = option(42, help="seed of the warmup subset, the baselines and training (a section's "
                                "own seed wins)", check=non_negative)
    max_seq_length: int | None = option(None, help="pool/training truncation for warmup, datastore "
                                                   "and train (default: each stage's, 2048)",
                                        check=positive)
    target_max_seq_length: int | None = option(
        None, help="truncation of target examples for the target features and the target loss "
                   "(default: the datastore's for targets, 2048 for the loss)", check=positive)
    train_epochs: int | None = option(None, help="final training epochs (= train.epochs)",
                                      check=positive)
    train_max_steps: int | None = option(None, help="final training optimizer steps "
                                                    "(= train.max_steps)", check=positive)
    eval_tasks: list[str] = option(factory=list, help="evaluation tasks (default: loss:<task>, the "
                                                      "target-set loss); e.g. loss:bbh bbh")
    eval_bbh_max_per_task: int | None = option(None, help="BBH examples per task for the bbh "
                                                          "benchmark (= eval.bbh_max_per_task)",
                                               check=non_negative)
    eval_max_new_tokens: int | None = option(None, help="generation limit for benchmarks "
                                                        "(= eval.max_new_tokens)", check=positive)
    warmup: dict[str, Any] = option(factory=dict, cli=False, help="WarmupConfig options (YAML/Python)")
    datastore: dict[str, Any] = option(factory=dict, cli=False, help="DatastoreConfig options "
                                                                     "(YAML/Python)")
    targets: dict[str, Any] = option(factory=dict, cli=False, help="TargetsConfig options (YAML/Python)")
    select: dict[str, Any] = option(factory=dict, cli=False, help="SelectConfig options other than "
                                                                  "the budget (YAML/Python)")
    train: dict[str, Any] = option(factory=dict, cli=False, help="FinetuneConfig options, the same "
                                                                 "for every method (YAML/Python)")
    eval: dict[str, Any] = option(factory=dict, cli=False, help="EvalConfig options (YAML/Python)")
    baselines: dict[str, Any] = option(factory=dict, cli=False, help="per-method baseline options, "
                                                                     "e.g. {bm25: {k1: 1.2}}")


# --------------------------------------------------------------------------- config handling

def load_compare_config(config: CompareConfig | dict) -> CompareConfig:
    """A validated config; a ``config`` YAML file is the base and non-default fields override it."""
    if isinstance(config, dict):
        config = from_dict(CompareConfig, config, where="compare")
    validate(config)
    if config.config:
        from .pipeline import read_yaml
        path = Path(config.config)
        if not path.is_file():
            raise UserError(f"{path}: no such compare config")
        base = read_yaml(path) or {}
        if not isinstance(base, dict):
            raise UserError(f"{path}: a compare config must be a mapping")
        defaults = CompareConfig()
        for f in dataclasses.fields(CompareConfig):
            value = getattr(config, f.name)
            if f.name != "config" and value != getattr(defaults, f.name):
                base[f.name] = value
        base.pop("config", None)
        config = from_dict(CompareConfig, base, where=str(path))
    for key in ("model", "task", "output_dir"):
        if not getattr(config, key):
            raise UserError(f"compare: '{key}' is required")
    if not config.data:
        raise UserError("compare: 'data' (pool files) is required")
    for f in config.data:
        if not Path(f).is_file():
            raise UserError(f"{f}: pool file not found")
    _check_methods(config.methods)
    for name in SECTIONS:
        sec = getattr(config, name)
        if not isinstance(sec, dict):
            raise UserError(f"compare: section '{name}' must be a mapping, got {type(sec).__name__}")
        bad = sorted(set(sec) & set(RESERVED.get(name, ())))
        if bad:
            raise UserError(f"compare: {name}.{bad[0]} is set by compare itself; use compare's own "
                            f"options (model, train_model, data, task, data_dir, output_dir, "
                            f"percentage, top_k, max_examples)")
    unknown = sorted(set(config.baselines) - set(config.methods) - set(LESS_METHODS))
    if unknown:
        raise UserError(f"compare: baselines.{unknown[0]} is not one of the chosen methods "
                        f"{', '.join(config.methods)}")
    return config


def _check_methods(methods: list[str]) -> None:
    from .baselines import BASELINES
    valid = [*LESS_METHODS, *sorted(BASELINES)]
    if not methods:
        raise UserError("compare: choose at least one method")
    for m in methods:
        if m not in valid:
            raise UserError(f"compare: unknown method {m!r}; valid methods are {', '.join(valid)}")
        if m in (BASE_ROW, FULL_ROW):
            raise UserError(f"compare: {m!r} is a reserved row name")
    if len(set(methods)) != len(methods):
        raise UserError(f"compare: methods repeat: {methods}")


def _merge(section: str, own: dict, flat: dict[str, Any], defaults: dict[str, Any] | None = None
           ) -> dict:
    """A section's options plus the flat flags that map into it (both ways for one key: error)."""
    out = dict(defaults or {})
    out.update(own)
    for key, (flag, value) in flat.items():
        if value is None:
            continue
        if key in own and own[key] != value:
            raise UserError(f"compare: {section}.{key} ({own[key]!r}) and {flag} ({value!r}) set the "
                            f"same option; give it once")
        out[key] = value
    return out


def default_eval_tasks(task: str) -> list[str]:
    return [f"loss:{task}"]


def stage_options(config: CompareConfig) -> dict[str, dict]:
    """The options of every stage, after the flat flags are folded in (for the record and reuse)."""
    c = config
    msl = ("max_seq_length", c.max_seq_length)
    lenient = {"lenient": True} if c.lenient else {}
    opts = {
        "warmup": _merge("warmup", c.warmup, {"max_seq_length": msl}, {"seed": c.seed}),
        "datastore": _merge("datastore", c.datastore, {"max_seq_length": msl}),
        "targets": _merge("targets", c.targets, {"max_seq_length": ("target_max_seq_length",
                                                                    c.target_max_seq_length)}),
        "select": dict(c.select),
        "train": _merge("train", c.train, {"max_seq_length": msl,
                                           "epochs": ("train_epochs", c.train_epochs),
                                           "max_steps": ("train_max_steps", c.train_max_steps)},
                        {"seed": c.seed}),
        "eval": _merge("eval", c.eval, {"max_seq_length": ("target_max_seq_length",
                                                           c.target_max_seq_length),
                                        "bbh_max_per_task": ("eval_bbh_max_per_task",
                                                             c.eval_bbh_max_per_task),
                                        "max_new_tokens": ("eval_max_new_tokens",
                                                           c.eval_max_new_tokens)}),
    }
    for name in ("warmup", "datastore", "train"):
        opts[name] = {**lenient, **opts[name]}
    return opts


# --------------------------------------------------------------------------- timing and reuse

class Costs:
    """Measured seconds per stage, persisted so that a reused stage keeps its original cost."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, dict] = json.loads(path.read_text()) if path.is_file() else {}

    def timed(self, key: str, marker: Path, fn: Callable[[], Any]) -> tuple[Any, float, bool]:
        """Run ``fn``; (result, seconds, reused). A stage whose ``stage.json`` did not change
        was skipped: its seconds are the ones recorded when it ran."""
        before = _marker_state(marker)
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
        reused = before is not None and before == _marker_state(marker)
        if reused and key in self.data:
            return result, float(self.data[key]["seconds"]), True
        if reused:
            log.warning("compare: %s was reused but its original cost is unknown (no %s entry); "
                        "reporting the %.1fs of this check", key, self.path.name, seconds)
        self.data[key] = {"seconds": seconds, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_atomic(self.path, json.dumps(self.data, indent=2))
        return result, seconds, reused


def _marker_state(marker: Path):
    try:
        return marker.stat().st_mtime_ns, marker.read_bytes()
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- the pool

def prepare_pool(config: CompareConfig, out: Path) -> list[str]:
    """The pool files every method sees: the inputs, or their first ``max_examples`` records each,
    written (only when changed) to ``<out>/pool/``."""
    if config.max_examples <= 0:
        return [str(Path(f)) for f in config.data]
    from .data import load_examples
    pool_dir = out / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    files, used = [], set()
    for i, f in enumerate(config.data):
        examples, _ = load_examples([f], lenient=config.lenient, max_per_file=config.max_examples)
        name = Path(f).name
        for suffix in (".gz", ".jsonl", ".json", ".parquet"):
            name = name.removesuffix(suffix)
        name = f"{name}.jsonl" if name + ".jsonl" not in used else f"{i}_{name}.jsonl"
        used.add(name)
        text = "".join(json.dumps(e.raw, ensure_ascii=False) + "\n" for e in examples)
        path = pool_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)
        files.append(str(path))
    return files


def pool_composition(files: list[str], lenient: bool) -> dict:
    from .data import load_examples
    from .selection import _task_of
    examples, _ = load_examples(files, lenient=lenient)
    by_source = collections.Counter(Path(e.source).name for e in examples)
    by_task = collections.Counter(_task_of(e) or "<none>" for e in examples)
    return {"n": len(examples), "by_source": dict(by_source.most_common()),
            "by_task": dict(by_task.most_common())}


# --------------------------------------------------------------------------- report helpers

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
        from .pipeline import task_name
        return "loss:" + task_name(task[5:])
    return f"{task} {metric}"


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


def environment() -> dict:
    import torch
    return {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "cuda": torch.cuda.is_available(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine()}


# --------------------------------------------------------------------------- the run

def run_compare(config: CompareConfig | dict) -> dict:
    """Select with every method, train on each selection, evaluate, write ``report/``; returns the
    report (also ``<output_dir>/report/comparison.json``)."""
    from .baselines.stage import BaselineConfig, run_baseline
    from .pipeline import run_pipeline, task_name
    from .training.finetune import FinetuneConfig, run_finetune

    cfg = load_compare_config(config)
    opts = stage_options(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    costs = Costs(out / COSTS_FILE)
    pool = prepare_pool(cfg, out)
    composition = pool_composition(pool, cfg.lenient)
    n_budget = cfg.n_select(composition["n"])
    train_model = cfg.train_model or cfg.model
    name = task_name(cfg.task)
    eval_tasks = list(cfg.eval_tasks) or default_eval_tasks(cfg.task)
    log.info("compare: pool of %d example(s) from %d file(s), budget %d, methods %s, target %s",
             composition["n"], len(pool), n_budget, ", ".join(cfg.methods), cfg.task)

    # Check the training and evaluation options before spending time on selection.
    from .evaluation.run import EvalConfig, _check_task
    from_dict(FinetuneConfig, {**opts["train"], "model": train_model, "train_files": pool,
                               "output_dir": str(out / "train")}, where="compare: train")
    from_dict(EvalConfig, {**opts["eval"], "model": train_model, "task": eval_tasks[0]},
              where="compare: eval")
    for t in eval_tasks:
        _check_task(t)
    train_cfgs: dict[str, Any] = {}
    selections: dict[str, dict] = {}
    selection_dirs: dict[str, Path] = {}

    # 1. LESS (and its presets) through the pipeline, stage by stage so each stage's seconds are known.
    for method in cfg.methods:
        if method not in LESS_METHODS:
            continue
        run_dir = out / f"{method}_run"
        pcfg = {"run_dir": str(run_dir), "model": cfg.model, "data": pool, "data_dir": cfg.data_dir,
                "preset": LESS_METHODS[method], "warmup": opts["warmup"], "datastore": opts["datastore"],
                "targets": [{"task": cfg.task, **opts["targets"]}],
                "select": {"percentage": cfg.percentage, "top_k": cfg.top_k, **opts["select"]}}
        markers = {"warmup": run_dir / "warmup", "datastore": run_dir / "datastore",
                   "targets": run_dir / "targets" / name, "select": run_dir / "selected" / name}
        breakdown, reused = {}, {}
        result = None
        for stage, folder in markers.items():
            log.info("compare: %s %s", method, stage)
            result, secs, was_reused = costs.timed(
                f"{method}/{stage}", folder / "stage.json",
                lambda s=stage, p=pcfg: run_pipeline(p, where="compare", only=[s]))
            breakdown[stage], reused[stage] = secs, was_reused
        selections[method] = result[f"select/{name}"]
        selection_dirs[method] = markers["select"]
        selections[method]["cost"] = {"seconds": sum(breakdown.values()), "breakdown": breakdown,
                                      "reused": reused}

    # 2. The baselines, each into its own selection folder.
    for method in cfg.methods:
        if method in LESS_METHODS:
            continue
        sel_dir = out / "selections" / method
        b_cfg = from_dict(BaselineConfig, {
            "method": method, "data": pool, "task": cfg.task,
            "data_dir": cfg.data_dir, "output_dir": str(sel_dir), "seed": cfg.seed,
            "model": cfg.model if method in ("rds", "rds_plus") else "", "lenient": cfg.lenient,
            "tokenizer": cfg.train_model or cfg.model,
            "max_seq_length": opts["train"].get("max_seq_length", 2048),
            "percentage": cfg.percentage, "top_k": cfg.top_k,
            "options": dict(cfg.baselines.get(method) or {})}, where=f"compare: baselines.{method}")
        log.info("compare: baseline %s", method)
        report, secs, was_reused = costs.timed(f"select/{method}", sel_dir / "stage.json",
                                               lambda c=b_cfg: run_baseline(c))
        report["cost"] = {"seconds": secs, "score_seconds": report.get("seconds"),
                          "reused": was_reused}
        selections[method] = report
        selection_dirs[method] = sel_dir

    # 3. Train on each selection (and the full pool) with the same settings, then evaluate.
    rows_train = {m: [str(selection_dirs[m] / selections[m]["selected_file"])] for m in cfg.methods}
    if cfg.include_full:
        rows_train[FULL_ROW] = list(pool)
    train_results: dict[str, dict] = {}
    for row, files in rows_train.items():
        f_cfg = from_dict(FinetuneConfig, {**opts["train"], "model": train_model, "train_files": files,
                                           "output_dir": str(out / "train" / row)},
                          where="compare: train")
        train_cfgs[row] = f_cfg
        log.info("compare: training %s on %s", row, ", ".join(Path(f).name for f in files))
        path, secs, was_reused = costs.timed(f"train/{row}", Path(f_cfg.output_dir) / "stage.json",
                                             lambda c=f_cfg: run_finetune(c))
        summary_file = Path(path) / "training_summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
        train_results[row] = {"seconds": secs, "reused": was_reused, "dir": str(path),
                              "examples": summary.get("examples"), "steps": summary.get("steps"),
                              "train_loss": summary.get("train_loss")}

    eval_rows = ([BASE_ROW] if cfg.include_base else []) + list(rows_train)
    eval_results: dict[str, dict] = {}
    for row in eval_rows:
        eval_results[row] = _evaluate(cfg, opts["eval"], eval_tasks, row, train_model,
                                      train_cfgs.get(row), out, costs)

    # 4. The report.
    report = build_report(cfg, opts, composition, pool, n_budget, eval_tasks, selections,
                          selection_dirs, train_results, eval_results)
    report_dir = out / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    md = render_markdown(report)
    write_atomic(report_dir / "comparison.json", json.dumps(report, indent=2, default=str))
    write_atomic(report_dir / "comparison.md", md)
    print(md.split("\n## ")[0].rstrip())
    print(f"\nwrote {report_dir / 'comparison.md'} and comparison.json")
    return report


def _evaluate(cfg: CompareConfig, eval_opts: dict, tasks: list[str], row: str, train_model: str,
              f_cfg, out: Path, costs: Costs) -> dict:
    """Evaluate one row's model on every task; a stage folder ``eval/<row>`` that is reused when the
    model and the evaluation settings are unchanged."""
    from .evaluation.run import EvalConfig, run_many, task_slug
    if f_cfg is None:  # the untrained reference
        model, adapter, trained = train_model, None, None
    else:
        merged = f_cfg.method == "full" or f_cfg.merge_lora
        model = f_cfg.output_dir if merged else train_model
        adapter = None if merged else f_cfg.output_dir
        trained = json.loads((Path(f_cfg.output_dir) / "stage.json").read_text())
    e_cfg = from_dict(EvalConfig, {**eval_opts, "model": model, "adapter": adapter, "task": tasks[0],
                                   "data_dir": cfg.data_dir or None,
                                   "output_dir": str(out / "eval" / row)}, where="compare: eval")
    settings = {"eval": {k: v for k, v in to_dict(e_cfg).items() if k != "output_dir"},
                "tasks": tasks, "trained": trained}
    folder = Path(e_cfg.output_dir)
    try:
        changed = stage_status(folder, settings) != "done"
    except UserError:  # evaluations are derived: other settings simply rerun
        changed = True

    def run():
        with stage_dir(folder, "eval", settings, overwrite=changed) as part:
            if part is not None:
                log.info("compare: evaluating %s on %s", row, ", ".join(tasks))
                run_many(dataclasses.replace(e_cfg, output_dir=str(part)), tasks, quiet=True)

    _, secs, was_reused = costs.timed(f"eval/{row}", folder / "stage.json", run)
    results = {}
    for t in tasks:
        res = json.loads((folder / f"{task_slug(t)}.json").read_text())
        metric, value = headline(res)
        results[t] = {"metric": metric, "value": value, "average": res.get("average"),
                      "micro_average": res.get("micro_average"),
                      "n_examples": res.get("n_examples"), "n_scored": res.get("n_scored"),
                      "file": str(folder / f"{task_slug(t)}.json")}
    return {"seconds": secs, "reused": was_reused, "model": model, "adapter": adapter,
            "tasks": results}


def build_report(cfg: CompareConfig, opts: dict, composition: dict, pool: list[str], n_budget: int,
                 eval_tasks: list[str], selections: dict, selection_dirs: dict, train_results: dict,
                 eval_results: dict) -> dict:
    rows = []
    for row in eval_results:
        sel = selections.get(row)
        ev = eval_results[row]
        metrics = {metric_column(t, r["metric"]): r["value"] for t, r in ev["tasks"].items()}
        if row == BASE_ROW:
            n, sel_s = 0, None
        elif row == FULL_ROW:
            n, sel_s = composition["n"], 0.0
        else:
            n, sel_s = sel["n_selected"], sel["cost"]["seconds"]
        tr = train_results.get(row, {})
        rows.append({"method": row, "n_selected": n, "selection_seconds": sel_s,
                     "train_seconds": tr.get("seconds"), "train_examples": tr.get("examples"),
                     "train_steps": tr.get("steps"),
                     "train_loss": tr.get("train_loss"), "eval_seconds": ev["seconds"],
                     "metrics": metrics})
    keys = {m: selected_keys(d) for m, d in selection_dirs.items()}
    method_shares = {}
    for m, sel in selections.items():
        k = sel["n_selected"]
        method_shares[m] = {"by_source": shares(sel["selected_by_source"], k),
                            "by_task": shares(sel["selected_by_task"], k)}
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


def render_markdown(report: dict, max_task_rows: int = 15) -> str:
    cols = report["metric_columns"]
    head = ["method", "n selected", "selection s", "n trained", "train steps", "train s"] + cols
    body = [[r["method"], str(r["n_selected"]), _fmt(r["selection_seconds"], 2),
             _fmt(r["train_examples"]), _fmt(r["train_steps"]), _fmt(r["train_seconds"], 2)] + [_fmt(r["metrics"].get(c)) for c in cols]
            for r in report["rows"]]
    env = report["environment"]
    b = report["budget"]
    budget = f"top {b['top_k']}" if b["top_k"] > 0 else f"{b['percentage']:g} of the pool"
    parts = [f"# Selection methods compared on {report['task']}",
             f"Pool: {report['pool']['n']} examples from {len(report['pool_files'])} file(s); budget "
             f"{budget} = {b['n_select']} examples; selection model `{report['model']}`, trained "
             f"model `{report['train_model']}`; {env['device']}, {env['threads']} torch thread(s) of "
             f"{env['cpu_count']} CPU(s), torch {env['torch']}.",
             "",
             _md_table(head, body),
             "",
             "Selection s: wall seconds of the method's selection (LESS: warmup + datastore + targets "
             "+ select; `base` is the untrained model, `full` the whole pool). n trained: selected "
             "examples that keep a completion token after truncation (the others are dropped by "
             "training). Loss columns are the macro-averaged target-set loss (lower is better)."]
    less = report.get("less_cost_breakdown")
    if less:
        parts.append("\nLESS cost: " + " + ".join(f"{k} {v:.1f} s" for k, v in
                                                 less["breakdown"].items())
                     + f" = {less['seconds']:.1f} s.")
    reused = [c.get("reused") for c in report["selection_costs"].values()]
    reused = [any(r.values()) if isinstance(r, dict) else r for r in reused]
    if any(reused) or any(t.get("reused") for t in report["training"].values()):
        parts.append("Some stages were reused from an earlier run; their seconds are the ones "
                     "measured when they ran.")
    methods = list(report["shares"])
    if methods:
        sources = list(report["pool"]["share_by_source"])
        s_rows = [["pool"] + [_fmt(report["pool"]["share_by_source"].get(s, 0.0), 3) for s in sources]]
        s_rows += [[m] + [_fmt(report["shares"][m]["by_source"].get(s, 0.0), 3) for s in sources]
                   for m in methods]
        parts += ["", "## Share of each pool source in the selection", "",
                  _md_table(["method"] + sources, s_rows)]
        tasks = list(report["pool"]["share_by_task"])
        shown, rest = tasks[:max_task_rows], tasks[max_task_rows:]
        t_rows = [[t, _fmt(report["pool"]["share_by_task"][t], 3)]
                  + [_fmt(report["shares"][m]["by_task"].get(t, 0.0), 3) for m in methods]
                  for t in shown]
        if rest:
            t_rows.append([f"({len(rest)} other tasks)",
                           _fmt(sum(report["pool"]["share_by_task"][t] for t in rest), 3)]
                          + [_fmt(sum(report["shares"][m]["by_task"].get(t, 0.0) for t in rest), 3)
                             for m in methods])
        parts += ["", "## Share of each pool `task` in the selection", "",
                  _md_table(["task", "pool"] + methods, t_rows)]
        jac = report["jaccard"]
        parts += ["", "## Overlap between selections (Jaccard)", "",
                  _md_table([""] + methods, [[a] + [_fmt(jac[a][b], 3) for b in methods]
                                            for a in methods])]
    warned = {m: s["warnings"] for m, s in report["selections"].items() if s.get("warnings")}
    if warned:  # the selection diagnostics (diagnostics.py): dominance by a source, subtask, length
        parts += ["", "## Selection warnings", ""]
        parts += [f"- **{m}**: {w}" for m, ws in warned.items() for w in ws]
    return "\n".join(parts) + "\n"
