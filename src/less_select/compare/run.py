"""``run_compare``: prepare the pool, select with every method, train on each selection (and the
whole pool) with the same settings, evaluate every model (and the untrained one), write the report.

Every stage skips itself when its output is already there with the same settings, so rerunning the
same comparison only runs what is missing; the seconds of a reused stage are the ones measured when
it ran (``costs.py``). Nothing is printed: the report is returned (the CLI prints its table).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path


from ..configs import from_dict, to_dict
from ..errors import UserError
from ..stage_folder import stage_dir, stage_status, write_atomic
from .config import BASE_ROW, FULL_ROW, CompareConfig, default_eval_tasks, load_compare_config, \
    stage_options, wire
from .costs import COSTS_FILE, Costs
from .methods import Context, registry
from .report import build_report, headline, render_markdown

log = logging.getLogger(__name__)


def run_compare(config: CompareConfig | dict) -> dict:
    """Select with every method, train on each selection, evaluate, write ``report/``; returns the
    report (also ``<output_dir>/report/comparison.json``)."""
    ctx = prepare(config)
    cfg = ctx.config
    composition = pool_composition(ctx.pool, cfg.lenient)
    plan = Plan.make(ctx, composition)
    methods = registry()
    selections = {m: methods[m].select(ctx, m) for m in cfg.methods}
    picked = [m for m in cfg.methods if not methods[m].trains_itself]  # those with a selection
    selection_dirs = {m: methods[m].folder(ctx, m) for m in picked}
    trained = {m: train_row(ctx, plan, m, [str(selection_dirs[m] / selections[m]["selected_file"])])
               if m in picked else methods[m].trained(ctx, m, selections[m]) for m in cfg.methods}
    if cfg.include_full:
        trained[FULL_ROW] = train_row(ctx, plan, FULL_ROW, list(ctx.pool))
    eval_rows = ([BASE_ROW] if cfg.include_base else []) + list(trained)
    evaluated = {row: evaluate_row(ctx, plan, row, trained.get(row)) for row in eval_rows}
    report = build_report(cfg, ctx.options, composition, ctx.pool, plan.n_budget, plan.eval_tasks,
                          selections, selection_dirs, {r: t["result"] for r, t in trained.items()},
                          evaluated)
    write_report(ctx.out / "report", report)
    return report


def prepare(config: CompareConfig | dict) -> Context:
    """The checked config, the stage options, the pool files every method sees and the cost log."""
    cfg = load_compare_config(config)
    options = stage_options(cfg)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return Context(config=cfg, options=options, pool=prepare_pool(cfg, out), out=out,
                   costs=Costs(out / COSTS_FILE))


@dataclass
class Plan:
    """What every row shares: the budget, the trained model, the evaluation tasks; built (and so
    checked, with every method's stage configs) before any stage runs."""

    n_budget: int
    train_model: str
    eval_tasks: list[str]

    @classmethod
    def make(cls, ctx: Context, composition: dict) -> Plan:
        from ..evaluation.tasks import check_task
        cfg = ctx.config
        plan = cls(n_budget=cfg.n_select(composition["n"]), train_model=cfg.train_model or cfg.model,
                   eval_tasks=list(cfg.eval_tasks) or default_eval_tasks(cfg.task))
        log.info("compare: pool of %d example(s) from %d file(s), budget %d, methods %s, target %s",
                 composition["n"], len(ctx.pool), plan.n_budget, ", ".join(cfg.methods), cfg.task)
        for name in cfg.methods:
            registry()[name].check(ctx, name)
        train_config(ctx, plan, "check", list(ctx.pool))
        eval_config(ctx, plan, "check", plan.train_model, None)
        for t in plan.eval_tasks:
            check_task(t)
        return plan


def train_config(ctx: Context, plan: Plan, row: str, files: list[str]):
    from ..training.finetune import FinetuneConfig
    return from_dict(FinetuneConfig, wire("train", ctx.options["train"], {
        "model": plan.train_model, "train_files": files,
        "output_dir": str(ctx.out / "train" / row)}), where="compare: train")


def eval_config(ctx: Context, plan: Plan, row: str, model: str, adapter: str | None):
    from ..evaluation.run import EvalConfig
    return from_dict(EvalConfig, wire("eval", ctx.options["eval"], {
        "model": model, "adapter": adapter, "task": plan.eval_tasks[0],
        "data_dir": ctx.config.data_dir, "output_dir": str(ctx.out / "eval" / row)}),
        where="compare: eval")


def train_row(ctx: Context, plan: Plan, row: str, files: list[str]) -> dict:
    """Train ``plan.train_model`` on ``files`` into ``train/<row>``: {"config", "result"}."""
    from ..training.finetune import run_finetune
    f_cfg = train_config(ctx, plan, row, files)
    log.info("compare: training %s on %s", row, ", ".join(Path(f).name for f in files))
    path, secs, was_reused = ctx.costs.timed(f"train/{row}", Path(f_cfg.output_dir) / "stage.json",
                                             lambda: run_finetune(f_cfg))
    summary_file = Path(path) / "training_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    return {"config": f_cfg, "result": {
        "seconds": secs, "reused": was_reused, "dir": str(path), "examples": summary.get("examples"),
        "steps": summary.get("steps"), "train_loss": summary.get("train_loss")}}


def evaluate_row(ctx: Context, plan: Plan, row: str, trained: dict | None) -> dict:
    """Evaluate one row's model on every task; a stage folder ``eval/<row>`` that is reused when the
    model and the evaluation settings are unchanged (``trained`` None: the untrained model)."""
    from ..evaluation.run import run_many
    from ..evaluation.tasks import task_slug
    if trained is None:
        model, adapter, trained_stage = plan.train_model, None, None
    else:
        f_cfg = trained["config"]
        merged = f_cfg.method == "full" or getattr(f_cfg, "merge_lora", False)
        model = f_cfg.output_dir if merged else plan.train_model
        adapter = None if merged else f_cfg.output_dir
        trained_stage = json.loads((Path(f_cfg.output_dir) / "stage.json").read_text())
    e_cfg = eval_config(ctx, plan, row, model, adapter)
    tasks = plan.eval_tasks
    settings = {"eval": {k: v for k, v in to_dict(e_cfg).items() if k != "output_dir"},
                "tasks": tasks, "trained": trained_stage}
    folder = Path(e_cfg.output_dir)
    try:
        changed = stage_status(folder, settings) != "done"
    except UserError:  # evaluations are derived: other settings simply rerun
        changed = True

    def run():
        with stage_dir(folder, "eval", settings, overwrite=changed) as part:
            if part is not None:
                log.info("compare: evaluating %s on %s", row, ", ".join(tasks))
                run_many(dataclasses.replace(e_cfg, output_dir=str(part)), tasks)

    _, secs, was_reused = ctx.costs.timed(f"eval/{row}", folder / "stage.json", run)
    results = {}
    for t in tasks:
        file = folder / f"{task_slug(t)}.json"
        res = json.loads(file.read_text())
        metric, value = headline(res)
        results[t] = {"metric": metric, "value": value, "average": res.get("average"),
                      "micro_average": res.get("micro_average"), "n_examples": res.get("n_examples"),
                      "n_scored": res.get("n_scored"), "file": str(file)}
    return {"seconds": secs, "reused": was_reused, "model": model, "adapter": adapter,
            "tasks": results}


def write_report(report_dir: Path, report: dict) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(report_dir / "comparison.json", json.dumps(report, indent=2, default=str))
    write_atomic(report_dir / "comparison.md", render_markdown(report))


# --------------------------------------------------------------------------- the pool

def prepare_pool(config: CompareConfig, out: Path) -> list[str]:
    """The pool files every method sees: the inputs, or their first ``max_examples`` records each,
    written (only when changed) to ``<out>/pool/``."""
    if config.max_examples <= 0:
        return [str(Path(f)) for f in config.data]
    from ..data import load_examples
    from ..data.targets import DATA_SUFFIXES
    pool_dir = out / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    files, used = [], set()
    for i, f in enumerate(config.data):
        examples, _ = load_examples([f], lenient=config.lenient, max_per_file=config.max_examples)
        name = Path(f).name
        for suffix in DATA_SUFFIXES:
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
    """Size of the pool and its count per source file and per ``task`` value."""
    from ..data import load_examples
    from ..selection import _task_of
    examples, _ = load_examples(files, lenient=lenient)
    by_source = collections.Counter(Path(e.source).name for e in examples)
    by_task = collections.Counter(_task_of(e) or "<none>" for e in examples)
    return {"n": len(examples), "by_source": dict(by_source.most_common()),
            "by_task": dict(by_task.most_common())}


