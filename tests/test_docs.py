"""docs/cli.md is generated from the config dataclasses; it must not go stale."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_reference_is_current():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, "docs/cli.md is stale: run python scripts/gen_cli_docs.py"


def test_readme_names_the_test_command_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in readme and "bash scripts/test.sh" in ci
    assert "PLACEHOLDER" not in readme


PACKAGE = ROOT / "src" / "less_select"


def test_architecture_names_every_module():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    modules = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py"))
    assert len(modules) > 40
    missing = [m for m in modules if f"`{m}`" not in doc]
    assert not missing, f"docs/ARCHITECTURE.md does not name {missing}: add a row for each"
    rows = [line.split("`")[1] for line in doc.splitlines() if line.startswith("| `")]
    stale = [r for r in rows if r.endswith(".py") and r not in modules]
    assert not stale, f"docs/ARCHITECTURE.md has rows for modules that do not exist: {stale}"
    twice = sorted({r for r in rows if rows.count(r) > 1})
    assert not twice, f"docs/ARCHITECTURE.md has more than one row for {twice}"


def _tracked_files() -> list[Path]:
    res = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if res.returncode == 0 and res.stdout.strip():
        return [ROOT / f for f in res.stdout.splitlines()]
    return [p for d in ("src", "tests", "docs", "benchmarks", "scripts") for p in (ROOT / d).rglob("*")
            ] + [ROOT / "README.md"]  # not a git checkout: the folders that ship


def test_no_file_cites_the_unshipped_design_file():
    needle = "DESIGN" + ".md"  # spelled apart so this test does not cite it itself
    hits = []
    for path in _tracked_files():
        if path.is_file() and path.suffix in (".py", ".md", ".txt", ".yaml", ".yml", ".toml", ".sh", ""):
            if needle in path.read_text(encoding="utf-8", errors="replace"):
                hits.append(str(path.relative_to(ROOT)))
    assert not hits, f"{hits} cite {needle}, which the repository does not ship; cite docs/method.md"


def test_method_page_names_functions_that_exist():
    import importlib
    import re
    doc = (ROOT / "docs" / "method.md").read_text()
    cited = sorted(set(re.findall(r"`([a-z_/]+)\.py:([A-Za-z_]\w*)`", doc)))
    assert len(cited) > 30
    missing = []
    for module, name in cited:
        mod = importlib.import_module("less_select." + module.replace("/", "."))
        if not hasattr(mod, name):
            missing.append(f"{module}.py:{name}")
    assert not missing, f"docs/method.md names functions that do not exist: {missing}"


def test_citations_of_the_method_page_name_its_sections():
    import re
    headings = [line[3:].strip() for line in (ROOT / "docs" / "method.md").read_text().splitlines()
                if line.startswith("## ")]
    bad = []
    files = list(PACKAGE.rglob("*.py")) + list((ROOT / "tests").rglob("*.py")) \
        + list((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
    for path in files:
        for cite in re.findall(r"docs/method\.md[^)]*\)", path.read_text(encoding="utf-8")):
            for section in re.findall(r'"([^"]+)"', cite):
                section = " ".join(section.split())  # a docstring may wrap it
                if not any(section.lower() in h.lower() for h in headings):
                    bad.append(f"{path.relative_to(ROOT)}: {section!r}")
    assert not bad, f"citations of sections docs/method.md does not have: {bad}"
