"""One agent run for bench/peer_bench.py, in its own process: nightowl (this repo's venv) or mini-swe-agent (its own).

    python bench/peer_agents.py nightowl|mini --base-url URL --repo DIR --task TEXT --out DIR [--sandbox local|auto]

Prints one JSON line: CPU seconds (self + waited-for children) between the end of the first step and the end
of the last, the steps in between, peak RSS, and the seconds spent before the run started (imports, set-up).
Imports only the agent under test, so each side pays for its own dependencies and nothing else.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402


def cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class StepClock:
    """CPU time at the end of every step; the first step (connection set-up, first imports) is left out."""

    def __init__(self) -> None:
        self.marks: list[float] = []

    def mark(self, steps_done: int) -> None:
        """Called whenever the agent reports progress; only the first report of each new step counts."""
        if steps_done > len(self.marks):
            self.marks.append(cpu_s())

    def result(self, setup_s: float) -> dict:
        return {"cpu_s": self.marks[-1] - self.marks[0], "steps": len(self.marks) - 1, "setup_s": setup_s,
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_nightowl(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from agent.loop import AgentConfig
    from agent.model import ModelConfig
    from agent.run import RunRequest, run_task

    clock = StepClock()
    request = RunRequest(repo=Path(args.repo), task=args.task, sandbox=args.sandbox, out_dir=Path(args.out),
                         create_branch=False, model=ModelConfig(base_url=args.base_url, model="scripted"),
                         agent=AgentConfig(max_steps=10_000, stuck_repeats=10**6))
    setup_s = time.perf_counter() - STARTED
    outcome = run_task(request, progress=lambda t: clock.mark(len(t.steps)))
    return {**clock.result(setup_s), "exit": outcome.exit_status.value}


def run_mini(args: argparse.Namespace) -> dict:
    import yaml
    from minisweagent import package_dir
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.environments.local import LocalEnvironment
    from minisweagent.models.litellm_model import LitellmModel

    # The `mini` command's own configuration: tool-calling LitellmModel, LocalEnvironment, trajectory saved every step.
    config = yaml.safe_load((package_dir / "config" / "mini.yaml").read_text())
    agent_config = {k: v for k, v in config["agent"].items() if k != "mode"}
    model_config = dict(config.get("model", {}))
    model_config["model_kwargs"] = {**model_config.get("model_kwargs", {}), "api_base": args.base_url, "api_key": "none"}
    model = LitellmModel(model_name="openai/scripted", cost_tracking="ignore_errors", **model_config)
    env = LocalEnvironment(cwd=args.repo, **config.get("environment", {}))
    clock = StepClock()

    class TimedAgent(DefaultAgent):
        def step(self) -> list[dict]:
            try:
                return super().step()
            finally:
                clock.mark(self.n_calls)

    agent = TimedAgent(model, env, **agent_config, output_path=Path(args.out) / "mini.traj.json")
    setup_s = time.perf_counter() - STARTED
    result = agent.run(args.task)
    return {**clock.result(setup_s), "exit": result.get("exit_status", "?")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("agent", choices=["nightowl", "mini"])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--sandbox", default="local")
    args = parser.parse_args()
    result = run_nightowl(args) if args.agent == "nightowl" else run_mini(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
