"""A STAND-IN for a real teacher endpoint, for the CPU quickstart: a scripted OpenAI-compatible server.

It is not a model. For each `nightowl generate` rollout it appends a review note to the function it is
pointed at (with `bash`) and submits; it answers the self-check with yes and writes a PR text naming that
function. That gives real, well-formed tool-calling trajectories to fine-tune the tiny model on. With a GPU,
point --teacher-base-url at a real coder instead (see the README).

    python examples/scripted_teacher.py --port 8101     # serves model "scripted-teacher" until Ctrl-C
    python examples/scripted_teacher.py --port 0        # any free port; the first line printed names it
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.scripted_server import ScriptedServer  # noqa: E402
from training.synthesis.scripted_teacher import teacher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8101, help="0: any free port")
    parser.add_argument("--model", default="scripted-teacher")
    args = parser.parse_args()
    server = ScriptedServer(teacher, model=args.model, port=args.port)
    server.start()
    print(f"scripted teacher (a stand-in, not a model) at {server.base_url} as {args.model!r}", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    server.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
