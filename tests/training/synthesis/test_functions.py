"""Function sampling on a checked-in multi-language repo: exactly the expected functions, tests and the rest excluded."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import git
from tests.polyglot import make_polyglot_repo
from training.synthesis.functions import list_functions, plan_samples, sample_functions

EXPECTED = {
    ("core/lib.rs", "Stack.push", "rust", 6, 9),
    ("core/lib.rs", "sum", "rust", 12, 15),
    ("pkg/shapes.py", "Shape.area", "python", 5, 8),
    ("pkg/shapes.py", "Square.__init__", "python", 14, 16),
    ("pkg/shapes.py", "Square.area", "python", 18, 22),
    ("pkg/shapes.py", "Square.area.squared", "python", 19, 21),
    ("pkg/shapes.py", "total_area", "python", 25, 29),
    ("server/main.go", "Server.Start", "go", 7, 10),
    ("server/main.go", "main", "go", 12, 15),
    ("src/main/java/App.java", "App.App", "java", 6, 9),
    ("src/main/java/App.java", "App.next", "java", 11, 14),
    ("web/app.js", "Counter.increment", "javascript", 7, 10),
    ("web/app.js", "double", "javascript", 13, 16),
    ("web/app.js", "greet", "javascript", 1, 4),
    ("web/types.ts", "Store.add", "typescript", 3, 6),
    ("web/types.ts", "first", "typescript", 9, 12),
    ("web/view.tsx", "Badge", "typescript", 1, 4),
}


@pytest.fixture
def polyglot(tmp_path: Path) -> Path:
    return make_polyglot_repo(tmp_path / "polyglot")


def test_exactly_the_expected_functions(polyglot):
    report = list_functions(polyglot)
    found = {(f.file, f.function, f.language, f.start_line, f.end_line) for f in report.functions}
    assert found == EXPECTED
    assert report.per_language == {"go": 2, "java": 2, "javascript": 3, "python": 5, "rust": 2, "typescript": 3}
    assert report.skipped == {"generated": 2, "ignored": 1, "test": 5, "vendored": 1}
    assert not any("test" in f.file.lower() for f in report.functions)


def test_blobs_come_from_the_commit_not_the_working_tree(polyglot):
    first = git(polyglot, "rev-parse", "HEAD").strip()
    (polyglot / "pkg" / "shapes.py").write_text("def only_in_working_tree():\n    a = 1\n    return a\n")
    (polyglot / "web" / "app.js").unlink()
    names = {f.function for f in list_functions(polyglot, first).functions}
    assert "only_in_working_tree" not in names and "greet" in names
    git(polyglot, "commit", "-qam", "rewrite shapes, drop app.js")
    names_now = {f.function for f in list_functions(polyglot, "HEAD").functions}
    assert "only_in_working_tree" in names_now and "greet" not in names_now and "total_area" not in names_now
    assert {f.function for f in list_functions(polyglot, first).functions} == names


def test_a_missing_blob_is_counted_not_fatal(polyglot):
    sha = git(polyglot, "rev-parse", "HEAD:core/lib.rs").strip()
    (polyglot / ".git" / "objects" / sha[:2] / sha[2:]).unlink()
    report = list_functions(polyglot)
    assert report.skipped["missing_blob"] == 1
    assert {f.file for f in report.functions} == {e[0] for e in EXPECTED} - {"core/lib.rs"}


def test_sampling_is_deterministic_for_a_seed_and_extends_with_n(polyglot):
    functions = list_functions(polyglot).functions
    a, b = sample_functions(functions, 5, seed=7), sample_functions(list(reversed(functions)), 5, seed=7)
    assert a == b
    assert sample_functions(functions, 9, seed=7)[:5] == a
    assert sample_functions(functions, 17, seed=8) != sample_functions(functions, 17, seed=7)


def test_several_snapshots_are_interleaved(polyglot):
    first = git(polyglot, "rev-parse", "HEAD").strip()
    (polyglot / "extra.py").write_text("def added_later():\n    a = 1\n    return a\n")
    git(polyglot, "add", "-A")
    git(polyglot, "commit", "-qm", "more")
    second = git(polyglot, "rev-parse", "HEAD").strip()
    plan = plan_samples(polyglot, [first, second], 6, seed=1)
    assert [f.commit for f in plan.functions] == [first, second] * 3
    assert plan.available == 17 + 18


def test_unknown_commit_is_a_clear_error(polyglot):
    with pytest.raises(ValueError, match="not a commit"):
        list_functions(polyglot, "no-such-ref")
