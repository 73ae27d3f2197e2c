"""Every stage config: documented fields, dict round trip, CLI defaults equal dataclass defaults."""

import dataclasses

import pytest

from less_select.cli import STAGES, build_parser, config_class
from less_select.configs import _unwrap_optional, from_dict, from_namespace, to_dict
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
    from less_select.datastore.build import DatastoreConfig
    with pytest.raises(UserError, match="projecter"):
        from_dict(DatastoreConfig, {"projecter": "sparse"})
    with pytest.raises(UserError, match=r"config\.dims\[0\]: expected int"):
        from_dict(DatastoreConfig, {"dims": ["big"]})
    with pytest.raises(UserError, match="template"):
        from_dict(DatastoreConfig, {"template": "jinja"})


def _option_dataclasses() -> list[type]:
    """Every dataclass in the package whose fields are documented options (stage configs, their
    bases and the baselines' method configs)."""
    import importlib
    import pkgutil

    import less_select
    found = {}
    for info in pkgutil.walk_packages(less_select.__path__, "less_select."):
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == mod.__name__ \
                    and any("help" in f.metadata for f in dataclasses.fields(obj)):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_shared_options_are_defined_once_with_one_type():
    """An option several stages take comes from configs.SHARED (one default and meaning), never
    redeclared by hand, and has the same type everywhere."""
    import typing

    from less_select.configs import SHARED
    classes = _option_dataclasses()
    assert len(classes) > 15
    types_seen: dict[str, dict[str, str]] = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in SHARED:
                continue
            assert f.metadata.get("shared") == f.name, \
                f"{cls.__name__}.{f.name} redeclares a shared option: use configs.shared({f.name!r})"
            tp, optional = _unwrap_optional(hints[f.name])
            if f.default is None and optional:  # shared(name, unset=True): handed on to the stages
                assert f.metadata["help"].startswith(SHARED[f.name].help)
            else:
                assert f.default == SHARED[f.name].default and not optional, f"{cls.__name__}.{f.name}"
            types_seen.setdefault(f.name, {})[cls.__name__] = str(tp)
    for name, by_class in types_seen.items():
        assert len(set(by_class.values())) == 1, f"{name} has several types: {by_class}"
    assert {"max_seq_length", "template", "seed", "max_tokens_per_batch", "max_examples"} <= set(types_seen)


def test_a_command_line_value_equal_to_the_default_overrides_the_config_file(tmp_path):
    """compare --config FILE: any flag given wins over the file, also one equal to the default."""
    from less_select.compare import CompareConfig
    path = tmp_path / "compare.yaml"
    path.write_text("max_examples: 7\nlenient: true\nmethods: [random]\n")
    default = CompareConfig()
    args = ["compare", "--config", str(path), "--max-examples", str(default.max_examples), "--no-lenient"]
    cfg = from_namespace(CompareConfig, build_parser(args).parse_args(args))
    assert (cfg.max_examples, cfg.lenient) == (default.max_examples, default.lenient)
    assert cfg.methods == ["random"] and cfg.config == ""  # the file's other options, merged once
    args = ["compare", "--config", str(path)]
    cfg = from_namespace(CompareConfig, build_parser(args).parse_args(args))
    assert (cfg.max_examples, cfg.lenient) == (7, True)


def test_config_file_errors_name_the_file(tmp_path):
    from less_select.compare import CompareConfig
    path = tmp_path / "compare.yaml"
    path.write_text("seeds: 5\n")
    args = ["compare", "--config", str(path)]
    with pytest.raises(UserError, match=rf"{path.name}: unknown option\(s\) seeds"):
        from_namespace(CompareConfig, build_parser(args).parse_args(args))
    path.write_text("seed: 1\nseed: 2\n")
    with pytest.raises(UserError, match="given twice"):
        from_namespace(CompareConfig, build_parser(args).parse_args(args))


def test_required_option_is_named():
    @dataclasses.dataclass
    class C:
        path: str = dataclasses.field(metadata={"help": "x"})
    with pytest.raises(UserError, match="config: 'path' is required"):
        from_dict(C, {})
