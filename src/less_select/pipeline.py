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
TOP_LEVEL = {"run_dir", "model", "data", "data_dir", "preset", *SECTIONS}  # preset: presets.py


DATA_SUFFIXES = (".gz", ".jsonl", ".json", ".parquet")


def task_name(task: str) -> str:
    """The folder name of a target task: a built-in task's name, or a file's name without its data
    suffixes and leading dots (``dir/.hidden.jsonl`` -> ``hidden``, ``a.v1.jsonl`` -> ``a.v1``)."""
    if "/" not in task and "." not in task:
        return task
    name = Path(task).name
    for suffix in DATA_SUFFIXES:
        name = name.removesuffix(suffix)
    name = name.lstrip(".")
    if not name or name in (".", ".."):
        raise UserError(f"target task {task!r} does not name a data file (or bbh, mmlu, tydiqa)")
    return name


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file (UTF-8, optional BOM); every problem is a one-line ``file:line: reason``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such config file")
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{p}: not UTF-8 text (byte {exc.start + 1}); save it as UTF-8") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise UserError(f"{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise UserError(f"{p}: YAML nested too deeply") from None


def load_pipeline_config(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    cfg = read_yaml(p)
    if cfg is None:
        cfg = {}
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
    for key in ("run_dir", "model", "data_dir"):
        if key in cfg and not isinstance(cfg[key], str):
            raise UserError(f"{p}: '{key}' must be a string, got {type(cfg[key]).__name__}")
    if not isinstance(cfg["data"], list) or not all(isinstance(f, str) for f in cfg["data"]):
        raise UserError(f"{p}: 'data' must be a file name or a list of file names")
    return cfg


def _section(cfg: dict, name: str, where: str) -> dict:
    from .presets import preset_section
    sec = cfg.get(name) or {}
    if not isinstance(sec, dict):
        raise UserError(f"{where}: section '{name}' must be a mapping")
    return preset_section(cfg.get("preset"), name, sec, where)


def _stage_configs(cfg: dict[str, Any], where: str) -> tuple[Any, Any, list[tuple]]:
    """Every stage's config, built (and so checked) before any stage runs: a bad value in a late
    section fails at once, not after hours of warmup. Returns (warmup, datastore,
    [(name, targets, select, train or None)])."""
    from .evaluation.run import EvalConfig
    from .datastore.build import DatastoreConfig, TargetsConfig
    from .select_stage import SelectConfig
    from .training.finetune import FinetuneConfig
    from .training.warmup import WarmupConfig

    run = Path(cfg["run_dir"])
    warm = from_dict(WarmupConfig, {"model": cfg["model"], "pool_files": cfg["data"],
                                    "output_dir": str(run / "warmup"), **_section(cfg, "warmup", where)},
                     where=f"{where}: warmup")
    ds_cfg = from_dict(DatastoreConfig, {"model": cfg["model"], "data": cfg["data"],
                                         "checkpoints": [str(run / "warmup")],
                                         "output_dir": str(run / "datastore"),
                                         **_section(cfg, "datastore", where)}, where=f"{where}: datastore")
    targets = cfg.get("targets") or []
    if isinstance(targets, dict):
        targets = [targets]
    if not isinstance(targets, list):
        raise UserError(f"{where}: 'targets' must be a list of mappings with a 'task'")
    for i, tsec in enumerate(targets):
        if not isinstance(tsec, dict) or "task" not in tsec:
            raise UserError(f"{where}: targets[{i}] must be a mapping with a 'task'")
    names = target_names([str(t["task"]) for t in targets], where)
    # checked here even without targets (then select/train never run, but a typo is still a typo)
    from_dict(SelectConfig, {"datastore": "-", "targets": "-", "output_dir": "-",
                             **_section(cfg, "select", where)}, where=f"{where}: select")
    if cfg.get("train") is not None:
        from_dict(FinetuneConfig, {"model": cfg["model"], "train_files": ["-"], "output_dir": "-",
                                   **_section(cfg, "train", where)}, where=f"{where}: train")
    if cfg.get("eval") is not None:  # checked here; built per model in _evaluate
        from_dict(EvalConfig, {"model": cfg["model"], "task": "loss:x",
                               **{k: v for k, v in _section(cfg, "eval", where).items() if k != "tasks"}},
                  where=f"{where}: eval")
    per_target = []
    for i, (tsec, name) in enumerate(zip(targets, names)):
        t_cfg = from_dict(TargetsConfig, {"datastore": ds_cfg.output_dir, "data_dir": cfg.get("data_dir", ""),
                                          "output_dir": str(run / "targets" / name), **tsec},
                          where=f"{where}: targets[{i}]")
        s_cfg = from_dict(SelectConfig, {"datastore": ds_cfg.output_dir, "targets": t_cfg.output_dir,
                                         "output_dir": str(run / "selected" / name),
                                         **_section(cfg, "select", where)}, where=f"{where}: select")
        f_cfg = None
        if cfg.get("train") is not None:
            selected_file = str(Path(s_cfg.output_dir) / f"{s_cfg.file_stem}.jsonl")
            f_cfg = from_dict(FinetuneConfig, {"model": cfg["model"], "train_files": [selected_file],
                                               "output_dir": str(run / "train" / name),
                                               **_section(cfg, "train", where)}, where=f"{where}: train")
        per_target.append((name, t_cfg, s_cfg, f_cfg))
    return warm, ds_cfg, per_target


def run_pipeline(cfg: dict[str, Any], *, where: str = "config", only: list[str] | None = None) -> dict:
    from .datastore.build import run_datastore, run_targets
    from .select_stage import run_select
    from .training.finetune import run_finetune
    from .training.warmup import run_warmup

    if only:
        bad = sorted(set(only) - set(SECTIONS))
        if bad:
            raise UserError(f"--only: unknown stage(s) {', '.join(bad)}; stages are {', '.join(SECTIONS)}")
    wanted = set(only or SECTIONS)
    run = Path(cfg["run_dir"])
    warm, ds_cfg, per_target = _stage_configs(cfg, where)
    results: dict[str, Any] = {}
    if "warmup" in wanted:
        results["warmup"] = str(run_warmup(warm))
    if "datastore" in wanted:
        results["datastore"] = str(run_datastore(ds_cfg))
    targets = cfg.get("targets") or []
    targets = [targets] if isinstance(targets, dict) else targets
    for tsec, (name, t_cfg, s_cfg, f_cfg) in zip(targets, per_target):
        if "targets" in wanted:
            results[f"targets/{name}"] = str(run_targets(t_cfg))
        if "select" in wanted:
            results[f"select/{name}"] = run_select(s_cfg)
        if f_cfg is not None and "train" in wanted:
            results[f"train/{name}"] = str(run_finetune(f_cfg))
        trained = Path(f_cfg.output_dir) if f_cfg is not None and Path(f_cfg.output_dir).is_dir() else None
        if cfg.get("eval") is not None and "eval" in wanted:
            results[f"eval/{name}"] = _evaluate(cfg, tsec, name, run, _section(cfg, "train", where),
                                                trained, where)
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
