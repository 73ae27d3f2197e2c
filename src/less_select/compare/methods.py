"""The selection methods of a comparison, behind one interface, and their registry.

A :class:`Method` turns the (capped) pool into a selection folder in the shared format
(``selection.write_selection``: ``top_*.jsonl``, ``scores.csv``, ``selection.json``) and reports what
that cost. Training and evaluation are the same for every method (``run.py``). To add a method,
subclass :class:`Method` and add it to :func:`registry` (its name becomes a valid ``methods`` entry).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

from ..configs import from_dict
from ..errors import UserError
from .config import BASE_ROW, FULL_ROW, CompareConfig, wire
from .costs import Costs

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every method sees: the config, every stage's options, the pool files and the folders."""

    config: CompareConfig
    options: dict[str, dict]
    pool: list[str]
    out: Path
    costs: Costs


class Method:
    """One selection method: ``select`` writes ``folder(ctx, name)`` and returns its report (the
    selection's ``selection.json``) with ``cost`` (``seconds``, ``reused``) added.

    A method that ``trains_itself`` (dynamic selection) selects while training: its ``folder`` is
    the trained model, ``select`` reports the training too, and ``trained`` gives what evaluation
    needs; it has no single selection folder, so no shares or overlap."""

    trains_itself = False

    def folder(self, ctx: Context, name: str) -> Path:
        return ctx.out / "selections" / name

    def check(self, ctx: Context, name: str) -> None:
        """Build the method's stage configs before anything runs (a bad option fails at once)."""

    def select(self, ctx: Context, name: str) -> dict:
        raise NotImplementedError


class LessMethod(Method):
    """LESS through the pipeline (one run folder per preset), stage by stage so each stage's seconds
    are known: warmup, datastore, targets, select (the select stage scores with ``LessSelector``)."""

    STAGES = ("warmup", "datastore", "targets", "select")

    def __init__(self, preset: str | None):
        self.preset = preset

    def run_dir(self, ctx: Context, name: str) -> Path:
        return ctx.out / f"{name}_run"

    def folder(self, ctx: Context, name: str) -> Path:
        from ..data.targets import task_name
        return self.run_dir(ctx, name) / "selected" / task_name(ctx.config.task)

    def pipeline_config(self, ctx: Context, name: str) -> dict:
        """The pipeline config of this run: compare's options plus the paths the pipeline connects."""
        from ..data.targets import task_name
        c, o, run = ctx.config, ctx.options, self.run_dir(ctx, name)
        target = task_name(c.task)
        return {
            "run_dir": str(run), "model": c.model, "data": ctx.pool, "data_dir": c.data_dir,
            "preset": self.preset,
            "warmup": wire("warmup", o["warmup"], {"model": c.model, "pool_files": ctx.pool,
                                                   "output_dir": str(run / "warmup")}),
            "datastore": wire("datastore", o["datastore"], {
                "model": c.model, "data": ctx.pool, "checkpoints": [str(run / "warmup")],
                "output_dir": str(run / "datastore"), "max_examples": 0}),
            "targets": [wire("targets", o["targets"], {
                "task": c.task, "data_dir": c.data_dir, "datastore": str(run / "datastore"),
                "output_dir": str(run / "targets" / target)})],
            "select": wire("select", o["select"], {
                "percentage": c.percentage, "top_k": c.top_k, "export": c.export,
                "datastore": str(run / "datastore"),
                "targets": str(run / "targets" / target), "output_dir": str(self.folder(ctx, name))}),
        }

    def check(self, ctx: Context, name: str) -> None:
        self.pipeline_config(ctx, name)

    def select(self, ctx: Context, name: str) -> dict:
        from ..data.targets import task_name
        from ..pipeline import run_pipeline
        pcfg = self.pipeline_config(ctx, name)
        run = self.run_dir(ctx, name)
        target = task_name(ctx.config.task)
        markers = {"warmup": run / "warmup", "datastore": run / "datastore",
                   "targets": run / "targets" / target, "select": self.folder(ctx, name)}
        breakdown, reused, result = {}, {}, {}
        for stage, folder in markers.items():
            log.info("compare: %s %s", name, stage)
            result, secs, was_reused = ctx.costs.timed(
                f"{name}/{stage}", folder / "stage.json",
                lambda s=stage: run_pipeline(pcfg, where="compare", only=[s]))
            breakdown[stage], reused[stage] = secs, was_reused
        report = result[f"select/{target}"]
        report["cost"] = {"seconds": sum(breakdown.values()), "breakdown": breakdown,
                          "reused": reused}
        return report


class BaselineMethod(Method):
    """A baseline (``baselines/``) through the ``baseline`` stage, into ``selections/<name>/``."""

    def stage_config(self, ctx: Context, name: str):
        from ..baselines.stage import BaselineConfig
        c = ctx.config
        seed = {} if c.seed is None else {"seed": c.seed}
        # leave out the examples training drops: the training truncation (else the stage default)
        msl = {k: v for k, v in ctx.options["train"].items() if k == "max_seq_length"}
        return from_dict(BaselineConfig, {
            "method": name, "data": ctx.pool, "task": c.task, "data_dir": c.data_dir,
            "output_dir": str(self.folder(ctx, name)), **seed,
            "model": c.model if name in ("rds", "rds_plus") else "", "lenient": c.lenient,
            **{k: v for k, v in (("device", c.device), ("dtype", c.dtype)) if v is not None},
            "tokenizer": c.train_model or c.model,
            **msl,
            "percentage": c.percentage, "top_k": c.top_k, "export": c.export,
            "options": dict(c.baselines.get(name) or {})}, where=f"compare: baselines.{name}")

    def check(self, ctx: Context, name: str) -> None:
        self.stage_config(ctx, name)

    def select(self, ctx: Context, name: str) -> dict:
        from ..baselines.stage import run_baseline
        b_cfg = self.stage_config(ctx, name)
        log.info("compare: baseline %s", name)
        report, secs, was_reused = ctx.costs.timed(f"select/{name}", self.folder(ctx, name) /
                                                   "stage.json", lambda: run_baseline(b_cfg))
        report["cost"] = {"seconds": secs, "score_seconds": report.get("seconds"),
                          "reused": was_reused}
        return report


class PredictMethod(LessMethod):
    """Influence prediction (``predict/``): the LESS warmup through the pipeline into
    ``predict_run/``, then the ``predict`` stage (real LESS scores for a sample, a predictor for the
    rest; ``baselines.predict`` holds its options, e.g. ``{mode: predicted, sample_fraction: 0.2}``)
    with the datastore section's feature options. Its cost is warmup + predict."""

    def __init__(self):
        super().__init__(None)

    def folder(self, ctx: Context, name: str) -> Path:
        return self.run_dir(ctx, name) / "predict" / "selection"

    def stage_config(self, ctx: Context, name: str):
        import dataclasses

        from ..predict.stage import PredictConfig
        c, run = ctx.config, self.run_dir(ctx, name)
        fields = {f.name for f in dataclasses.fields(PredictConfig)}
        features = {k: v for k, v in ctx.options["datastore"].items() if k in fields}
        seed = {} if c.seed is None else {"seed": c.seed}
        target_msl = ctx.options["targets"].get("max_seq_length")
        return from_dict(PredictConfig, {
            **features, **seed, **({"targets_max_seq_length": target_msl} if target_msl else {}),
            **wire(f"baselines.{name}", dict(c.baselines.get(name) or {}), {
                "model": c.model, "checkpoints": [str(run / "warmup")], "data": ctx.pool,
                "task": c.task, "data_dir": c.data_dir, "output_dir": str(run / "predict"),
                "percentage": c.percentage, "top_k": c.top_k, "export": c.export})}, where=f"compare: {name}")

    def check(self, ctx: Context, name: str) -> None:
        self.pipeline_config(ctx, name)
        self.stage_config(ctx, name)

    def select(self, ctx: Context, name: str) -> dict:
        from ..pipeline import run_pipeline
        from ..predict.stage import run_predict
        pcfg, p_cfg = self.pipeline_config(ctx, name), self.stage_config(ctx, name)
        run = self.run_dir(ctx, name)
        log.info("compare: %s warmup", name)
        _, warm_s, warm_reused = ctx.costs.timed(f"{name}/warmup", run / "warmup" / "stage.json",
                                                 lambda: run_pipeline(pcfg, where="compare",
                                                                      only=["warmup"]))
        log.info("compare: %s predict", name)
        report, secs, reused = ctx.costs.timed(f"{name}/predict", self.folder(ctx, name) /
                                               "stage.json", lambda: run_predict(p_cfg))
        report["cost"] = {"seconds": warm_s + secs, "breakdown": {"warmup": warm_s, "predict": secs},
                          "reused": {"warmup": warm_reused, "predict": reused}}
        return report


class DynamicMethod(Method):
    """Dynamic LESS (``dynamic/``): ``train_model`` trained on the pool with re-selection by
    influence every ``update_step`` steps, into ``train/<name>/``; the train section's training
    options and ``baselines.<name>``'s re-selection options (``warmup_step``, ``update_step``, ...)."""

    trains_itself = True

    def folder(self, ctx: Context, name: str) -> Path:
        return ctx.out / "train" / name

    def stage_config(self, ctx: Context, name: str):
        import dataclasses

        from ..dynamic.stage import DynamicTrainConfig
        c = ctx.config
        fields = {f.name for f in dataclasses.fields(DynamicTrainConfig)}
        training = {k: v for k, v in ctx.options["train"].items() if k in fields}
        return from_dict(DynamicTrainConfig, {**training, **wire(
            f"baselines.{name}", dict(c.baselines.get(name) or {}), {
                "model": c.train_model or c.model, "pool_files": ctx.pool, "task": c.task,
                "data_dir": c.data_dir, "output_dir": str(self.folder(ctx, name))})},
            where=f"compare: {name}")

    def check(self, ctx: Context, name: str) -> None:
        self.stage_config(ctx, name)

    def select(self, ctx: Context, name: str) -> dict:
        import json

        from ..dynamic.stage import SUMMARY_FILE, run_dynamic_train
        d_cfg = self.stage_config(ctx, name)
        log.info("compare: %s (selection while training)", name)
        path, secs, reused = ctx.costs.timed(f"train/{name}", self.folder(ctx, name) / "stage.json",
                                             lambda: run_dynamic_train(d_cfg))
        summary = json.loads((Path(path) / SUMMARY_FILE).read_text())
        n_trained = summary["steps"] * summary["global_batch"]  # examples drawn over all steps
        # its seconds are the selection's (one stage does both): reported once, as selection seconds
        training = {"seconds": None, "reused": reused, "dir": str(path), "examples": n_trained,
                    "steps": summary["steps"], "train_loss": summary.get("train_loss")}
        return {"method": name, "n_selected": n_trained, "warnings": [], "training": training,
                "cost": {"seconds": secs, "reused": reused, "includes_training": True}}

    def trained(self, ctx: Context, name: str, report: dict) -> dict:
        """What evaluation needs of the model ``select`` trained (``run.train_row``'s shape)."""
        return {"config": self.stage_config(ctx, name), "result": report["training"]}


@functools.cache
def registry() -> dict[str, Method]:
    """Method name -> method: the LESS presets, influence prediction and every baseline (imported
    on first use). A new method is one more entry."""
    from ..baselines import BASELINES
    methods: dict[str, Method] = {"less": LessMethod(None), "less_robust": LessMethod("robust"),
                                  "predict": PredictMethod(), "dynamic": DynamicMethod()}
    methods.update({name: BaselineMethod() for name in sorted(BASELINES)})
    return methods


def check_methods(config: CompareConfig) -> None:
    """Known, distinct method names; per-method baseline options only for chosen methods."""
    valid = list(registry())
    if not config.methods:
        raise UserError("compare: choose at least one method")
    for m in config.methods:
        if m in (BASE_ROW, FULL_ROW):
            raise UserError(f"compare: {m!r} is a reserved row name")
        if m not in valid:
            raise UserError(f"compare: unknown method {m!r}; valid methods are {', '.join(valid)}")
    if len(set(config.methods)) != len(config.methods):
        raise UserError(f"compare: methods repeat: {config.methods}")
    unknown = sorted(set(config.baselines) - set(config.methods))
    if unknown:
        raise UserError(f"compare: baselines.{unknown[0]} is not one of the chosen methods "
                        f"{', '.join(config.methods)}")
