"""Layering, from the bottom: sandbox/ <- agent/ <- training/ <- orchestrator/, and inside orchestrator/
shift/ and serving/ <- pipelines/ <- cli/ (report/ reads what the others wrote). Nothing imports upwards."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "sandbox": {"agent", "training", "orchestrator"},
    "agent": {"training", "orchestrator"},
    "training": {"orchestrator"},
    "orchestrator/shift": {"orchestrator.cli", "orchestrator.pipelines", "orchestrator.report", "orchestrator.serving"},
    "orchestrator/serving": {"orchestrator.cli", "orchestrator.pipelines", "orchestrator.report", "orchestrator.shift"},
    "orchestrator/pipelines": {"orchestrator.cli", "orchestrator.report"},
    "orchestrator/report": {"orchestrator.cli", "orchestrator.pipelines", "orchestrator.serving"},
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def forbidden_in(path: Path, forbidden: set[str]) -> list[str]:
    return sorted(m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_layers_import_only_downwards(folder):
    offenders = {str(p.relative_to(ROOT)): bad for p in (ROOT / folder).rglob("*.py")
                 if (bad := forbidden_in(p, FORBIDDEN[folder]))}
    assert offenders == {}


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import os\nfrom orchestrator.cli.main import app\n")
    assert forbidden_in(module, FORBIDDEN["orchestrator/pipelines"]) == ["orchestrator.cli.main"]
