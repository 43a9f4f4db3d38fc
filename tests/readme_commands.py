"""The README's set-up commands, so CI can prove it runs exactly what a newcomer pastes.

    python3 tests/readme_commands.py --check .ci/run   # exit 1 if .ci/run lacks the README's test command
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def bash_blocks(section: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", body, re.DOTALL)]


def test_command() -> str:
    return bash_blocks("Tests")[0]


def quickstart_command() -> str:
    return bash_blocks("Quickstart (a fresh Debian/Ubuntu machine, CPU only)")[0]


def quickstart_usage() -> str:
    """The quickstart from `examples/quickstart.sh` on: what a newcomer runs once the install is done."""
    command = quickstart_command()
    start = command.index("examples/quickstart.sh")
    return command[start:]


def quickstart_agent_command() -> str:
    """The quickstart's second command: one agent run with the promoted adapter."""
    return bash_blocks("Quickstart (a fresh Debian/Ubuntu machine, CPU only)")[1]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--check"]:
        script = Path(sys.argv[2]).read_text(encoding="utf-8")
        if test_command() not in script.splitlines():
            print(f"{sys.argv[2]} does not run the README's test command verbatim", file=sys.stderr)
            sys.exit(1)
    else:
        print(test_command())
