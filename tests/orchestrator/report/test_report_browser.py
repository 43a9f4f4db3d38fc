"""`nightowl report` opened in real headless Chromium: a real 30-task shift, then 1,000 generated samples."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from agent.scripted_server import ScriptedServer
from orchestrator.shift.engine import Shift, ShiftOptions, file_source
from tests.helpers import nightowl
from tests.orchestrator.helpers import SANDBOX, make_repo, task_of
from tests.orchestrator.report.chromium import Chromium

N_TASKS = 30
NEVER_SUBMIT = {"t-010", "t-011", "t-012"}
HOSTILE = "t-003"
INJECTION = '<script>window.__pwned=1</script></pre><img src=x onerror="window.__pwned=2"></script><!--'


def reply(request: dict[str, Any]) -> dict[str, Any]:
    """Per task: think, write a file, print a long listing, then submit twice; some tasks never submit."""
    turns = sum(1 for m in request["messages"] if m.get("role") == "assistant")
    tid = task_of(request)
    thought = f"Step {turns} of {tid}: I should look before I change anything."
    if tid in NEVER_SUBMIT:
        return {"reasoning_content": thought, "tool_calls": [{"name": "bash", "arguments": {"command": f"echo {turns}"}}]}
    if turns == 0:
        content = INJECTION if tid == HOSTILE else "Writing the file."
        command = f"mkdir -p out && echo {tid} > out/{tid}.txt"
        if tid == HOSTILE:  # bytes that are not UTF-8, and markup in the observation
            command += " && printf '\\xff\\xfe<b>bold</b></script>\\n' > out/raw.bin && cat out/raw.bin"
        return {"reasoning_content": thought, "content": content, "tool_calls": [{"name": "bash", "arguments": {"command": command}}]}
    if turns == 1:
        return {"reasoning_content": thought, "tool_calls": [{"name": "bash", "arguments": {"command": "seq 1 400"}}]}
    return {"tool_calls": [{"name": "submit", "arguments": {}}]}


@pytest.fixture(scope="module")
def shift_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-shift")
    repo = make_repo(root / "repo")
    tasks = root / "tasks.jsonl"
    tasks.write_text("".join(json.dumps({"id": f"t-{i:03d}", "task": f"[t-{i:03d}] create the file out/t-{i:03d}.txt",
                                         **({"max_steps": 3} if f"t-{i:03d}" in NEVER_SUBMIT else {})}) + "\n"
                             for i in range(N_TASKS)))
    out = root / "shift"
    with ScriptedServer(reply) as server:
        report = Shift(ShiftOptions(repo=repo, out=out, model="scripted", base_urls=[server.base_url], workers=8,
                                    sandbox=SANDBOX, heartbeat_s=0.2, max_attempts=1),
                       sources=[file_source(tasks)]).run()
    assert report.complete and report.counts["states"] == {"queued": 0, "running": 0, "done": 27, "failed": 3}
    return out


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    chrome = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield chrome
    chrome.close()


def nightowl_report(directory: Path, out: Path) -> None:
    result = nightowl("report", directory, "--out", out, "--usd-per-mtok", "0.2,0.8", timeout=300)
    assert result.returncode == 0, result.stderr
    assert out.is_file()


def keep_screenshot(path: Path) -> None:
    """NIGHTOWL_SCREENSHOT_DIR=DIR keeps a copy of the screenshots for a person to look at."""
    if os.environ.get("NIGHTOWL_SCREENSHOT_DIR"):
        shutil.copy(path, Path(os.environ["NIGHTOWL_SCREENSHOT_DIR"]) / path.name)


def test_shift_report_in_chromium(shift_dir: Path, browser: Chromium, tmp_path: Path) -> None:
    html = tmp_path / "shift-report.html"
    nightowl_report(shift_dir, html)
    page = browser.new_page(height=1500)
    page.navigate(html.as_uri())
    assert page.evaluate("document.body.dataset.ready") == "1"
    assert page.evaluate("document.querySelectorAll('#table-0 tbody tr').length") == N_TASKS
    assert page.evaluate("document.querySelectorAll('svg.chart').length") == 3
    summary = page.evaluate("document.querySelector('.summary').innerText")
    assert "27 done, 3 failed" in summary and "$" in summary

    # sort by tokens, descending on a second click; filter by text and by result
    page.click("#table-0 th:nth-child(6) button")
    page.click("#table-0 th:nth-child(6) button")
    tokens = page.evaluate("[...document.querySelectorAll('#table-0 tbody tr td:nth-child(6)')].map(td => +td.textContent)")
    assert tokens == sorted(tokens, reverse=True) and len(tokens) == N_TASKS and tokens[0] > tokens[-1]
    page.evaluate("(() => { const s = document.querySelector('#tools-0 select[data-key=result]');"
                  " s.value = 'max_steps'; s.dispatchEvent(new Event('change')); })()")
    shown = page.evaluate("[...document.querySelectorAll('#table-0 tbody tr td:first-child')].map(td => td.textContent)")
    assert sorted(shown) == sorted(NEVER_SUBMIT)
    page.evaluate("(() => { const s = document.querySelector('#tools-0 select[data-key=result]');"
                  " s.value = ''; s.dispatchEvent(new Event('change')); })()")
    page.evaluate(f"(() => {{ const f = document.getElementById('filter-0'); f.value = '{HOSTILE}';"
                  " f.dispatchEvent(new Event('input')); })()")
    assert page.evaluate("document.querySelectorAll('#table-0 tbody tr').length") == 1

    # open the hostile task's trajectory with a real click: markup stays text, nothing runs
    page.click("#table-0 tbody tr")
    pane = page.evaluate("document.getElementById('traj-0').innerText")
    assert INJECTION in pane and "<b>bold</b>" in pane and "\ufffd" in pane
    assert page.evaluate("window.__pwned === undefined && document.querySelectorAll('#traj-0 img').length === 0"
                         " && ![...document.querySelectorAll('#traj-0 b')].some(b => b.textContent === 'bold')")
    assert page.evaluate("document.querySelectorAll('#traj-0 .msg.role-assistant').length") == 4
    assert "I should look before I change anything" in page.evaluate("document.querySelector('#traj-0 .reasoning').innerText")
    assert page.evaluate("document.querySelectorAll('#traj-0 details.fold').length") >= 1  # seq 1 400 is folded
    assert page.evaluate("[...document.querySelectorAll('#traj-0 .d-add')].some(s => s.textContent.startsWith('+t-003'))")

    # back to all rows, open a failed task, and take the picture with both the table and a trajectory
    page.evaluate("(() => { const f = document.getElementById('filter-0'); f.value = '';"
                  " f.dispatchEvent(new Event('input')); })()")
    row = page.evaluate("[...document.querySelectorAll('#table-0 tbody tr')].findIndex(tr => tr.cells[0].textContent === 't-011')")
    page.click(f"#table-0 tbody tr:nth-child({row + 1})")
    assert page.evaluate("document.querySelector('#traj-0 h3').textContent") == "t-011"
    assert page.evaluate("document.querySelectorAll('#traj-0 .msg.role-assistant').length") == 3
    assert page.errors() == []
    page.evaluate("window.scrollTo(0, 0)")
    keep_screenshot(page.screenshot(tmp_path / "report-shift-top.png"))
    page.evaluate("document.getElementById('tools-0').scrollIntoView()")
    keep_screenshot(page.screenshot(tmp_path / "report-shift.png"))
    assert (tmp_path / "report-shift.png").stat().st_size > 10_000


def test_thousand_samples_stay_responsive(shift_dir: Path, browser: Chromium, tmp_path: Path) -> None:
    runs = sorted(p for p in (shift_dir / "runs").iterdir() if p.is_dir())
    gen = tmp_path / "generate"
    gen.mkdir()
    with (gen / "samples.jsonl").open("w") as f:
        for i in range(1000):
            t1, t2 = runs[i % len(runs)], runs[(i + 7) % len(runs)]
            f.write(json.dumps({"id": f"s{i:04d}", "commit": "abc123", "file": f"src/m{i % 17}.py", "function": f"f{i}",
                                "language": "python", "category": ["bug", "refactor", "feature"][i % 3],
                                "t1_run_dir": str(t1), "t1_patch": "", "pr": f"Fix <f{i}> & friends", "t2_run_dir": str(t2),
                                "t2_patch": "", "recall": None if i % 50 == 0 else (i % 11) / 10, "matched": i % 11,
                                "total": 10}) + "\n")
    (gen / "training_report.json").write_text(json.dumps({
        "loss": [{"step": s, "loss": 3 / (1 + s)} for s in range(0, 100, 5)],
        "eval_loss": [{"step": s, "eval_loss": 3.2 / (1 + s)} for s in range(0, 100, 20)], "epochs": 2}))
    html = tmp_path / "gen-report.html"
    nightowl_report(gen, html)
    page = browser.new_page()
    load_s = page.navigate(html.as_uri())
    assert page.evaluate("document.querySelectorAll('#table-0 tbody tr').length") == 1000
    timings = page.evaluate("""(() => {
        const t0 = performance.now();
        document.querySelector('#table-0 th:nth-child(6) button').click();
        const t1 = performance.now();
        const f = document.getElementById('filter-0'); f.value = 'refactor'; f.dispatchEvent(new Event('input'));
        const t2 = performance.now();
        document.querySelector('#table-0 tbody tr').click();
        const t3 = performance.now();
        return {sort: t1 - t0, filter: t2 - t1, open: t3 - t2,
                rows: document.querySelectorAll('#table-0 tbody tr').length};
    })()""")
    print(f"\n[1,000 samples: {html.stat().st_size / 1e6:.1f} MB, load {load_s:.2f} s, sort {timings['sort']:.0f} ms, "
          f"filter {timings['filter']:.0f} ms, open {timings['open']:.0f} ms]")
    assert timings["rows"] == 333
    assert load_s < 15 and timings["sort"] < 1000 and timings["filter"] < 1000 and timings["open"] < 1000
    recalls = page.evaluate("[...document.querySelectorAll('#table-0 tbody tr td:nth-child(6)')].map(td => td.textContent)")
    assert recalls[0] == "" or float(recalls[0]) >= float(recalls[-1] or 0)
    assert page.evaluate("document.querySelectorAll('#traj-0 .tab').length") == 2
    assert page.evaluate("document.querySelectorAll('section').length") == 2  # samples and training
    assert "training and eval loss" in page.evaluate("document.getElementById('section-1').innerHTML")
    assert page.errors() == []
    keep_screenshot(page.screenshot(tmp_path / "report-generate.png"))


def test_eval_report_in_chromium(shift_dir: Path, browser: Chromium, tmp_path: Path) -> None:
    """An eval directory as `nightowl eval` leaves it (`run_eval`): eval.json and a shift per model."""
    shutil.copytree(shift_dir, tmp_path / "eval" / "models" / "scripted-0a1b2c3d")
    per_task = [{"task_id": f"t-{i:03d}", "exit_status": "submitted", "submitted": True, "steps": 3, "valid_steps": 3,
                 "tokens": 100, "wall_s": 1.0, "recall": (i % 5) / 4, "resolved": None} for i in range(N_TASKS)]
    comparison = {"a": "base", "b": "scripted", "metric": "recall", "tasks": N_TASKS, "diff": 0.2, "ci": [0.1, 0.3],
                  "verdict": "better"}
    models = [{"model": name, "tasks": N_TASKS, "tool_call_validity": v, "submit_rate": v, "mean_recall": v,
               "recall_distribution": {"0.0": 3, "1.0": 2}, "resolve_rate": None, "resolve_tasks": 0, "mean_steps": 3.0,
               "mean_tokens": 100.0, "mean_wall_s": 1.0, "cost_per_task": None, "cost_basis": None,
               "exit_status": {"submitted": N_TASKS}} for name, v in (("base", 0.3), ("scripted", 0.5))]
    (tmp_path / "eval" / "eval.json").write_text(json.dumps({"metric": "recall", "models": models, "comparison": comparison,
                                                             "comparisons": [comparison], "per_task": {"scripted": per_task}}))
    html = tmp_path / "eval-report.html"
    nightowl_report(tmp_path / "eval", html)
    page = browser.new_page(height=1500)
    page.navigate(html.as_uri())
    assert page.evaluate("document.body.dataset.ready") == "1"
    assert page.evaluate("document.querySelectorAll('#table-0 tbody tr').length") == N_TASKS
    assert "better" in page.evaluate("document.querySelector('table.static:nth-of-type(2)').innerText")
    page.click("#table-0 tbody tr")
    assert page.evaluate("document.querySelector('#traj-0 h3').textContent") == "t-000"
    assert page.evaluate("document.querySelectorAll('#traj-0 .msg.role-assistant').length") >= 1
    assert page.errors() == []
    page.evaluate("window.scrollTo(0, 0)")
    keep_screenshot(page.screenshot(tmp_path / "report-eval.png"))
