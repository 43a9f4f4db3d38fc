"""Real repositories, workspaces and sandboxes for the escape suite; secrets planted in a fake HOME."""
from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.backends import BACKENDS as REGISTERED
from sandbox.base import Sandbox
from sandbox.limits import ResourceLimits
from sandbox.policy import Policy
from sandbox.select import open_sandbox
from sandbox.workspace import create_workspace

TEST_LIMITS = ResourceLimits(cpu_seconds=20, memory_mb=256, max_processes=64, file_size_mb=64)
SECRETS = {".ssh/id_rsa": "-----BEGIN FAKE KEY-----", ".aws/credentials": "[default]\naws_secret=fake",
           ".npmrc": "//registry/:_authToken=fake", ".netrc": "machine x password fake",
           ".config/gh/hosts.yml": "oauth_token: fake", ".bashrc": "# user rc\n", ".gitconfig": "[user]\n"}


# Every registered backend runs these tests; the isolating ones (bubblewrap) are never skipped (CI installs
# bubblewrap; without it these tests must fail).
ISOLATING_BACKENDS = [name for name, backend in REGISTERED.items() if backend.isolates]
BACKENDS = list(REGISTERED)


def require_tools(sb: Sandbox, *tools: str) -> None:
    """A probe that expects a command to fail proves nothing if the tool is simply missing inside the sandbox."""
    for tool in tools:
        found = sb.execute(f"command -v {tool}", timeout=10)
        assert found.returncode == 0, f"{tool} is not available inside the {sb.__class__.__name__}: install it"


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            h.update(str(p.relative_to(root)).encode())
            if p.is_symlink():
                h.update(os.readlink(p).encode())
            elif p.is_file():
                try:
                    h.update(p.read_bytes())
                except OSError:
                    h.update(b"<unreadable>")
    return h.hexdigest()


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    for rel, text in SECRETS.items():
        (home / rel).parent.mkdir(parents=True, exist_ok=True)
        (home / rel).write_text(text)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for name in ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "HTTPS_PROXY", "http_proxy",
                 "MY_PASSWORD", "NPM_AUTH"):
        monkeypatch.setenv(name, "leaked-" + name.lower())
    return home


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x", "GIT_COMMITTER_NAME": "u",
           "GIT_COMMITTER_EMAIL": "u@x"}
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "app.py").write_text("print('hello')\n")
    (repo / "README.md").write_text("# demo\n")
    subprocess.run(["git", "-C", str(repo), "add", "."], check=True)
    subprocess.run(["git", "-C", str(repo), "commit", "-qm", "init"], check=True, env=env)
    return repo


@pytest.fixture
def make_sandbox(tmp_path: Path, user_repo: Path, fake_home: Path) -> Iterator[Callable[..., Sandbox]]:
    opened: list[Sandbox] = []
    count = 0

    def make(kind: str, limits: ResourceLimits = TEST_LIMITS, policy: Policy | None = None) -> Sandbox:
        nonlocal count
        count += 1
        ws = create_workspace(user_repo, "HEAD", tmp_path / f"ws{count}")
        policy = policy or Policy(shm_size_mb=32, tmp_size_mb=64)
        sb = open_sandbox(kind, ws, limits) if kind == "local" else open_sandbox(kind, ws, limits, policy)  # type: ignore[arg-type]
        opened.append(sb)
        return sb

    yield make
    for sb in opened:
        sb.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=ISOLATING_BACKENDS)
def isolating(request: pytest.FixtureRequest) -> str:
    """Only the isolating backends: the local one is an explicit opt-out and promises no isolation."""
    return request.param
