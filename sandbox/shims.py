"""`python`, `pip` and `pip3` inside a sandbox whose system has only `python3`; the shell session's driver.

Models type `python` and `pip` constantly; where the host has no such names they would get "command not found"
(and then try `sudo apt-get install`). Each sandbox gets a read-only directory of three small scripts, put on
PATH after the declared environment paths and before the system ones, that run the environment's interpreter:
the repository's set-up environment under /env when one is mounted (a venv at /env, /env/<name> or /env/.venv),
else the first `python3` on PATH. A `python` that already comes earlier on PATH (an activated venv, a declared
toolchain) is left alone.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sandbox.shell import LIBRARY

SHIM = """#!/bin/sh
# nightowl: `{name}` runs the environment's interpreter{where}.
for p in {candidates}; do
  if [ -x "$p" ]; then exec "$p" {args}"$@"; fi
done
if command -v python3 >/dev/null 2>&1; then exec python3 {args}"$@"; fi
echo "{name}: there is no Python interpreter (python3) in this sandbox" >&2
exit 127
"""
NAMES = {"python": "", "pip": "-m pip ", "pip3": "-m pip "}


def shim_text(name: str, env_dir: str | None) -> str:
    candidates = " ".join(f"{env_dir}{sub}/bin/python3" for sub in ("", "/*", "/.venv")) if env_dir else ""
    where = f" (the one set up under {env_dir}, else python3)" if env_dir else " (python3)"
    return SHIM.format(name=name, args=NAMES[name], where=where, candidates=candidates or "''")


def make_support_dir(env_dir: str | None) -> Path:
    """A fresh host directory (the caller removes it): `bin/` holds the shims, for PATH; `lib/bash` the shell
    session's driver function (sandbox/shell.py), never on PATH."""
    root = Path(tempfile.mkdtemp(prefix="nightowl-support-"))
    (root / "bin").mkdir()
    (root / "lib").mkdir()
    for name in NAMES:
        path = root / "bin" / name
        path.write_text(shim_text(name, env_dir))
        os.chmod(path, 0o755)
    (root / "lib" / "bash").write_text(LIBRARY)
    for path in (root, root / "bin", root / "lib", root / "lib" / "bash"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return root


__all__ = ["make_support_dir", "shim_text"]
