"""Named presets: a set of stage options chosen together, by measurement (docs/quality.md).

- ``faithful``: LESS as in the paper (loss over completion tokens, max over subtasks).
- ``robust`` (recommended): the whole-sequence loss for the gradient features
  (``datastore.loss_tokens: sequence``; targets take it from the datastore) and round-robin over
  subtasks (``select.subtask_rule: balanced``). On the real-data quality benchmark it recovered
  the target tasks' examples when the targets' answer format differs from the pool's, where
  faithful LESS did not (README, "Selection quality").

A preset only fills options the config leaves unset; an explicit, different value for one of the
preset's options is refused, so a config never means two things.
"""

from __future__ import annotations

from typing import Any, Literal

from .errors import UserError

PresetName = Literal["faithful", "robust"]  # the keys of PRESETS (tests/test_presets.py checks)
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "faithful": {"datastore": {"loss_tokens": "completion"}, "select": {"subtask_rule": "max"}},
    "robust": {"datastore": {"loss_tokens": "sequence"}, "select": {"subtask_rule": "balanced"}},
}


def preset_section(preset: str | None, section: str, given: dict[str, Any], where: str) -> dict[str, Any]:
    """``given`` (a stage section's options) with the preset's options for that section filled in."""
    if not preset:
        return dict(given)
    if preset not in PRESETS:
        raise UserError(f"{where}: unknown preset {preset!r}; valid presets are {', '.join(PRESETS)}")
    out = dict(given)
    for key, value in PRESETS[preset].get(section, {}).items():
        if key in given and given[key] != value:
            raise UserError(f"{where}: {section}.{key}={given[key]!r} contradicts preset {preset!r} "
                            f"({key}={value!r}); drop one of them")
        out[key] = value
    return out
