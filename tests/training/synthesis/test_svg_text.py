"""The text side of SVG: <output> extraction, yes/no verdicts, the category bank, demonstrations."""
from __future__ import annotations

import pytest

from sandbox.errors import UserError
from tests.helpers import git
from tests.polyglot import make_polyglot_repo
from training.synthesis.categories import CATEGORIES, pick_category
from training.synthesis.demonstrations import GENERIC, demonstration_pool, from_file, pick_demonstration
from training.synthesis.outputs import extract_output, parse_yes_no


@pytest.mark.parametrize("reply, expected", [
    ("thinking...\n<output>\nThe title\n\nbody\n</output>", "The title\n\nbody"),
    ("<output>first</output> then <OUTPUT>second</OUTPUT>", "second"),
    ("<think>hidden</think>no tags at all", "no tags at all"),
    ("", ""),
    (None, ""),
])
def test_extract_output(reply, expected):
    assert extract_output(reply) == expected


@pytest.mark.parametrize("reply, verdict", [
    ("<output>yes</output>", True), ("<output>No.</output>", False), ("Yes, it does.", True),
    ("<output>maybe</output>", None), ("", None), ("<think>no</think><output>YES</output>", True),
])
def test_parse_yes_no(reply, verdict):
    assert parse_yes_no(reply) is verdict


def test_category_bank_and_retries_never_repeat():
    assert 45 <= len(CATEGORIES) == len(set(CATEGORIES))
    tried: tuple[str, ...] = ()
    for attempt in range(3):
        category = pick_category("s00001", attempt, 5, tried)
        assert category not in tried and category == pick_category("s00001", attempt, 5, tried)
        tried += (category,)


def test_demonstrations_from_history_file_or_generic(tmp_path):
    repo = make_polyglot_repo(tmp_path / "repo")
    pool, source = demonstration_pool(repo, None)
    assert source == "generic" and pool == list(GENERIC)  # one short commit is not a pool
    for i in range(6):
        (repo / f"f{i}.txt").write_text(str(i))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"Parser drops trailing spaces in case {i}\n\nSeen with input {i}.\n\n"
                                   "Co-authored-by: Someone <s@example.com>")
    pool, source = demonstration_pool(repo, None)
    assert source == "history" and len(pool) == 6
    assert all("Co-authored-by" not in text and text.startswith("Parser drops") for text in pool)
    demo = tmp_path / "issues.txt"
    demo.write_text("First issue\ntext\n---\nSecond issue\n---\n\n")
    assert from_file(demo) == ["First issue\ntext", "Second issue"]
    assert demonstration_pool(repo, demo) == (["First issue\ntext", "Second issue"], f"file:{demo}")
    assert pick_demonstration(pool, "s1", 0) == pick_demonstration(pool, "s1", 0)
    (tmp_path / "empty.txt").write_text("---\n")
    with pytest.raises(UserError, match="no entries"):
        from_file(tmp_path / "empty.txt")
