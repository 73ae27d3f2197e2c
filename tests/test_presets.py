import pytest

from less_select.errors import UserError
from less_select.presets import PRESETS, preset_section


def test_preset_fills_unset_options_and_refuses_contradictions():
    assert preset_section("robust", "datastore", {"dims": [8]}, "cfg") == {"dims": [8], "loss_tokens": "sequence"}
    assert preset_section("robust", "select", {"subtask_rule": "balanced"}, "cfg")["subtask_rule"] == "balanced"
    assert preset_section(None, "select", {"percentage": 0.1}, "cfg") == {"percentage": 0.1}
    with pytest.raises(UserError, match="select.subtask_rule='max' contradicts preset 'robust'"):
        preset_section("robust", "select", {"subtask_rule": "max"}, "cfg")
    with pytest.raises(UserError, match="valid presets are faithful, robust"):
        preset_section("fast", "select", {}, "cfg")


def test_faithful_preset_is_the_defaults():
    from less_select.datastore.build import DatastoreConfig
    from less_select.select_stage import SelectConfig
    assert PRESETS["faithful"]["datastore"]["loss_tokens"] == DatastoreConfig().loss_tokens
    assert PRESETS["faithful"]["select"]["subtask_rule"] == SelectConfig().subtask_rule


def test_preset_names_are_the_presets():
    import typing

    from less_select.presets import PresetName
    assert typing.get_args(PresetName) == tuple(PRESETS)
