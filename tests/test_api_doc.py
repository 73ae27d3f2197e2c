"""docs/api.md: its worked example runs as written, and its tables name functions and configs that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def worked_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## Worked example"):]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the worked example is one python code block"
    return blocks[0]


def test_the_stage_table_is_the_cli_table():
    """One row per CLI stage, naming the run function and config the CLI itself runs (the CLI tests
    import them), plus the pipeline runner."""
    import ast
    from less_select.cli import STAGES
    rows = re.findall(r"^\| `(less_select\.[\w.]+)\.(run_\w+)` \| (?:`(\w+)`|a YAML file) \|",
                      DOC.read_text(), flags=re.M)
    documented = {f"{module}:{func}": config for module, func, config in rows}
    expected = {run: cls.split(":")[1] for _, cls, run in STAGES.values()}
    expected["less_select.pipeline:run_pipeline_file"] = ""
    assert documented == expected
    pipeline = ast.parse((DOC.parent.parent / "src" / "less_select" / "pipeline.py").read_text())
    assert "run_pipeline_file" in {n.name for n in pipeline.body if isinstance(n, ast.FunctionDef)}


@pytest.mark.slow
def test_worked_example_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("datasets")
    monkeypatch.chdir(tmp_path)
    code = worked_example()
    exec(compile(code, str(DOC) + ":worked-example", "exec"), {"__name__": "api_example"})
    out = capsys.readouterr().out
    assert "8 of 40 selected; by task:" in out and "best: " in out
    sel = tmp_path / "api_example" / "selected"
    report = json.loads((sel / "selection.json").read_text())
    assert set(report["exports"]) == {"hf", "llamafactory"}
    # the export was written inside select's .part folder; it still loads after the rename
    import datasets
    exported = datasets.load_from_disk(str(sel / report["exports"]["hf"]["folder"]))
    assert exported["rank"] == list(range(1, 9))
