"""Fixtures shared by the tests that drive the tiny model on the real vLLM server."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def terse_bias(tiny_model_dir: Path) -> dict[str, int]:
    """Ban whitespace tokens, favour `"`, `}` and `:`: constrained calls then finish in a few dozen tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    bias = {str(i): -100 for i in range(len(tok)) if tok.decode([i]).strip() == ""}
    bias.update({str(tok.convert_tokens_to_ids(t)): 100 for t in ('"', "}", ":")})
    return bias
