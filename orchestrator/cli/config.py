"""`nightowl config show`, and what every command shares about settings: flags, help defaults, the sandbox."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from orchestrator.console import out
from orchestrator.errors import UsageError
from orchestrator.settings import ISOLATING_SANDBOXES, Loaded, Settings, effective_values, flatten, load_settings

DEFAULTS = flatten(Settings().model_dump(mode="json"))
UNSANDBOXED_BANNER = """[bold white on red]
  !!! RUNNING WITHOUT A SANDBOX (--dangerously-no-sandbox) !!!
  Agent commands run as your user, can read your files and secrets, reach the network and change anything
  you can change. Only do this on a disposable machine.
[/]"""
CONFIG_HELP = "Settings file (default: nightowl.toml at the top of the repository)."
CWD_CONFIG_HELP = "Settings file (default: nightowl.toml in the current directory)."


def default(key: str, text: str = "") -> str:
    """Help text ending with the setting's default and its key in nightowl.toml (both from one place)."""
    value = DEFAULTS.get(key)
    shown = "none" if value is None or value == [] else value
    return f"{text} [default: {shown}; `{key}` in nightowl.toml]".strip()


def given(pairs: dict[str, tuple[Any, str]]) -> dict[str, tuple[Any, str]]:
    """Only the flags the user actually typed (typer passes None / [] for the others)."""
    return {key: (value, flag) for key, (value, flag) in pairs.items() if value is not None and value != []}


def command_settings(flags: dict[str, Any], keys: dict[str, tuple[str, str]], repo: Path | None) -> Settings:
    """The settings of one command line: `flags` are its parsed parameters (`--config` among them), `keys` maps
    a parameter to its dotted key and flag; the flags typed win over the file, the file over the defaults."""
    pairs = {key: (flags[param], flag) for param, (key, flag) in keys.items()}
    return load_settings(flags.get("config"), repo, given(pairs)).settings


def sandbox_kind(settings: Settings, dangerously_no_sandbox: bool, console: Console) -> str:
    """The backend to open; `local` (no isolation) only with the loud flag, and always with the banner."""
    if dangerously_no_sandbox:
        console.print(UNSANDBOXED_BANNER)
        return "local"
    return settings.sandbox.kind


def sandbox_flag(value: str | None) -> str | None:
    if value is not None and value not in ISOLATING_SANDBOXES:
        raise UsageError(f"--sandbox must be {', '.join(ISOLATING_SANDBOXES)}, not {value!r} "
                         "(running without isolation is --dangerously-no-sandbox)")
    return value


SANDBOX_HELP = default("sandbox.kind", f"{' | '.join(ISOLATING_SANDBOXES)} (auto is bubblewrap).")


def register(app: typer.Typer, user_errors: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    config_app = typer.Typer(no_args_is_help=True, help="The settings every command reads (nightowl.toml).")
    app.add_typer(config_app, name="config")

    @config_app.command("show")
    @user_errors
    def show(repo: Optional[Path] = typer.Argument(None, help="Repository whose nightowl.toml to read."),
             config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
        """Print every setting's effective value and where it came from (default, file, or flag)."""
        loaded = load_settings(config, repo)
        print_settings(loaded, out, as_json)


def print_settings(loaded: Loaded, out: Console, as_json: bool) -> None:
    rows = effective_values(loaded)
    if as_json:
        out.print_json(json.dumps({"file": str(loaded.file) if loaded.file else None,
                                   "settings": {k: {"value": v, "source": s} for k, v, s in rows}}))
        return
    out.print(f"# settings file: {loaded.file or 'none (defaults only)'}", highlight=False, markup=False)
    width = max(len(k) for k, _, _ in rows)
    for key, value, source in rows:
        out.print(f"{key:<{width}}  {json.dumps(value):<24}  {source}", highlight=False, markup=False, soft_wrap=True)
