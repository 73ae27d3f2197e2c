"""Write docs/cli.md from the stage config dataclasses (the single source of every option).

Run: python scripts/gen_cli_docs.py  (tests/test_docs.py fails when docs/cli.md is stale)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from less_select.cli import STAGES, config_class


def _table(cls, yaml_keys: bool = False) -> list[str]:
    """One row per field: its flag (or, for YAML-only fields and ``yaml_keys``, its key)."""
    from less_select.configs import describe
    lines = ["| option | default | meaning |", "|---|---|---|"]
    cli_fields = {f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
    for field, default, help_text in describe(cls):
        if yaml_keys:
            flag = f"`{field}`"
        elif field in cli_fields:
            flag = f"`--{field.replace('_', '-')}`"
        else:
            flag = f"`{field}` (YAML/Python only)"
        lines.append(f"| {flag} | `{default}` | {help_text.replace('|', '/')} |")
    return lines + [""]


def render() -> str:
    from less_select.pipeline import PipelineConfig, PipelineEvalConfig
    lines = ["# CLI reference", "",
             "Generated from the stage config dataclasses by `python scripts/gen_cli_docs.py`; the same",
             "fields are the keys of the YAML pipeline sections and the Python API's arguments. Options",
             "several stages take (`max_seq_length`, `template`, `seed`, ...) are defined once",
             "(`less_select.configs.SHARED`) and mean the same everywhere.", "",
             "`less-select [--threads N] [--progress auto|bar|log] [-v] COMMAND ...` (`--progress`: a tqdm "
             "bar with rate and ETA, or a log line every few seconds; auto: a bar when stderr is a "
             "terminal; default `$LESS_SELECT_PROGRESS`, else auto)", "",
             "## `less-select run CONFIG.yaml [--only STAGE ...]`", "",
             "The whole pipeline from a YAML file, skipping finished stages. Its top-level keys:", "",
             *_table(PipelineConfig, yaml_keys=True),
             "Each section's keys are the options of that stage's command below (`warmup`, `datastore`,",
             "`targets` (one mapping per target), `select`, `train`); the `eval` section takes `eval`'s",
             "options and `tasks`:", "",
             *[row for row in _table(PipelineEvalConfig, yaml_keys=True)
               if not row.startswith("| `") or row.startswith("| `tasks`")]]
    for name in STAGES:
        cls = config_class(name)
        lines += [f"## `less-select {name}`", "", (cls.__doc__ or "").strip().splitlines()[0], "",
                  *_table(cls)]
    return "\n".join(lines)


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if out.read_text() == text else 1)
    out.write_text(text)
    print(f"wrote {out}")
