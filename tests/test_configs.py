"""Every stage config: documented fields, dict round trip, CLI defaults equal dataclass defaults."""

import dataclasses

import pytest

from less_select.cli import STAGES, build_parser, config_class
from less_select.configs import from_dict, from_namespace, to_dict
from less_select.errors import UserError


@pytest.mark.parametrize("command", list(STAGES))
def test_stage_config_and_run_function_import(command):
    """Every command's config class and run function resolve (a stage that fails to import fails
    here, instead of silently dropping out of the tests below)."""
    import importlib
    for path in STAGES[command][1:]:
        mod_name, attr = path.rsplit(":", 1)
        assert callable(getattr(importlib.import_module(mod_name), attr)), path


@pytest.mark.parametrize("command", list(STAGES))
def test_every_field_documented_and_round_trips(command):
    cls = config_class(command)
    for f in dataclasses.fields(cls):
        assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"
    required = {f.name: "x" for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    for name in required:  # lists need a list value
        if "list" in str(cls.__dataclass_fields__[name].type):
            required[name] = ["x"]
    cfg = from_dict(cls, required)
    assert from_dict(cls, to_dict(cfg)) == cfg


@pytest.mark.parametrize("command", list(STAGES))
def test_cli_defaults_equal_dataclass_defaults(command):
    cls = config_class(command)
    args = [command]
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING \
                and f.metadata.get("cli", True):
            args += ["--" + f.name.replace("_", "-"), "x"]
    ns = build_parser(args).parse_args(args)
    from_cli = from_namespace(cls, ns)
    defaults = from_dict(cls, {k: getattr(from_cli, k) for k in vars(ns) if k in cls.__dataclass_fields__
                               and cls.__dataclass_fields__[k].default is dataclasses.MISSING
                               and cls.__dataclass_fields__[k].default_factory is dataclasses.MISSING})
    assert from_cli == defaults


def test_unknown_and_ill_typed_options_are_named():
    from less_select.gradients.builder import DatastoreConfig
    with pytest.raises(UserError, match="projecter"):
        from_dict(DatastoreConfig, {"projecter": "sparse"})
    with pytest.raises(UserError, match=r"config\.dims\[0\]: expected int"):
        from_dict(DatastoreConfig, {"dims": ["big"]})
    with pytest.raises(UserError, match="template"):
        from_dict(DatastoreConfig, {"template": "jinja"})
