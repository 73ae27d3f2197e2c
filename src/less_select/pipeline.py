"""``less-select run CONFIG.yaml``: the stages in order over one run folder.

Relative paths are relative to the current directory. The YAML's top-level keys are the fields of
:class:`PipelineConfig`: shared keys (``run_dir``, ``model``, ``data``, ``data_dir``, ``preset``) and
one section per stage whose keys are exactly that stage's config fields (``warmup``, ``datastore``,
``targets``, ``select``, ``train``, ``eval``; ``eval`` adds ``tasks``). The pipeline fills in the
paths that connect the stages::

    <run_dir>/warmup/checkpoint-*        <run_dir>/datastore
    <run_dir>/targets/<task>             <run_dir>/selected/<task>
    <run_dir>/train/<task>               <run_dir>/eval/<task>
    <run_dir>/dynamic_train/<task>       (a ``dynamic_train`` section: dynamic LESS, no datastore;
                                          ``--only dynamic_train`` runs it without the other stages)
    <run_dir>/predict/<task>/selection   (a ``predict`` section: influence prediction over the
                                          warmup checkpoints; ``--only warmup predict``)

Each stage skips itself when its output exists with the same settings and refuses (naming the
setting) when it exists with other ones; ``--overwrite`` in a section reruns it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .configs import from_dict, option, read_yaml, shared, to_dict
from .data.targets import task_name
from .errors import UserError
from .evaluation.run import EvalConfig
from .presets import PresetName, preset_section

log = logging.getLogger(__name__)

SECTIONS = ("warmup", "datastore", "targets", "select", "train", "eval", "dynamic_train", "predict")


@dataclass
class PipelineConfig:
    """The top-level keys of a pipeline YAML file (``less-select run CONFIG.yaml``)."""

    run_dir: str = option(help="folder holding every stage's output (layout in the README)")
    model: str = option(help="base model of every stage: a Hugging Face hub id or a local folder")
    data: list[str] = option(help="pool file(s): JSONL/JSON/Parquet, optionally .gz")
    data_dir: str = shared("data_dir")
    preset: Optional[PresetName] = option(None, help=(
        "named set of stage options chosen together (presets.py): faithful (LESS as in the paper) "
        "or robust; an explicit, different value for one of its options is refused"))
    warmup: dict[str, Any] = option(factory=dict, cli=False, help="WarmupConfig options")
    datastore: dict[str, Any] = option(factory=dict, cli=False, help="DatastoreConfig options")
    targets: list[dict[str, Any]] = option(factory=list, cli=False, help=(
        "one mapping of TargetsConfig options per target task, each with its 'task'"))
    select: dict[str, Any] = option(factory=dict, cli=False, help="SelectConfig options")
    train: Optional[dict[str, Any]] = option(None, cli=False, help=(
        "FinetuneConfig options; without this section nothing is trained"))
    eval: Optional[dict[str, Any]] = option(None, cli=False, help=(
        "PipelineEvalConfig options (EvalConfig's and tasks); without it nothing is evaluated"))
    dynamic_train: Optional[dict[str, Any]] = option(None, cli=False, help=(
        "DynamicTrainConfig options (task: the section's, else the only target's); trains on the "
        "pool with dynamic LESS into <run_dir>/dynamic_train/<task>; without it nothing runs"))
    predict: Optional[dict[str, Any]] = option(None, cli=False, help=(
        "PredictConfig options (task: the section's, else the only target's); the datastore "
        "section's options and the select section's budget and subtask_rule apply unless set here; "
        "selects into <run_dir>/predict/<task>/selection; without it nothing runs"))


@dataclass
class PipelineEvalConfig(EvalConfig):
    """The pipeline's ``eval`` section: every EvalConfig option, and the tasks to run."""

    tasks: list[str] = option(factory=list, help="tasks to evaluate before and after training "
                                                  "(default: loss:<target task>)")


def target_names(tasks: list[str], where: str) -> list[str]:
    """One distinct folder name per target task; two tasks mapping to one folder are refused."""
    names: dict[str, str] = {}
    for i, task in enumerate(tasks):
        name = task_name(task)
        if name in names:
            raise UserError(f"{where}: targets[{i}] ({task}) and {names[name]} would share the folder "
                            f"targets/{name}; rename one of the files")
        names[name] = task
    return list(names)


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """The pipeline config of a YAML file (every problem a one-line error naming the file)."""
    cfg = read_yaml(path)
    if cfg is not None and not isinstance(cfg, dict):
        raise UserError(f"{path}: the pipeline config must be a mapping")
    return pipeline_config(cfg or {}, str(path))


def pipeline_config(cfg: PipelineConfig | dict[str, Any], where: str) -> PipelineConfig:
    """A checked :class:`PipelineConfig` from itself or a mapping of its keys."""
    config = from_dict(PipelineConfig, cfg if isinstance(cfg, dict) else to_dict(cfg), where=where)
    for key in ("run_dir", "model", "data"):
        if not getattr(config, key):
            raise UserError(f"{where}: '{key}' is required")
    for i, tsec in enumerate(config.targets):
        if "task" not in tsec:
            raise UserError(f"{where}: targets[{i}] must be a mapping with a 'task'")
    if config.dynamic_train is not None:
        _dynamic_config(config, where)   # checked before any stage runs, like every section
    if config.predict is not None:
        _predict_config(config, where)
    return config


def _section_with_task(cfg: PipelineConfig, name: str, where: str) -> dict:
    """A section of a stage that takes one target ``task``: its own, else the only target's."""
    sec = _section(cfg, name, where)
    if "task" not in sec:
        if len(cfg.targets) != 1:
            raise UserError(f"{where}: {name} needs a 'task' (or exactly one entry in targets)")
        sec["task"] = str(cfg.targets[0]["task"])
    return sec


def _predict_config(cfg: PipelineConfig, where: str):
    """The ``predict`` section as a PredictConfig over the pipeline's model, pool and warmup."""
    import dataclasses
    from .predict import PredictConfig
    sec = _section_with_task(cfg, "predict", where)
    fields = {f.name for f in dataclasses.fields(PredictConfig)} - {"output_dir", "overwrite"}
    inherited = {k: v for k, v in _section(cfg, "datastore", where).items() if k in fields}
    inherited.update({k: v for k, v in _section(cfg, "select", where).items()
                      if k in ("percentage", "top_k", "subtask_rule")})
    run = Path(cfg.run_dir)
    return from_dict(PredictConfig, {
        "model": cfg.model, "data": cfg.data, "data_dir": cfg.data_dir, "checkpoints": [str(run / "warmup")],
        **inherited, "output_dir": str(run / "predict" / task_name(str(sec["task"]))), **sec},
        where=f"{where}: predict")


def _dynamic_config(cfg: PipelineConfig, where: str):
    """The ``dynamic_train`` section as a DynamicTrainConfig over the pipeline's model and pool."""
    from .dynamic.stage import DynamicTrainConfig
    sec = _section_with_task(cfg, "dynamic_train", where)
    return from_dict(DynamicTrainConfig, {
        "model": cfg.model, "pool_files": cfg.data, "data_dir": cfg.data_dir,
        "output_dir": str(Path(cfg.run_dir) / "dynamic_train" / task_name(str(sec["task"]))), **sec},
        where=f"{where}: dynamic_train")


def _section(cfg: PipelineConfig, name: str, where: str) -> dict:
    return preset_section(cfg.preset, name, getattr(cfg, name) or {}, where)


def _stage_configs(cfg: PipelineConfig, where: str) -> tuple[Any, Any, list[tuple]]:
    """Every stage's config, built (and so checked) before any stage runs: a bad value in a late
    section fails at once, not after hours of warmup. Returns (warmup, datastore,
    [(name, targets, select, train or None)])."""
    from .datastore.build import DatastoreConfig, TargetsConfig
    from .select_stage import SelectConfig
    from .training.finetune import FinetuneConfig
    from .training.warmup import WarmupConfig

    run = Path(cfg.run_dir)
    warm = from_dict(WarmupConfig, {"model": cfg.model, "pool_files": cfg.data,
                                    "output_dir": str(run / "warmup"), **_section(cfg, "warmup", where)},
                     where=f"{where}: warmup")
    ds_cfg = from_dict(DatastoreConfig, {"model": cfg.model, "data": cfg.data,
                                         "checkpoints": [str(run / "warmup")],
                                         "output_dir": str(run / "datastore"),
                                         **_section(cfg, "datastore", where)}, where=f"{where}: datastore")
    names = target_names([str(t["task"]) for t in cfg.targets], where)
    # checked here even without targets (then select/train never run, but a typo is still a typo)
    from_dict(SelectConfig, {"datastore": "-", "targets": "-", "output_dir": "-",
                             **_section(cfg, "select", where)}, where=f"{where}: select")
    if cfg.train is not None:
        from_dict(FinetuneConfig, {"model": cfg.model, "train_files": ["-"], "output_dir": "-",
                                   **_section(cfg, "train", where)}, where=f"{where}: train")
    if cfg.eval is not None:
        _eval_config(cfg, "-", where)
    per_target = []
    for i, (tsec, name) in enumerate(zip(cfg.targets, names)):
        t_cfg = from_dict(TargetsConfig, {"datastore": ds_cfg.output_dir, "data_dir": cfg.data_dir,
                                          "output_dir": str(run / "targets" / name), **tsec},
                          where=f"{where}: targets[{i}]")
        s_cfg = from_dict(SelectConfig, {"datastore": ds_cfg.output_dir, "targets": t_cfg.output_dir,
                                         "output_dir": str(run / "selected" / name),
                                         **_section(cfg, "select", where)}, where=f"{where}: select")
        f_cfg = None
        if cfg.train is not None:
            selected_file = str(Path(s_cfg.output_dir) / f"{s_cfg.file_stem}.jsonl")
            f_cfg = from_dict(FinetuneConfig, {"model": cfg.model, "train_files": [selected_file],
                                               "output_dir": str(run / "train" / name),
                                               **_section(cfg, "train", where)}, where=f"{where}: train")
        per_target.append((name, t_cfg, s_cfg, f_cfg))
    return warm, ds_cfg, per_target


def _eval_config(cfg: PipelineConfig, task: str, where: str) -> PipelineEvalConfig:
    """The eval section as a config (model and data_dir from the top level unless it sets them)."""
    return from_dict(PipelineEvalConfig, {"model": cfg.model, "task": f"loss:{task}",
                                          "data_dir": cfg.data_dir, **_section(cfg, "eval", where)},
                     where=f"{where}: eval")


def run_pipeline(cfg: PipelineConfig | dict[str, Any], *, where: str = "config",
                 only: list[str] | None = None) -> dict:
    """Run the stages (``only`` these, if given) in order; returns each stage's result by name."""
    from .datastore.build import run_datastore, run_targets
    from .select_stage import run_select
    from .training.finetune import run_finetune
    from .training.warmup import run_warmup

    if only:
        bad = sorted(set(only) - set(SECTIONS))
        if bad:
            raise UserError(f"--only: unknown stage(s) {', '.join(bad)}; stages are {', '.join(SECTIONS)}")
    wanted = set(only or SECTIONS)
    cfg = pipeline_config(cfg, where)
    run = Path(cfg.run_dir)
    warm, ds_cfg, per_target = _stage_configs(cfg, where)
    results: dict[str, Any] = {}
    if "warmup" in wanted:
        results["warmup"] = str(run_warmup(warm))
    if "datastore" in wanted:
        results["datastore"] = str(run_datastore(ds_cfg))
    for tsec, (name, t_cfg, s_cfg, f_cfg) in zip(cfg.targets, per_target):
        if "targets" in wanted:
            results[f"targets/{name}"] = str(run_targets(t_cfg))
        if "select" in wanted:
            results[f"select/{name}"] = run_select(s_cfg)
        if f_cfg is not None and "train" in wanted:
            results[f"train/{name}"] = str(run_finetune(f_cfg))
        if cfg.eval is not None and "eval" in wanted:
            ev = _eval_config(cfg, str(tsec["task"]), where)
            results[f"eval/{name}"] = _evaluate(ev, run / "eval" / name, f_cfg)
    if cfg.dynamic_train is not None and "dynamic_train" in wanted:
        from .dynamic.stage import run_dynamic_train
        d_cfg = _dynamic_config(cfg, where)
        results[f"dynamic_train/{task_name(d_cfg.task)}"] = str(run_dynamic_train(d_cfg))
    if cfg.predict is not None and "predict" in wanted:
        from .predict import run_predict
        p_cfg = _predict_config(cfg, where)
        run_predict(p_cfg)
        results[f"predict/{task_name(p_cfg.task)}"] = str(Path(p_cfg.output_dir) / "selection")
    return results


def _evaluate(ev: PipelineEvalConfig, out_dir: Path, f_cfg) -> dict:
    """Target metrics of the model before training and (if trained) after: the LESS-T model is
    ``train.model`` when given, else the selection model."""
    from .evaluation.run import run_eval
    base_model = f_cfg.model if f_cfg is not None else ev.model
    models = {"before": (base_model, None)}
    if f_cfg is not None and Path(f_cfg.output_dir).is_dir():
        lora = f_cfg.method == "lora" and not f_cfg.merge_lora
        models["after"] = (base_model, f_cfg.output_dir) if lora else (f_cfg.output_dir, None)
    options = {k: v for k, v in to_dict(ev).items() if k != "tasks"}
    out: dict[str, Any] = {}
    for label, (model, adapter) in models.items():
        for t in ev.tasks or [ev.task]:
            config = EvalConfig(**{**options, "model": model, "adapter": adapter, "task": t,
                                   "output_dir": str(out_dir / label)})
            res = run_eval(config)
            out[f"{label}/{t}"] = res.get("headline", res.get("average"))
    log.info("evaluation of %s: %s", out_dir.name, out)
    return out


def run_pipeline_file(path: str | Path, only: list[str] | None = None) -> dict:
    return run_pipeline(load_pipeline_config(path), where=str(path), only=only)
