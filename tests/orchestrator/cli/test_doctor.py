"""`nightowl doctor` measures this machine: real bubblewrap, cgroups, imports in a fresh interpreter, a real server."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.scripted_server import ScriptedServer
from orchestrator.cli.doctor import check_server, python_import
from orchestrator.extras import missing_from_extra, version_of

ROOT = Path(__file__).resolve().parents[3]


def test_doctor_reports_every_check_and_a_served_model():
    with ScriptedServer([], model="coder") as server:
        proc = subprocess.run([sys.executable, "-m", "orchestrator.cli.main", "doctor", "--base-url", server.base_url,
                               "--model", "coder", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    checks = {c["name"]: c for c in json.loads(proc.stdout)}
    assert {"bubblewrap", "cgroups", "libraries", "torch", "transformers", "gpu", "server"} <= set(checks)
    assert checks["bubblewrap"]["level"] == "ok"  # CI installs bubblewrap; the sandbox tests need it too
    assert checks["server"]["level"] == "ok" and "coder" in checks["server"]["detail"]
    assert all(c["fix"] for c in checks.values() if c["level"] != "ok")
    assert proc.returncode == (1 if any(c["level"] == "fail" for c in checks.values()) else 0)


def test_a_server_that_is_down_or_serves_another_model_fails_with_a_fix():
    with ScriptedServer([], model="coder") as server:
        wrong = check_server(server.base_url, "other")
        url = server.base_url
    assert wrong.level == "fail" and "serves coder, not other" in wrong.detail and wrong.fix
    down = check_server(url, None)
    assert down.level == "fail" and "nightowl serve" in down.fix


def test_imports_run_in_a_fresh_interpreter_and_report_the_last_error_line():
    assert python_import("print(6 * 7)") == (True, "42")
    ok, line = python_import("import json\nraise RuntimeError('operator torchvision::nms does not exist')")
    assert not ok and line == "RuntimeError: operator torchvision::nms does not exist"


def test_missing_extra_requirements_are_read_from_the_installed_metadata():
    assert missing_from_extra("serve") == ([] if version_of("vllm") else ["vllm"])
    assert missing_from_extra("test") == []


def test_doctor_names_library_versions_and_those_that_are_not_the_tested_ones():
    from orchestrator.cli.doctor import check_libraries, tested_versions

    pins = tested_versions()
    assert pins["openai"] and pins["pydantic"]  # the checkout's constraints-cpu.txt is read
    same = check_libraries({"openai": version_of("openai")})
    assert same.level == "ok" and f"openai {version_of('openai')}" in same.detail
    drifted = check_libraries({"openai": "0.0.1"})
    assert drifted.level == "warn" and "openai" in drifted.detail and "tested 0.0.1" in drifted.detail
    assert "constraints-cpu.txt" in drifted.fix
