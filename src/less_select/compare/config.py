"""The options of ``compare`` (:class:`CompareConfig`) and how they become each stage's options.

The nested sections (``warmup``, ``datastore``, ``targets``, ``select``, ``train``, ``eval``) take
the stage configs' own field names, nothing else; ``--set SECTION.FIELD=VALUE`` fills the same fields
from the command line. A few compare-wide options fill fields of several sections (``max_seq_length``,
``target_max_seq_length``, ``seed``, ``lenient``, ``device``, ``dtype``); giving such a field both ways with different
values is an error. The fields compare connects itself (models, pool files, target, budget, paths)
are refused in the sections where the stage configs are built (``run.py``, :func:`wire`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..configs import from_dict, option, positive, shared, validate
from ..errors import UserError
from ..selection import BudgetConfig

DEFAULT_METHODS = ("less", "random", "bm25", "dsir", "rds", "rds_plus")
SECTIONS = ("warmup", "datastore", "targets", "select", "train", "eval")
BASE_ROW, FULL_ROW = "base", "full"


@dataclass
class CompareConfig(BudgetConfig):
    """Run LESS and the baselines on one pool and target at the same budget, train on each selection
    with the same settings, evaluate, and write a report (report/comparison.md and .json)."""

    config: str = option("", help="YAML file of compare options (nested sections included); options "
                                  "given on the command line override it")
    model: str = option("", help="selection model (LESS warmup/gradients, RDS embeddings): hub id or "
                                 "local folder")
    train_model: str = option("", help="model trained on each selection (default: model; a different "
                                       "one is LESS-T)")
    data: list[str] = option(factory=list, help="pool files (JSONL/JSON/Parquet, optionally .gz)")
    task: str = option("", help="target: bbh, mmlu, tydiqa (LESS validation sets, need data_dir) or a "
                                "file of target examples")
    data_dir: str = shared("data_dir")
    output_dir: str = option("", help="comparison folder (see less_select.compare for its layout)")
    methods: list[str] = option(factory=lambda: list(DEFAULT_METHODS),
                                help="selection methods: less, less_robust (the robust preset, "
                                     "presets.py), predict (influence prediction), dynamic (re-selection "
                                     "while training) and any of random, bm25, dsir, rds, rds_plus")
    include_full: bool = option(False, help="also train on the whole pool (row 'full')")
    include_base: bool = option(True, help="also evaluate the untrained train_model (row 'base')")
    max_examples: int = shared("max_examples")  # capped once, in <output_dir>/pool/, for every method
    lenient: bool = shared("lenient")
    seed: int | None = shared("seed", unset=True)
    max_seq_length: int | None = shared("max_seq_length", unset=True)
    device: str | None = shared("device", unset=True)
    dtype: str | None = shared("dtype", unset=True)
    target_max_seq_length: int | None = option(
        None, help="truncation of target examples for the target features and the target loss "
                   "(default: the datastore's for targets, 2048 for the loss)", check=positive)
    eval_tasks: list[str] = option(factory=list, help="evaluation tasks (default: loss:<task>, the "
                                                      "target-set loss); e.g. loss:bbh bbh")
    set: list[str] = option(factory=list, help="stage options as SECTION.FIELD=VALUE (a YAML value), "
                                               "e.g. train.epochs=2 eval.max_new_tokens=20; the "
                                               "fields are the stage configs' own")
    warmup: dict[str, Any] = option(factory=dict, cli=False, help="WarmupConfig options (YAML/Python)")
    datastore: dict[str, Any] = option(factory=dict, cli=False, help="DatastoreConfig options "
                                                                     "(YAML/Python)")
    targets: dict[str, Any] = option(factory=dict, cli=False, help="TargetsConfig options (YAML/Python)")
    select: dict[str, Any] = option(factory=dict, cli=False, help="SelectConfig options other than "
                                                                  "the budget (YAML/Python)")
    train: dict[str, Any] = option(factory=dict, cli=False, help="FinetuneConfig options, the same "
                                                                 "for every method (YAML/Python)")
    eval: dict[str, Any] = option(factory=dict, cli=False, help="EvalConfig options (YAML/Python)")
    baselines: dict[str, Any] = option(factory=dict, cli=False, help="per-method options of the "
                                                                     "baselines, predict and dynamic, e.g. "
                                                                     "{bm25: {k1: 1.2}, predict: "
                                                                     "{mode: predicted}}")


def load_compare_config(config: CompareConfig | dict) -> CompareConfig:
    """A validated config. A ``config`` YAML file is the base: a dict's other keys override it; of a
    ``CompareConfig`` (built in Python, where "given" cannot be told from "default") the fields that
    differ from the defaults do."""
    if isinstance(config, dict):
        config = _from_dict_with_file(config)
    else:
        validate(config)
        if config.config:
            defaults = CompareConfig()
            given = {f.name: getattr(config, f.name) for f in dataclasses.fields(CompareConfig)
                     if getattr(config, f.name) != getattr(defaults, f.name)}
            config = _from_dict_with_file(given)
    for key in ("model", "task", "output_dir"):
        if not getattr(config, key):
            raise UserError(f"compare: '{key}' is required")
    if not config.data:
        raise UserError("compare: 'data' (pool files) is required")
    from ..data.hf_datasets import is_dataset_source
    for f in config.data:
        if not Path(f).is_file() and not is_dataset_source(f):  # a file, datasets folder or hf: id
            raise UserError(f"{f}: pool file not found")
    for name in (*SECTIONS, "baselines"):
        sec = getattr(config, name)
        if not isinstance(sec, dict):
            raise UserError(f"compare: section '{name}' must be a mapping, got {type(sec).__name__}")
    from .methods import check_methods
    check_methods(config)
    return dataclasses.replace(config, set=[], **fold_set_options(config))


def _from_dict_with_file(data: dict) -> CompareConfig:
    data = dict(data)
    path = data.pop("config", "") or ""
    if not path:
        return from_dict(CompareConfig, data, where="compare")
    from ..configs import config_file_options
    return from_dict(CompareConfig, {**config_file_options(path), **data}, where=str(path))


def fold_set_options(config: CompareConfig) -> dict[str, dict]:
    """The sections with every ``SECTION.FIELD=VALUE`` of ``set`` folded in."""
    sections = {name: dict(getattr(config, name)) for name in SECTIONS}
    for item in config.set:
        key, sep, text = item.partition("=")
        section, dot, field = key.partition(".")
        if not (sep and dot and field) or section not in SECTIONS:
            raise UserError(f"compare: --set {item!r}: use SECTION.FIELD=VALUE with SECTION one of "
                            f"{', '.join(SECTIONS)}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise UserError(f"compare: --set {item!r}: {text!r} is not a YAML value") from None
        if field in sections[section] and sections[section][field] != value:
            raise UserError(f"compare: {section}.{field} is given twice ({sections[section][field]!r} "
                            f"and --set {item}); give it once")
        sections[section][field] = value
    return sections


def _merge(section: str, own: dict, wide: dict[str, tuple[str, Any]],
           defaults: dict[str, Any] | None = None) -> dict:
    """A section's options plus the compare-wide options that fill its fields (``wide``: field ->
    (compare option, value or None)); a field given both ways with different values is an error."""
    out = dict(defaults or {})
    out.update(own)
    for key, (name, value) in wide.items():
        if value is None:
            continue
        if key in own and own[key] != value:
            raise UserError(f"compare: {section}.{key} ({own[key]!r}) and {name} ({value!r}) set the "
                            f"same option; give it once")
        out[key] = value
    return out


def stage_options(config: CompareConfig) -> dict[str, dict]:
    """The options of every stage with the compare-wide options folded in (recorded in the report)."""
    c = config
    msl = ("max_seq_length", c.max_seq_length)
    target_msl = ("target_max_seq_length", c.target_max_seq_length)
    lenient = {"lenient": True} if c.lenient else {}
    seed = {} if c.seed is None else {"seed": c.seed}  # a default: the section's own seed wins
    model = {"device": ("device", c.device), "dtype": ("dtype", c.dtype)}  # every model-loading stage
    return {
        "warmup": _merge("warmup", c.warmup, {"max_seq_length": msl, **model}, {**seed, **lenient}),
        "datastore": _merge("datastore", c.datastore, {"max_seq_length": msl, **model}, lenient),
        "targets": _merge("targets", c.targets, {"max_seq_length": target_msl, **model}),
        "select": dict(c.select),
        "train": _merge("train", c.train, {"max_seq_length": msl, **model}, {**seed, **lenient}),
        "eval": _merge("eval", c.eval, {"max_seq_length": target_msl, **model}),
    }


def wire(section: str, options: dict, connections: dict[str, Any]) -> dict:
    """``options`` of one section with the fields compare connects itself (``connections``) added;
    a section that sets one of them is refused, naming compare's own option for it."""
    clash = sorted(set(options) & set(connections))
    if clash:
        raise UserError(f"compare: {section}.{clash[0]} is set by compare itself (from model, "
                        f"train_model, data, task, data_dir, output_dir, percentage, top_k or "
                        f"max_examples); remove it from the '{section}' section")
    return {**options, **connections}


def default_eval_tasks(task: str) -> list[str]:
    return [f"loss:{task}"]
