"""Fixtures shared by the tests that drive the tiny model on the real vLLM server."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import git


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init")
    return repo


@pytest.fixture(scope="session")
def terse_bias(tiny_model_dir: Path) -> dict[str, int]:
    """Ban whitespace tokens, favour `"`, `}` and `:`: constrained calls then finish in a few dozen tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    bias = {str(i): -100 for i in range(len(tok)) if tok.decode([i]).strip() == ""}
    bias.update({str(tok.convert_tokens_to_ids(t)): 100 for t in ('"', "}", ":")})
    return bias
