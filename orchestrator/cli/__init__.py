"""The `nightowl` command line: parsing and printing only; the work is done by shift/, serving/ and pipelines/."""


def __getattr__(name: str):
    # Console scripts installed before the CLI became a package import `orchestrator.cli:app`.
    if name == "app":
        from orchestrator.cli.main import app
        return app
    raise AttributeError(name)
