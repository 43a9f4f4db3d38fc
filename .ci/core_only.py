"""CI: the core package alone (`pip install -e .`, no extras) runs the agent end to end.

Run with the core-only venv's python from the repository root. It uses nothing but the standard library
and nightowl: a scripted OpenAI server over real HTTP, a real git repository, the real bubblewrap sandbox,
and `nightowl run` / `nightowl tiny-model` as subprocesses.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.scripted_server import ScriptedServer

NIGHTOWL = [sys.executable, "-m", "orchestrator.cli.main"]


def reply(request: dict) -> dict:
    turns = sum(1 for m in request["messages"] if m["role"] == "assistant")
    if turns == 0:
        return {"tool_calls": [{"name": "bash", "arguments": {"command": "echo hello > hello.txt"}}]}
    return {"tool_calls": [{"name": "submit", "arguments": {}}]}


def check(ok: bool, what: str, proc: subprocess.CompletedProcess) -> None:
    if not ok:
        sys.exit(f"core-only install: {what}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    print(f"core-only install: {what}: ok")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="nightowl-core-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        env = {**os.environ, "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@x", "GIT_COMMITTER_NAME": "ci",
               "GIT_COMMITTER_EMAIL": "ci@x"}
        (repo / "README.md").write_text("core\n")
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "init"]):
            subprocess.run(["git", "-C", str(repo), *args], check=True, env=env)

        helped = subprocess.run([*NIGHTOWL, "--help"], capture_output=True, text=True)
        check(helped.returncode == 0 and "run" in helped.stdout, "nightowl --help", helped)

        with ScriptedServer(reply) as server:
            ran = subprocess.run([*NIGHTOWL, "run", str(repo), "--task", "write hello.txt", "--base-url",
                                  server.base_url, "--model", server.model, "--out", f"{tmp}/runs", "--json"],
                                 capture_output=True, text=True, timeout=300)
        result = json.loads(ran.stdout) if ran.returncode == 0 else {}
        check(result.get("exit_status") == "submitted" and "hello.txt" in Path(result["patch_path"]).read_text(),
              "nightowl run against the scripted server submits a patch", ran)

        tiny = subprocess.run([*NIGHTOWL, "tiny-model", f"{tmp}/tiny"], capture_output=True, text=True)
        lines = [line for line in tiny.stderr.splitlines() if line.strip()]
        check(tiny.returncode == 2 and len(lines) == 1 and "pip install" in lines[0] and "[train]" in lines[0]
              and "Traceback" not in tiny.stderr, "nightowl tiny-model names the extra to install in one line", tiny)


if __name__ == "__main__":
    main()
