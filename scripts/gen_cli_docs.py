"""Write docs/cli.md from the stage config dataclasses (the single source of every option).

Run: python scripts/gen_cli_docs.py  (tests/test_docs.py fails when docs/cli.md is stale)
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from less_select.cli import STAGES, config_class

def render() -> str:
    from less_select.configs import describe
    lines = ["# CLI reference", "",
             "Generated from the stage config dataclasses by `python scripts/gen_cli_docs.py`; the same",
             "fields are the keys of the YAML pipeline sections and the Python API's arguments.", "",
             "`less-select [--threads N] [-v] COMMAND ...`; `less-select run CONFIG.yaml [--only STAGE ...]`",
             "runs the pipeline (see the README).", ""]
    for name in STAGES:
        cls = config_class(name)
        lines += [f"## `less-select {name}`", "", (cls.__doc__ or "").strip().splitlines()[0], "",
                  "| option | default | meaning |", "|---|---|---|"]
        cli_fields = {f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True)}
        for field, default, help_text in describe(cls):
            flag = f"`--{field.replace('_', '-')}`" if field in cli_fields else f"`{field}` (YAML/Python only)"
            lines.append(f"| {flag} | `{default}` | {help_text.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    out = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    text = render()
    if "--check" in sys.argv:
        sys.exit(0 if out.read_text() == text else 1)
    out.write_text(text)
    print(f"wrote {out}")
