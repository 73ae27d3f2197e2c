"""``less-select run CONFIG.yaml``: the stages in order over one run folder.

Relative paths are relative to the current directory. The YAML holds shared keys (``run_dir``, ``model``, ``data``) and one section per stage whose keys
are exactly that stage's config fields (``warmup``, ``datastore``, ``targets``, ``select``,
``train``, ``eval``). The pipeline fills in the paths that connect the stages::

    <run_dir>/warmup/checkpoint-*        <run_dir>/datastore
    <run_dir>/targets/<task>             <run_dir>/selected/<task>
    <run_dir>/train/<task>               <run_dir>/eval/<task>

Each stage skips itself when its output exists with the same settings and refuses (naming the
setting) when it exists with other ones; ``--overwrite`` in a section reruns it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from .configs import from_dict
from .errors import UserError

log = logging.getLogger(__name__)

SECTIONS = ("warmup", "datastore", "targets", "select", "train", "eval")
TOP_LEVEL = {"run_dir", "model", "data", "data_dir", *SECTIONS}


def task_name(task: str) -> str:
    return Path(task).name.split(".")[0] if ("/" in task or "." in task) else task


def load_pipeline_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such pipeline config")
    try:
        cfg = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise UserError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(cfg, dict):
        raise UserError(f"{p}: the pipeline config must be a mapping")
    unknown = sorted(set(cfg) - TOP_LEVEL)
    if unknown:
        raise UserError(f"{p}: unknown top-level key(s) {', '.join(unknown)}; "
                        f"valid keys are {', '.join(sorted(TOP_LEVEL))}")
    for key in ("run_dir", "model", "data"):
        if not cfg.get(key):
            raise UserError(f"{p}: '{key}' is required")
    if isinstance(cfg["data"], str):
        cfg["data"] = [cfg["data"]]
    return cfg


def _section(cfg: dict, name: str, where: str) -> dict:
    sec = cfg.get(name) or {}
    if not isinstance(sec, dict):
        raise UserError(f"{where}: section '{name}' must be a mapping")
    return dict(sec)


def run_pipeline(cfg: dict[str, Any], *, where: str = "config", only: list[str] | None = None) -> dict:
    from .gradients.builder import DatastoreConfig, TargetsConfig, run_datastore, run_targets
    from .selection import SelectConfig, run_select
    from .training.warmup import WarmupConfig, run_warmup

    if only:
        bad = sorted(set(only) - set(SECTIONS))
        if bad:
            raise UserError(f"--only: unknown stage(s) {', '.join(bad)}; stages are {', '.join(SECTIONS)}")
    wanted = set(only or SECTIONS)
    run = Path(cfg["run_dir"])
    results: dict[str, Any] = {}

    warm = from_dict(WarmupConfig, {"model": cfg["model"], "pool_files": cfg["data"],
                                    "output_dir": str(run / "warmup"), **_section(cfg, "warmup", where)},
                     where=f"{where}: warmup")
    if "warmup" in wanted:
        results["warmup"] = str(run_warmup(warm))

    ds_cfg = from_dict(DatastoreConfig, {"model": cfg["model"], "data": cfg["data"],
                                         "checkpoints": [str(run / "warmup")],
                                         "output_dir": str(run / "datastore"),
                                         **_section(cfg, "datastore", where)}, where=f"{where}: datastore")
    if "datastore" in wanted:
        results["datastore"] = str(run_datastore(ds_cfg))

    targets = cfg.get("targets") or []
    if isinstance(targets, dict):
        targets = [targets]
    for i, tsec in enumerate(targets):
        if not isinstance(tsec, dict) or "task" not in tsec:
            raise UserError(f"{where}: targets[{i}] must be a mapping with a 'task'")
        name = task_name(str(tsec["task"]))
        t_cfg = from_dict(TargetsConfig, {"datastore": ds_cfg.output_dir, "data_dir": cfg.get("data_dir", ""),
                                          "output_dir": str(run / "targets" / name), **tsec},
                          where=f"{where}: targets[{i}]")
        if "targets" in wanted:
            results[f"targets/{name}"] = str(run_targets(t_cfg))
        s_cfg = from_dict(SelectConfig, {"datastore": ds_cfg.output_dir, "targets": t_cfg.output_dir,
                                         "output_dir": str(run / "selected" / name),
                                         **_section(cfg, "select", where)}, where=f"{where}: select")
        if "select" in wanted:
            results[f"select/{name}"] = run_select(s_cfg)
        selected_file = str(Path(s_cfg.output_dir) / f"{s_cfg.file_stem}.jsonl")
        train_sec = _section(cfg, "train", where)
        trained = None
        if cfg.get("train") is not None and "train" in wanted:
            from .training.finetune import FinetuneConfig, run_finetune
            f_cfg = from_dict(FinetuneConfig, {"model": cfg["model"], "train_files": [selected_file],
                                               "output_dir": str(run / "train" / name), **train_sec},
                              where=f"{where}: train")
            results[f"train/{name}"] = str(run_finetune(f_cfg))
        if cfg.get("train") is not None and (run / "train" / name).is_dir():
            trained = run / "train" / name
        if cfg.get("eval") is not None and "eval" in wanted:
            results[f"eval/{name}"] = _evaluate(cfg, tsec, name, run, train_sec, trained, where)
    return results


def _evaluate(cfg, tsec, name, run, train_sec, trained, where) -> dict:
    """Target metrics of the model before training and (if trained) after: the LESS-T model is
    ``train.model`` when given, else the selection model."""
    from .evaluation.run import EvalConfig, run_eval
    sec = _section(cfg, "eval", where)
    task = str(tsec["task"])
    default_task = f"loss:{task}"
    tasks = sec.pop("tasks", None) or [default_task]
    if isinstance(tasks, str):
        tasks = [tasks]
    base_model = train_sec.get("model", cfg["model"])
    models = {"before": (base_model, None)}
    if trained is not None:
        lora = train_sec.get("method", "lora") == "lora" and not train_sec.get("merge_lora", False)
        models["after"] = (base_model, str(trained)) if lora else (str(trained), None)
    out: dict[str, Any] = {}
    for label, (model, adapter) in models.items():
        for t in tasks:
            ev = {"model": model, "adapter": adapter, "task": t, "data_dir": cfg.get("data_dir") or None,
                  "output_dir": str(run / "eval" / name / label), **sec}
            res = run_eval(from_dict(EvalConfig, ev, where=f"{where}: eval"))
            out[f"{label}/{t}"] = res.get("headline", res.get("average"))
    log.info("evaluation of %s: %s", name, out)
    return out


def run_pipeline_file(path: str | Path, only: list[str] | None = None) -> dict:
    return run_pipeline(load_pipeline_config(path), where=str(path), only=only)
