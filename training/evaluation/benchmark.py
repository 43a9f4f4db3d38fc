"""The fields a benchmark task carries beside a plain task: what a correct change looks like, and how to check it."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TestCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    files: list[str]
    """The test files the original commit touched, as they are after it."""
    patch: str
    """The original commit's diff of those files: applied before the check runs."""
    command: str
    """Runs just those tests; exit code 0 means they pass."""
