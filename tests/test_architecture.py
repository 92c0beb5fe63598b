"""The layer rules hold (import-linter contracts in pyproject.toml), docs generated from code are
current, and only the CLI and report layers write to the terminal."""

from __future__ import annotations

import ast
import shutil
import subprocess

import pytest

from dsrdiag.findings.catalog import CATALOG, render_markdown
from dsrdiag.findings.kinds import ALL as PACKET_KINDS
from tests.conftest import ROOT


def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter not installed (pip install -e .[test])")
    p = subprocess.run([exe, str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_print_and_subprocess_appear_only_at_the_edges():
    allowed_print = {"cli", "findings/catalog.py"}
    for path in (ROOT / "dsrdiag").rglob("*.py"):
        rel = path.relative_to(ROOT / "dsrdiag").as_posix()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                assert rel.split("/")[0] in allowed_print or rel in allowed_print, f"print() in {rel}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.split(".")[0] == "subprocess" for n in names):
                    assert rel.startswith("lab/") or rel == "audit/windows.py", f"subprocess in {rel}: only the lab and Windows collection run programs"


def test_findings_doc_is_generated_from_the_catalogue():
    assert (ROOT / "docs" / "findings.md").read_text() == render_markdown(), (
        "docs/findings.md is stale: python -m dsrdiag.findings.catalog > docs/findings.md"
    )


def test_every_kind_has_a_catalogue_entry_and_a_schema_enum():
    import json
    schema = json.loads((ROOT / "docs" / "report.schema.json").read_text())
    enum = set(schema["properties"]["findings"]["items"]["properties"]["kind"]["enum"])
    from dsrdiag.audit.checks import KINDS as HOST_KINDS
    kinds = set(HOST_KINDS) | {k.KIND for k in PACKET_KINDS}
    assert kinds == set(CATALOG) == enum


def test_each_packet_kind_is_declared_and_decided_in_its_own_module():
    """One home per kind: findings/kinds/<kind>.py holds its entry and its decision."""
    for mod in PACKET_KINDS:
        name = mod.__name__.rsplit(".", 1)[1]
        assert mod.KIND == mod.ENTRY.kind == name, f"{mod.__name__} declares {mod.ENTRY.kind}"
        assert CATALOG[name] is mod.ENTRY
        deciders = [a for a in ("check", "Collector", "decide_path", "decide") if hasattr(mod, a)]
        assert deciders, f"{mod.__name__} declares a kind but decides nothing"
    kinds_dir = ROOT / "dsrdiag" / "findings" / "kinds"
    for path in kinds_dir.glob("*.py"):
        if path.stem in ("__init__", "carried"):
            continue
        assert path.stem in {m.__name__.rsplit(".", 1)[1] for m in PACKET_KINDS}, f"{path} is not registered"
    # no kind is decided anywhere else: Finding(kind=...) is made only in kind modules, host checks
    for path in (ROOT / "dsrdiag").rglob("*.py"):
        rel = path.relative_to(ROOT / "dsrdiag").as_posix()
        if rel.startswith("findings/kinds/") or rel in ("audit/checks.py", "findings/finding.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                raise AssertionError(f"a Finding is made in {rel}: kinds are decided in findings/kinds/")


def test_every_module_says_why_in_its_docstring():
    for path in (ROOT / "dsrdiag").rglob("*.py"):
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 30, f"{path} has no module docstring"


def test_readme_lists_every_finding_kind_from_the_catalogue():
    from dsrdiag.findings.catalog import readme_table

    text = (ROOT / "README.md").read_text()
    start = text.index("<!-- kinds:")
    body = text[text.index("\n", start) + 1:text.index("<!-- /kinds -->")]
    assert body == readme_table(), "README's table is stale: python -m dsrdiag.findings.catalog --readme-table"
