"""Generated out-of-range and ill-typed option values for every stage, through the command line, the
pipeline YAML and the Python API: each is refused in one line naming the option, before anything is
read or written. The cases come from the ranges the options declare (``configs.option(check=...)``),
so a new option with a range is covered without touching this file."""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest
import yaml

from less_select.cli import STAGES, config_class
from less_select.configs import Bounds, _unwrap_optional
from less_select.errors import UserError

from .helpers import assert_refused, assert_user_error, run_cli


def bad_values(bounds: Bounds, is_float: bool) -> list:
    """Values just outside ``bounds`` (and non-finite ones for floats)."""
    out = []
    if bounds.low is not None:
        out += [bounds.low] if bounds.low_open else []
        out.append(bounds.low - 1)
    if bounds.high is not None:
        out.append(bounds.high if bounds.high_open else bounds.high + 1)
    if is_float:
        out += [math.nan, math.inf, -math.inf]
    return [int(v) if not is_float and math.isfinite(v) else v for v in out]


def _elem_type(cls, name: str):
    tp, _ = _unwrap_optional(typing.get_type_hints(cls)[name])
    if typing.get_origin(tp) in (list, tuple):
        return typing.get_args(tp)[0], True
    return tp, False


def option_cases():
    """(command, field, value, is_list) for every declared range of every stage."""
    cases = []
    for command in STAGES:
        cls = config_class(command)
        for f in dataclasses.fields(cls):
            bounds = f.metadata.get("check")
            if bounds is None:
                continue
            elem, is_list = _elem_type(cls, f.name)
            for v in bad_values(bounds, elem is float):
                cases.append((command, f.name, v, is_list))
    return cases


CASES = option_cases()


def _required_args(cls) -> list[str]:
    args = []
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            args += ["--" + f.name.replace("_", "-"), "x"]
    return args


def _cli_value(v) -> str:
    return {math.inf: "inf", -math.inf: "-inf"}.get(v, "nan" if isinstance(v, float) and math.isnan(v) else str(v))


def test_the_suite_covers_every_stage_and_enough_cases():
    assert {c[0] for c in CASES} >= {"tiny-model", "warmup", "datastore", "targets", "select",
                                     "baseline", "train", "eval"}
    assert len(CASES) >= 200


@pytest.mark.parametrize("command,field,value,is_list", CASES,
                         ids=[f"{c}-{f}={_cli_value(v)}" for c, f, v, _ in CASES])
def test_command_line_refuses_out_of_range_value(command, field, value, is_list, tmp_path, monkeypatch,
                                                 capsys):
    monkeypatch.chdir(tmp_path)
    flag = "--" + field.replace("_", "-")
    args = [command, *_required_args(config_class(command)), f"{flag}={_cli_value(value)}"]
    rc, err = run_cli(args, capsys)
    assert_refused(rc, err, flag, "must be")
    assert list(tmp_path.iterdir()) == [], "a refused command wrote something"


NUMERIC = sorted({(c, f) for c, f, _, _ in CASES})


@pytest.mark.parametrize("command,field", NUMERIC, ids=[f"{c}-{f}" for c, f in NUMERIC])
def test_command_line_refuses_a_non_number(command, field, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    flag = "--" + field.replace("_", "-")
    rc, err = run_cli([command, *_required_args(config_class(command)), f"{flag}=lots"], capsys)
    assert_refused(rc, err, flag, "lots")
    assert list(tmp_path.iterdir()) == []


# pipeline YAML: section -> config class of that section
SECTION_CLASSES = {"warmup": "warmup", "datastore": "datastore", "targets": "targets",
                   "select": "select", "train": "train", "eval": "eval"}
YAML_CASES = [(sec, f, v) for sec, cmd in SECTION_CLASSES.items() for c, f, v, _ in CASES if c == cmd]


@pytest.mark.parametrize("section,field,value", YAML_CASES,
                         ids=[f"{s}-{f}={_cli_value(v)}" for s, f, v in YAML_CASES])
def test_pipeline_yaml_refuses_out_of_range_value_before_any_stage(section, field, value, tmp_path, capsys):
    elem, is_list = _elem_type(config_class(SECTION_CLASSES[section]), field)
    cfg = {"run_dir": str(tmp_path / "run"), "model": str(tmp_path / "model"),
           "data": [str(tmp_path / "pool.jsonl")], "targets": [{"task": str(tmp_path / "t.jsonl")}],
           "train": {}, "eval": {}}
    entry = {field: [value] if is_list else value}
    if section == "targets":
        cfg["targets"][0].update(entry)
    else:
        cfg[section] = entry
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, err = run_cli(["run", path], capsys)
    where = "targets[0]" if section == "targets" else section
    assert_refused(rc, err, str(path), f"{where}.{field}")
    assert not (tmp_path / "run").exists()


# Python API: configs built directly are checked by the run function before it does anything
RUNNERS = {
    "warmup": "less_select.training.warmup:run_warmup",
    "train": "less_select.training.finetune:run_finetune",
    "datastore": "less_select.datastore.build:run_datastore",
    "targets": "less_select.datastore.build:run_targets",
    "select": "less_select.select_stage:run_select",
    "baseline": "less_select.baselines.stage:run_baseline",
    "tiny-model": "less_select.demo.tiny_model:run_tiny_model",
    "eval": "less_select.evaluation.run:run_eval",
    "demo": "less_select.demo.run:run_demo",
    "compare": "less_select.compare:run_compare",
}
API_CASES = [(c, f, v, is_list) for c, f, v, is_list in CASES if c in RUNNERS]


@pytest.mark.parametrize("command,field,value,is_list", API_CASES,
                         ids=[f"{c}-{f}={_cli_value(v)}" for c, f, v, _ in API_CASES])
def test_python_api_refuses_out_of_range_value(command, field, value, is_list, tmp_path, monkeypatch):
    import importlib
    monkeypatch.chdir(tmp_path)
    cls = config_class(command)
    required = {f.name: (["x"] if "list" in str(f.type) else "x") for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    config = dataclasses.replace(cls(**required), **{field: [value] if is_list else value})
    mod, name = RUNNERS[command].split(":")
    with pytest.raises(UserError) as exc:
        getattr(importlib.import_module(mod), name)(config)
    assert_user_error(exc.value, f"{cls.__name__}.{field}", "must be")
    assert list(tmp_path.iterdir()) == []


def test_python_api_refuses_a_wrong_type():
    from less_select.configs import validate
    from less_select.datastore.build import DatastoreConfig
    with pytest.raises(UserError, match=r"DatastoreConfig\.chunk_size: expected int, got 'big'"):
        validate(DatastoreConfig(chunk_size="big"))
