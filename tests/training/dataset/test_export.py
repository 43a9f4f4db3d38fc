"""Export: golden row, filters, split by task and by SVG sample, truncation rule, scrubbing, determinism, datasets."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.training.helpers import (
    DATA,
    GOLDEN_TRAJECTORY,
    conversation,
    make_generate,
    make_shift,
    read_rows,
    trajectory,
)
from training.dataset.export import ExportError, ExportOptions, export
from training.dataset.sources import SourceError


def run_export(tmp_path: Path, *sources: Path, name: str = "ds", **kw) -> Path:
    out = tmp_path / name
    export(ExportOptions(sources=list(sources), out=out, **kw))
    return out


def test_golden_trajectory_gives_the_stored_row(tmp_path: Path) -> None:
    run = tmp_path / "shift" / "runs" / "fix-add.1"
    run.mkdir(parents=True)
    shutil.copy(GOLDEN_TRAJECTORY, run / "trajectory.json")
    out = run_export(tmp_path, tmp_path / "shift", val_share=0.0)
    (row,) = read_rows(out / "train.jsonl")
    assert row == json.loads((DATA / "golden-row.json").read_text(encoding="utf-8"))
    source = json.loads(GOLDEN_TRAJECTORY.read_text(encoding="utf-8"))
    # messages exactly as sent up to the last assistant turn; arguments stay JSON strings
    assert row["messages"] == source["messages"][:-1] and row["tools"] == source["tools"]
    assert all(isinstance(c["function"]["arguments"], str) for m in row["messages"] for c in m.get("tool_calls", []))
    assert read_rows(out / "val.jsonl") == []


def test_shift_and_generate_sources_filters_and_card(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {
        "ok": [trajectory(conversation("ok"), "x")],
        "failed-then-ok": [trajectory(conversation("f1"), "x", exit_status="max_steps"),
                           trajectory(conversation("f2"), "x")],
        "big": [trajectory(conversation("big"), "x", patch="\n".join(["+x"] * 50))],
    })
    gen = make_generate(tmp_path / "gen", [
        {"id": "s1", "recall": 1.0, "t1": trajectory(conversation("s1 t1"), "a"), "t2": trajectory(conversation("s1 t2"), "b")},
        {"id": "s2", "recall": 0.25, "t1": trajectory(conversation("s2 t1"), "c"), "t2": trajectory(conversation("s2 t2"), "d")},
        {"id": "s3", "recall": None, "t1": trajectory(conversation("s3 t1"), "e"), "t2": None},
    ])
    out = run_export(tmp_path, shift, gen, min_recall=0.5, max_changed_lines=40, val_share=0.0)
    rows = read_rows(out / "train.jsonl")
    by = {(r["metadata"]["source"], r["metadata"]["task_id"] or r["metadata"]["sample_id"]) for r in rows}
    assert by == {("task", "ok"), ("task", "failed-then-ok"), ("svg-t1", "s1"), ("svg-t2", "s1"),
                  ("svg-t1", "s2"), ("svg-t1", "s3")}
    t2 = next(r for r in rows if r["metadata"]["source"] == "svg-t2")
    assert t2["metadata"]["recall"] == 1.0 and t2["metadata"]["category"] == "edge cases"
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["counts"]["train_by_source"] == {"svg-t1": 3, "svg-t2": 1, "task": 2}
    assert meta["dropped"] == {"below_min_recall": 1, "not_submitted": 1, "too_many_changed_lines": 1}
    assert meta["filters"]["min_recall"] == 0.5 and meta["tools"] == [rows[0]["tools"]]
    assert meta["nightowl_version"]


def test_unsubmitted_rows_can_be_kept(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x", exit_status="max_steps")]})
    assert len(read_rows(run_export(tmp_path, shift, val_share=0.0, submitted_only=False) / "train.jsonl")) == 1


def test_split_keeps_tasks_and_sample_pairs_together_and_is_deterministic(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {f"task-{i}": [trajectory(conversation(f"{i}a"), "x"),
                                                          trajectory(conversation(f"{i}b"), "x")] for i in range(30)})
    gen = make_generate(tmp_path / "gen", [{"id": f"s{i}", "recall": 1.0, "t1": trajectory(conversation(f"t1 {i}"), "a"),
                                            "t2": trajectory(conversation(f"t2 {i}"), "b")} for i in range(30)])
    out = run_export(tmp_path, shift, gen, val_share=0.3)
    train, val = read_rows(out / "train.jsonl"), read_rows(out / "val.jsonl")
    assert len(train) + len(val) == 120 and 0 < len(val) < 120
    side = {}
    for name, rows in (("train", train), ("val", val)):
        for r in rows:
            key = r["metadata"]["task_id"] or r["metadata"]["sample_id"]
            assert side.setdefault(key, name) == name, f"{key} is on both sides"
    assert len(side) == 60
    again = run_export(tmp_path, gen, shift, name="again", val_share=0.3)  # source order does not matter
    for name in ("train.jsonl", "val.jsonl", "dataset.json"):
        if name != "dataset.json":
            assert (out / name).read_bytes() == (again / name).read_bytes()


def test_small_exports_still_get_a_validation_side(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x")],
                                            "b": [trajectory(conversation("b"), "x")]})
    out = run_export(tmp_path, shift, val_share=0.01)
    assert len(read_rows(out / "train.jsonl")) == 1 and len(read_rows(out / "val.jsonl")) == 1


def test_reasoning_becomes_a_think_block_for_templates_without_it(tmp_path: Path) -> None:
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a", reasoning="I think"), "x")]})
    (row,) = read_rows(run_export(tmp_path, shift, val_share=0.0) / "train.jsonl")
    assistant = [m for m in row["messages"] if m["role"] == "assistant"]
    assert assistant[0]["content"] == "<think>\nI think 0\n</think>\n\nStep 0 of a."
    assert all("reasoning_content" not in m for m in assistant)


def test_scrubs_secrets_and_counts_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "s3cr3t-value-from-env")
    messages = conversation("a", turns=2)
    ghp = "ghp_" + "A1b2C3d4" * 5
    messages[3]["content"] = (f"GITHUB_TOKEN={ghp}\nAWS AKIAABCDEFGHIJKLMNOP\nenv: s3cr3t-value-from-env\n"
                              "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
                              "cat /home/alice/.ssh/id_ed25519 and /root/.aws/credentials\nnormal line")
    messages[2]["tool_calls"][0]["function"]["arguments"] = json.dumps({"command": "export API_KEY=abcdefgh12345678"})
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(messages, "x")]})
    out = run_export(tmp_path, shift, val_share=0.0)
    (row,) = read_rows(out / "train.jsonl")
    text = json.dumps(row)
    for secret in (ghp, "AKIAABCDEFGHIJKLMNOP", "s3cr3t-value-from-env", "abc\\n-----END", "id_ed25519",
                   ".aws/credentials", "abcdefgh12345678"):
        assert secret not in text
    assert "normal line" in row["messages"][3]["content"]
    args = row["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(args) == {"command": "export API_KEY=[scrubbed:secret_assignment]"}
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["scrubbed"] == {"aws_access_key": 1, "environment_secret": 1, "github_token": 1, "hidden_path": 2,
                                "private_key": 1, "secret_assignment": 1}
    assert row["metadata"]["scrubbed"] == 7
    untouched = conversation("a")[2]["tool_calls"][0]["function"]["arguments"]
    assert row["messages"][4]["tool_calls"][0]["function"]["arguments"] == conversation("a")[4]["tool_calls"][0][
        "function"]["arguments"] and untouched == json.dumps({"command": "echo 0"})


def test_undecodable_bytes_survive_as_escapes(tmp_path: Path) -> None:
    messages = conversation("a")
    messages[3]["content"] = b"caf\xe9 bytes".decode("utf-8", "surrogateescape")
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(messages, "x")]})
    (row,) = read_rows(run_export(tmp_path, shift, val_share=0.0) / "train.jsonl")
    assert row["messages"][3]["content"].encode("utf-8", "surrogateescape") == b"caf\xe9 bytes"


def test_truncation_cuts_after_the_last_fitting_assistant_turn(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from training.dataset.export import TokenCounter

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    counter = TokenCounter(tok)
    long_obs = "word " * 60
    messages = conversation("long", turns=6, observation=long_obs)[:-1]  # ends with the last assistant turn
    full = counter(messages, None)
    ends = [k + 1 for k, m in enumerate(messages) if m["role"] == "assistant"]
    per_end = {k: counter(messages[:k], None) for k in ends}
    budget = per_end[ends[3]] + 5  # fits 4 assistant turns, not 5
    shift = make_shift(tmp_path / "shift", {"long": [trajectory(messages, "x", tools=[])],
                                            "short": [trajectory(conversation("s", turns=1), "x", tools=[])]})
    out = run_export(tmp_path, shift, val_share=0.0, tokenizer=str(tiny_model_dir), max_tokens=budget,
                     min_fit_share=0.0)
    rows = {r["metadata"]["task_id"]: r for r in read_rows(out / "train.jsonl")}
    cut = rows["long"]
    assert cut["messages"] == messages[:ends[3]] and cut["messages"][-1]["role"] == "assistant"
    assert cut["metadata"]["truncated"] and cut["metadata"]["tokens"] == per_end[ends[3]] <= budget
    assert cut["metadata"]["fit_share"] == pytest.approx(per_end[ends[3]] / full)
    assert not rows["short"]["metadata"]["truncated"] and rows["short"]["metadata"]["fit_share"] is None
    # a trajectory whose fitting share is below --min-fit-share is dropped, not cut
    strict = run_export(tmp_path, shift, name="strict", val_share=0.0, tokenizer=str(tiny_model_dir),
                        max_tokens=budget, min_fit_share=0.95)
    assert [r["metadata"]["task_id"] for r in read_rows(strict / "train.jsonl")] == ["short"]
    meta = json.loads((strict / "dataset.json").read_text())
    assert meta["dropped"] == {"too_long": 1} and meta["tokens"]["train"]["rows"] == 1
    # nothing fits: dropped, never cut mid-turn
    # nothing fits: dropped, never cut mid-turn; with no row left the export refuses and says why, writing nothing
    from training.dataset.export import ExportError
    with pytest.raises(ExportError, match=r"all 2 trajectories .* were dropped \(too_long 2\)"):
        run_export(tmp_path, shift, name="tiny", val_share=0.0, tokenizer=str(tiny_model_dir), max_tokens=10,
                   min_fit_share=0.0)
    assert not (tmp_path / "tiny").exists()


def test_datasets_loads_the_export(tmp_path: Path) -> None:
    import datasets
    messages = conversation("a", turns=3, reasoning="hmm")
    shift = make_shift(tmp_path / "shift", {f"t{i}": [trajectory(messages, "x")] for i in range(6)})
    run = tmp_path / "g" / "runs" / "fix.1"
    run.mkdir(parents=True)
    shutil.copy(GOLDEN_TRAJECTORY, run / "trajectory.json")
    out = run_export(tmp_path, shift, tmp_path / "g", val_share=0.3)
    ds = datasets.load_dataset("json", data_files={"train": str(out / "train.jsonl"),
                                                   "validation": str(out / "val.jsonl")})
    assert ds["train"].num_rows + ds["validation"].num_rows == 7
    first = ds["train"][0]
    assert first["messages"][0]["role"] == "system" and first["metadata"]["source"] == "task"


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a directory"):
        run_export(tmp_path, tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no samples.jsonl"):
        run_export(tmp_path, empty)
    shift = make_shift(tmp_path / "shift", {"a": [trajectory(conversation("a"), "x")]})
    with pytest.raises(ValueError, match="--max-tokens needs --tokenizer"):
        run_export(tmp_path, shift, max_tokens=100)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="not empty"):
        export(ExportOptions(sources=[shift], out=taken))
    assert (taken / "keep.txt").read_text() == "mine" and not (tmp_path / "ds").exists()


def test_an_empty_source_is_refused_naming_it(tmp_path: Path) -> None:
    from training.dataset.export import ExportError
    empty = tmp_path / "gen"
    empty.mkdir()
    (empty / "samples.jsonl").write_text("")
    with pytest.raises(ExportError, match=r"nothing to export: no trajectories in .*gen"):
        run_export(tmp_path, empty)
    assert not (tmp_path / "ds").exists()


def test_train_on_an_empty_dataset_says_where_it_came_from(tmp_path: Path) -> None:
    from training.finetune.train import empty_dataset_message
    data = tmp_path / "ds"
    data.mkdir()
    (data / "train.jsonl").write_text("")
    (data / "dataset.json").write_text(json.dumps({"sources": ["/runs/gen"], "candidates": 4, "dropped": {"too_long": 4}}))
    said = empty_dataset_message(data, 32768, 0)
    assert "holds no rows" in said and "/runs/gen" in said and "4 trajectories" in said and "too_long" in said
    assert "too long" in empty_dataset_message(data, 512, 3)
