"""`nightowl shift` and `nightowl status` (the overnight orchestrator)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Adds the shift commands to the CLI (being built under issue 5)."""
