"""The environment sandboxed commands get: an allow-list, never secrets."""
from __future__ import annotations

import os
import re
from collections.abc import Mapping

ALLOWED_VARIABLES = ("PATH", "LANG", "LANGUAGE", "TERM", "TZ", "LC_ALL", "LC_CTYPE", "LC_MESSAGES")
SECRET_NAME = re.compile(
    r"TOKEN|KEY|SECRET|PASSW|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|PROXY|_PAT$|^PAT_", re.I)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sandbox_environment(home: str, extra: dict[str, str] | None = None,
                        allow: tuple[str, ...] = ALLOWED_VARIABLES,
                        host: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Allow-listed variables from the host plus fixed ones; `extra` cannot smuggle secrets back in."""
    env = {name: host[name] for name in allow if name in host and not SECRET_NAME.search(name)}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update({
        "HOME": home,
        "TERM": env.get("TERM") or "dumb",
        "PAGER": "cat", "GIT_PAGER": "cat", "MANPAGER": "cat",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_NO_INPUT": "1", "GIT_TERMINAL_PROMPT": "0",
        "DEBIAN_FRONTEND": "noninteractive",
    })
    for name, value in (extra or {}).items():
        if not SECRET_NAME.search(name):
            env[name] = value
    return env


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name))
