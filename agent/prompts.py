"""Prompt templates shipped with the package (Jinja, strict: a missing variable is an error)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jinja2

PROMPTS_DIR = Path(__file__).parent / "prompts"


@lru_cache(maxsize=None)
def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(PROMPTS_DIR), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=False, autoescape=False)


def render(name: str, **variables: object) -> str:
    return environment().get_template(name).render(**variables).strip()
