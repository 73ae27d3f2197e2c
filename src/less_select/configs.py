"""Helpers shared by every stage's config dataclass: documented fields, the options several stages
share, dict/YAML round trips, argparse, and checking values.

Each stage owns one small dataclass (``WarmupConfig`` in ``training/warmup.py`` and so on). Fields are
declared with :func:`option`, whose ``help`` is the single docstring used by the CLI, the YAML
pipeline config and the Python API, and whose ``check`` (a :class:`Bounds`, e.g. :data:`positive`)
is the single range rule the three share: :func:`from_dict` and :func:`from_namespace` apply it, and
each stage's run function calls :func:`validate` so configs built directly in Python are checked too.
Every float option must be finite. An option several stages take (``max_seq_length``, ``seed``, ...)
is defined once, in :data:`SHARED`, and declared with :func:`shared`: one name, meaning and default.
YAML files are read by :func:`read_yaml` (refusing duplicate keys).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from .errors import UserError


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The allowed range of a numeric option (each element of a list option); ``None`` values pass."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False   # True: value > low, False: value >= low
    high_open: bool = False  # True: value < high, False: value <= high

    def describe(self) -> str:
        lo = None if self.low is None else f"{'>' if self.low_open else '>='} {self.low:g}"
        hi = None if self.high is None else f"{'<' if self.high_open else '<='} {self.high:g}"
        if lo and hi:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return lo or hi or "any number"

    def ok(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return False
        return True


positive = Bounds(low=0, low_open=True)                 # counts, sizes, learning rates
non_negative = Bounds(low=0)                            # seeds, "0 means all/none" options
fraction = Bounds(low=0, high=1, low_open=True)         # (0, 1]: a share of the pool
unit_interval = Bounds(low=0, high=1, high_open=True)   # [0, 1): Adam betas, dropout, warmup ratio


def at_least(low: float) -> Bounds:
    return Bounds(low=low)


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = None,
           cli: bool = True, check: Bounds | None = None):
    """A dataclass field carrying its help text (shown by ``--help`` and in the docs) and, for
    numbers, the range ``check`` every value must satisfy."""
    meta = {"help": help, "cli": cli, "check": check}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# --------------------------------------------------------------------------- options of several stages

@dataclasses.dataclass(frozen=True)
class Shared:
    """An option several stages take, with its one default, meaning and range."""

    default: Any
    help: str
    check: Bounds | None = None


# Every stage that takes one of these declares it as ``name: type = shared("name")`` (tests/
# test_configs.py checks that no stage redeclares one by hand and that the types agree).
SHARED: dict[str, Shared] = {
    "max_seq_length": Shared(2048, "truncate encoded examples to this many tokens", positive),
    "template": Shared("auto", (
        "chat encoding of conversation records: auto (the tokenizer's chat template if it has one, "
        "else tulu), tulu (LESS's Tulu format, ends in </s> and a newline), tulu_stripped (no final "
        "newline; stores built before tulu-v2), chat_template (prompt/completion records stay raw "
        "text, as LESS encodes its targets) or chat_template_all (prompt/completion records through "
        "the chat template too, as a user turn and an assistant turn)")),
    "max_examples": Shared(0, "use only the first N examples of each data file (0: all)", non_negative),
    "max_tokens_per_batch": Shared(8192, "token budget of a batch (examples x longest sequence); "
                                         "bounds the memory of one forward/backward", positive),
    "max_batch_size": Shared(64, "most examples in one batch", positive),
    "seed": Shared(0, "seed of the stage's random choices (the same seed gives the same output)",
                   non_negative),
    "lenient": Shared(False, "skip (and count) malformed records instead of stopping"),
    "dtype": Shared("auto", "model dtype: auto (bfloat16 on a GPU that supports it, else float32), "
                            "float32, bfloat16, float16 or float64"),
    "device": Shared("auto", "where the model runs: auto (this process's GPU, LOCAL_RANK, when CUDA "
                             "is available, else cpu), cpu, cuda or cuda:N"),
    "data_dir": Shared("", "LESS data folder holding eval/ (needed by the built-in tasks bbh, mmlu, "
                           "tydiqa)"),
    "overwrite": Shared(False, "rerun even if the output exists with other settings (the old output "
                               "is replaced only once the new one is complete)"),
    # the LESS features: pool and targets (and dynamic selection) must use the same ones
    "projector": Shared("sparse", "projection kind: sparse (sparse JL / CountSketch, fast), rademacher "
                                  "(dense, the paper's) or identity (no projection; exact, small models "
                                  "only)"),
    "projection_seed": Shared(0, "seed of the projection; pool and targets must share it", non_negative),
    "adam_variant": Shared("less", "Adam feature formula: less (the original: no bias correction, eps "
                                   "inside the root), bias_corrected or eps_outside"),
    "dim": Shared(0, "projection dimension to score with (0: the store's first)", non_negative),
    "lowercase": Shared(True, "lowercase texts before tokenizing"),
}


def shared(name: str, *, unset: bool = False):
    """The dataclass field of the shared option ``name`` (see :data:`SHARED`).

    ``unset=True`` is for a config that hands the option on to other stages (``compare``): its
    default is None, "leave each stage's own value", and its type is ``Optional``."""
    s = SHARED[name]
    help_text = s.help + (f" (unset: each stage's own, {s.default})" if unset else "")
    return dataclasses.field(default=None if unset else s.default,
                             metadata={"help": help_text, "cli": True, "check": s.check, "shared": name})


def _resolved_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp):
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _coerce(value: Any, tp: Any, where: str) -> Any:
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise UserError(f"{where}: a value is required (got null)")
    origin = get_origin(inner)
    if origin is Literal:
        choices = get_args(inner)
        if value not in choices:
            raise UserError(f"{where}: {value!r} is not one of {', '.join(map(repr, choices))}")
        return value
    if origin is dict or inner is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {type(value).__name__}")
        return value
    if origin in (list, tuple):
        (elem,) = get_args(inner)[:1]
        if isinstance(value, (str, int, float)) or (isinstance(value, dict) and (
                elem is dict or get_origin(elem) is dict)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {type(value).__name__}")
        return [_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value)]
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
            return value.lower() in ("true", "1", "yes")
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if inner is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if not isinstance(value, str):  # YAML's 7, [a, b] or yes are not a name or a path
            raise UserError(f"{where}: expected a string, got {value!r}")
        return value
    if inner in (int, float):
        try:
            if inner is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            if inner is not str and isinstance(value, (list, tuple, dict, bool)):
                raise TypeError  # YAML's yes/no are booleans, not the numbers 1 and 0
            out = inner(value)
        except (TypeError, ValueError, OverflowError):
            raise UserError(f"{where}: expected {inner.__name__}, got {value!r}") from None
        if inner is float and not math.isfinite(out):
            raise UserError(f"{where}: must be a finite number, got {value!r}")
        return out
    return value


def _label(where: str, name: str) -> str:
    """How an error names a field: the flag on the command line, ``where.name`` elsewhere."""
    if where == "command line":
        return "--" + name.replace("_", "-")
    return f"{where}: {name}" if where.endswith((".yaml", ".yml")) else f"{where}.{name}"


def _check_bounds(value: Any, bounds: Bounds, label: str) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for i, v in enumerate(values):
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not bounds.ok(v):
            at = f"{label}[{i}]" if isinstance(value, (list, tuple)) else label
            raise UserError(f"{at}: must be {bounds.describe()}, got {v!r}")


def validate(config, where: str | None = None):
    """Check every field of a config dataclass against its declared type and range; returns it.

    Run functions call this first, so a config built directly in Python is held to the same rules
    as one from the command line or a YAML file (errors name ``where.field``)."""
    where = where or type(config).__name__
    hints = _resolved_hints(type(config))
    for f in dataclasses.fields(config):
        label = _label(where, f.name)
        value = _coerce(getattr(config, f.name), hints[f.name], label)
        bounds = f.metadata.get("check")
        if bounds is not None:
            _check_bounds(value, bounds, label)
        if f.metadata.get("shared") == "device" and value is not None:
            # refused before the stage reads or writes anything (e.g. cuda on a machine without one)
            from .modeling import resolve_device
            resolve_device(value, label)
    return config


def from_dict(cls, data: dict[str, Any] | None, where: str = "config"):
    """Build ``cls`` from a mapping, rejecting unknown keys and ill-typed values by name."""
    data = dict(data or {})
    hints = _resolved_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown option(s) {', '.join(unknown)}; "
                        f"valid options are {', '.join(sorted(names))}")
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise UserError(f"{where}: '{missing[0]}' is required")
    kwargs = {k: _coerce(v, hints[k], _label(where, k)) for k, v in data.items()}
    try:
        config = cls(**kwargs)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None
    return validate(config, where)


def to_dict(config) -> dict[str, Any]:
    """Plain mapping of a config (lists, not tuples), suitable for YAML/JSON."""
    return dataclasses.asdict(config)


def add_arguments(parser: argparse.ArgumentParser, cls, *, skip: tuple[str, ...] = ()) -> None:
    """Add one ``--flag`` per field of ``cls`` with the field's help and default."""
    hints = _resolved_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for f in dataclasses.fields(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        tp, _ = _unwrap_optional(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        help_text = f.metadata.get("help", "")
        if not required:
            help_text += f" (default: {default})"
        kw: dict[str, Any] = {"dest": f.name, "help": help_text, "default": argparse.SUPPRESS}
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if get_origin(tp) is Literal:
            kw["choices"] = list(get_args(tp))
        elif get_origin(tp) in (list, tuple):
            kw["nargs"] = "+"
            elem = get_args(tp)[0]
            kw["type"] = elem if elem in (int, float, str) else str
        elif tp in (int, float, str):
            kw["type"] = tp
        if required:
            kw["required"] = True
        group.add_argument(flag, **kw)


def from_namespace(cls, ns: argparse.Namespace, **overrides):
    """Build ``cls`` from the flags :func:`add_arguments` added (unset flags keep their defaults).

    A config with a ``config`` option (a YAML file of its options) takes that file as the base and
    every flag given on the command line over it, even one equal to the default: argparse records
    only the flags that were given (``default=SUPPRESS``), so "given" never means "not default"."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(ns).items() if k in names}
    values.update(overrides)
    if CONFIG_FILE in names and values.get(CONFIG_FILE):
        path = values.pop(CONFIG_FILE)
        given = {k: _coerce(v, _resolved_hints(cls)[k], _label("command line", k)) for k, v in values.items()}
        return from_dict(cls, {**config_file_options(path), **given}, where=str(path))
    return from_dict(cls, values, where="command line")


CONFIG_FILE = "config"  # the option naming a YAML file of a config's other options


def config_file_options(path: str | Path) -> dict[str, Any]:
    """The options in a config's YAML file (a mapping; its own ``config`` key is not followed)."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: the config file must be a mapping of options")
    data.pop(CONFIG_FILE, None)
    return data


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


def describe(cls) -> list[tuple[str, str, str]]:
    """(name, default, help) rows, for docs."""
    rows = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append((f.name, default, f.metadata.get("help", "")))
    return rows
