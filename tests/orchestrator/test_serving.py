"""The vLLM launcher without vLLM: argv, environment, adapters, start-up failures, stopping."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from orchestrator.serving import (AdapterError, ServerConfig, ServerStartError, VLLMServer, build_argv, build_env,
                                  default_tool_parser, load_adapter, parse_adapters, serve_forever, unload_adapter)


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_argv_defaults_for_a_real_coder_on_gpu() -> None:
    argv = build_argv(ServerConfig(model="allenai/SERA-8B"), "cuda", 8000)
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert flag(argv, "--model") == "allenai/SERA-8B"
    assert flag(argv, "--served-model-name") == "allenai/SERA-8B"
    assert (flag(argv, "--host"), flag(argv, "--port")) == ("127.0.0.1", "8000")
    assert "--enable-auto-tool-choice" in argv and flag(argv, "--tool-call-parser") == "hermes"
    assert "--enable-prefix-caching" in argv and "--enable-lora" in argv
    assert (flag(argv, "--max-lora-rank"), flag(argv, "--max-loras")) == ("64", "4")
    for absent in ("--dtype", "--lora-modules", "--max-model-len"):
        assert absent not in argv


@pytest.mark.parametrize("model,parser", [("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder"),
                                          ("/models/qwen3-coder-flash", "qwen3_coder"),
                                          ("Qwen/Qwen3-8B", "hermes"), ("Qwen/Qwen2.5-Coder-7B-Instruct", "hermes")])
def test_tool_parser_follows_the_model(model: str, parser: str) -> None:
    assert default_tool_parser(model) == parser
    assert flag(build_argv(ServerConfig(model=model), "cuda", 1), "--tool-call-parser") == parser
    explicit = ServerConfig(model=model, tool_call_parser="pythonic")
    assert flag(build_argv(explicit, "cuda", 1), "--tool-call-parser") == "pythonic"


def test_argv_adapters_length_and_extra_args() -> None:
    config = ServerConfig(model="m", served_model_name="coder", adapters={"r1": "/a/r1", "r2": "/a/r2"},
                          max_model_len=32768, max_lora_rank=16, extra_args=["--gpu-memory-utilization", "0.8"])
    argv = build_argv(config, "cuda", 9)
    i = argv.index("--lora-modules")
    assert argv[i + 1:i + 3] == ["r1=/a/r1", "r2=/a/r2"]
    assert flag(argv, "--served-model-name") == "coder" and flag(argv, "--max-model-len") == "32768"
    assert flag(argv, "--max-lora-rank") == "16"
    assert argv[-2:] == ["--gpu-memory-utilization", "0.8"]


def test_float32_checkpoint_gets_dtype_on_cpu_only(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"dtype": "float32"}))
    config = ServerConfig(model=str(tmp_path))
    assert flag(build_argv(config, "cpu", 1), "--dtype") == "float32"
    assert "--dtype" not in build_argv(config, "cuda", 1)
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))
    assert "--dtype" not in build_argv(config, "cpu", 1)


def test_environment() -> None:
    cpu = build_env("cpu", {"PATH": "/bin"})
    assert cpu["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True" and cpu["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert build_env("cpu", {"VLLM_CPU_KVCACHE_SPACE": "8"})["VLLM_CPU_KVCACHE_SPACE"] == "8"
    assert "VLLM_CPU_KVCACHE_SPACE" not in build_env("cuda", {})


def test_parse_adapters() -> None:
    assert parse_adapters([]) == {}
    assert parse_adapters(["r1=/x/y", " r2 = rel/path=odd "]) == {"r1": "/x/y", "r2": "rel/path=odd"}
    for bad in ("noequals", "=path", "name=", ""):
        with pytest.raises(ValueError, match="NAME=PATH"):
            parse_adapters([bad])
    with pytest.raises(ValueError, match="twice"):
        parse_adapters(["a=1", "a=2"])


def fake_launcher(code: str) -> list[str]:
    """A stand-in for `python -m vllm...`: runs `code`, ignoring the vLLM arguments appended after it."""
    return [sys.executable, "-c", code]


def test_server_that_exits_at_once_reports_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    code = "import sys\nfor i in range(40): print(f'line {i}')\nprint('ValueError: no such model'); sys.exit(3)"
    server = VLLMServer(ServerConfig(model="nope", log_path=log, device="cpu"), launcher=fake_launcher(code))
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        with server:
            pass
    message = str(info.value)
    assert time.monotonic() - started < 10
    assert "exit code 3" in message and str(log) in message and "ValueError: no such model" in message
    assert "line 25" in message and "line 5\n" not in message  # only the tail
    assert server.process is not None and server.process.returncode == 3


def test_startup_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # A parent that never serves /health and a grandchild that ignores SIGTERM: both must be gone afterwards.
    code = ("import subprocess, sys, time\n"
            f"c = subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, "
            f"signal.SIG_IGN); time.sleep(600)'])\nopen({str(pid_file)!r}, 'w').write(str(c.pid))\n"
            "print('loading...', flush=True); time.sleep(600)")
    config = ServerConfig(model="slow", startup_timeout_s=3, log_path=tmp_path / "log", device="cpu")
    with pytest.raises(ServerStartError, match="did not become healthy within 3 s") as info:
        VLLMServer(config, launcher=fake_launcher(code)).start()
    assert "loading..." in str(info.value)
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while pid_alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(child)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie awaiting its (already dead) parent's reaper counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


HEALTH_SERVER = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
port = int(sys.argv[sys.argv.index('--port') + 1])
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
HTTPServer(('127.0.0.1', port), H).serve_forever()
"""


def test_healthy_server_lifecycle_and_serve_forever(tmp_path: Path) -> None:
    config = ServerConfig(model="m", served_model_name="tiny", log_path=tmp_path / "log", device="cpu")
    with VLLMServer(config, launcher=fake_launcher(HEALTH_SERVER)) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.served_model_name == "tiny" and server.startup_s is not None
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        serve_forever(server, poll_s=0.1)  # returns on the signal instead of dying
        assert server.process.poll() is None
    assert server.process.returncode is not None
    server.stop()  # idempotent


def test_serve_forever_raises_when_the_server_dies(tmp_path: Path) -> None:
    config = ServerConfig(model="m", log_path=tmp_path / "log", device="cpu")
    with VLLMServer(config, launcher=fake_launcher(HEALTH_SERVER)) as server:
        threading.Timer(0.3, server.process.kill).start()
        with pytest.raises(ServerStartError, match="exited unexpectedly"):
            serve_forever(server, poll_s=0.1)


def test_missing_vllm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestrator.serving as serving

    monkeypatch.setattr(serving.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ServerStartError, match=r"nightowl\[serve\].*nightowl\[serve-cpu\]"):
        VLLMServer(ServerConfig(model="m")).start()


class AdapterHandler(BaseHTTPRequestHandler):
    calls: list[tuple[str, dict]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        AdapterHandler.calls.append((self.path, body))
        ok = body["lora_name"] != "missing"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"Success" if ok else b'{"message": "The lora adapter \'missing\' cannot be found."}')

    def log_message(self, *args: object) -> None:
        pass


def test_adapter_helpers_over_http(tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), AdapterHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}/v1"
    try:
        load_adapter(base, "round1", tmp_path)
        unload_adapter(base + "/", "round1")
        assert AdapterHandler.calls == [
            ("/v1/load_lora_adapter", {"lora_name": "round1", "lora_path": str(tmp_path.resolve())}),
            ("/v1/unload_lora_adapter", {"lora_name": "round1"})]
        with pytest.raises(AdapterError, match="HTTP 404.*cannot be found"):
            unload_adapter(base, "missing")
    finally:
        httpd.shutdown()
    with pytest.raises(AdapterError, match="cannot reach"):
        load_adapter(base, "round1", tmp_path, timeout_s=2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_server_dies_with_a_killed_parent(tmp_path: Path) -> None:
    """A shift killed with SIGKILL must not leave its model server running (port, GPU memory)."""
    pid_file = tmp_path / "server.pid"
    parent = (
        "import os, sys, time\n"
        "from orchestrator.serving import ServerConfig, VLLMServer\n"
        f"code = {HEALTH_SERVER!r}\n"
        f"s = VLLMServer(ServerConfig(model='m', device='cpu', log_path={str(tmp_path / 'log')!r}),"
        " launcher=[sys.executable, '-c', code])\n"
        f"s.start(); open({str(pid_file)!r}, 'w').write(str(s.process.pid)); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    server_pid = int(pid_file.read_text())
    assert pid_alive(server_pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while pid_alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(server_pid)
