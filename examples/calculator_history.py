#!/usr/bin/env python3
"""Build the example calculator as a git repository with a real history: 29 small commits over four months.

Features arrive with their tests, bugs are introduced and fixed with regression tests, functions are renamed,
and the last commits introduce the two bugs the quickstart's tasks ask to fix, so HEAD is byte for byte the
bundled examples/calculator (calc.py, test_calc.py). Dates and authors are fixed: every build gives the same
commit hashes.

    python3 examples/calculator_history.py DEST
    nightowl bench-history DEST --since 2026-03-01 --until 2026-04-01 --out tasks.jsonl

The commits from 2026-03-01 to 2026-04-01 are the held-out benchmark: 9 tasks, 7 with a test check that fails
before the change and passes after it (tests/training/evaluation/test_example_history.py checks both); everything
before 2026-03-01 is history a model may learn from. Standard library only.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
FINAL = HERE / "calculator"
HOLDOUT_SINCE, HOLDOUT_UNTIL = "2026-03-01", "2026-04-01"
AUTHORS = {"ada": ("Ada Byron", "ada@example.com"), "lin": ("Lin Chen", "lin@example.com")}

CALC_START = '''"""Small calculator functions."""


def add(a: float, b: float) -> float:
    """Return the sum of a and b."""
    return a + b


def subtract(a: float, b: float) -> float:
    """Return a minus b."""
    return a - b
'''
TESTS_START = '''from calc import add, subtract


def test_add():
    assert add(2, 3) == 5


def test_subtract():
    assert subtract(5, 3) == 2
'''
NIGHTOWL_TOML = '''# The environment nightowl's agents and eval checks run in: pytest in a venv at /env/venv,
# built once per commit with the network on (see "The repository's toolchain and dependencies" in nightowl's README).
[sandbox]
path = ["/env/venv/bin"]

[environment]
setup = "python3 -m venv /env/venv && /env/venv/bin/pip install -q --disable-pip-version-check pytest==8.4.2"
timeout_s = 600
'''
README = '''# calc

Small calculator functions with tests. Run the tests with `python -m pytest -q`.
'''


def fn(text: str) -> str:
    """A function definition as it is appended to a module: two blank lines before it."""
    return "\n\n" + text


# (date, author, message, operations); an operation is ("write", path, text), ("append", path, text) or
# ("replace", path, old, new) with `old` occurring exactly once.
COMMITS: list[tuple[str, str, str, list[tuple[str, ...]]]] = [
    ("2026-01-05T10:12:00", "ada", "Start a calculator module with add() and subtract()",
     [("write", "calc.py", CALC_START), ("write", "test_calc.py", TESTS_START),
      ("write", "nightowl.toml", NIGHTOWL_TOML)]),
    ("2026-01-07T15:40:00", "ada", "Add multiply()",
     [("append", "calc.py", fn('def multiply(a: float, b: float) -> float:\n    """Return the product of a and b."""\n'
                               "    return a * b\n")),
      ("replace", "test_calc.py", "from calc import add, subtract", "from calc import add, multiply, subtract"),
      ("append", "test_calc.py", fn("def test_multiply():\n    assert multiply(4, 2.5) == 10\n"))]),
    ("2026-01-09T09:05:00", "lin", "Add divide()",
     [("append", "calc.py", fn('def divide(a: float, b: float) -> float:\n    """Return a divided by b."""\n'
                               "    return a // b\n")),
      ("replace", "test_calc.py", "from calc import add, multiply", "from calc import add, divide, multiply"),
      ("append", "test_calc.py", fn("def test_divide():\n    assert divide(6, 3) == 2\n"))]),
    ("2026-01-12T11:30:00", "ada", "divide(1, 2) returns 0 instead of 0.5: use true division",
     [("replace", "calc.py", "    return a // b\n", "    return a / b\n"),
      ("replace", "test_calc.py", "    assert divide(6, 3) == 2\n",
       "    assert divide(6, 3) == 2\n    assert divide(1, 2) == 0.5\n")]),
    ("2026-01-14T16:20:00", "lin", "Raise a clear ZeroDivisionError from divide()",
     [("replace", "calc.py", "    return a / b\n",
       '    if b == 0:\n        raise ZeroDivisionError("division by zero")\n    return a / b\n'),
      ("write", "test_calc.py", "import pytest\n\n" + TESTS_START.replace(
          "from calc import add, subtract", "from calc import add, divide, multiply, subtract")
       + fn("def test_multiply():\n    assert multiply(4, 2.5) == 10\n")
       + fn("def test_divide():\n    assert divide(6, 3) == 2\n    assert divide(1, 2) == 0.5\n")
       + fn('def test_divide_by_zero():\n    with pytest.raises(ZeroDivisionError, match="division by zero"):\n'
            "        divide(1, 0)\n"))]),
    ("2026-01-16T10:00:00", "ada", "Add power() for whole exponents",
     [("append", "calc.py", fn('def power(base: float, exponent: int) -> float:\n'
                               '    """Return base raised to a whole exponent."""\n    result = 1\n'
                               "    for _ in range(exponent):\n        result *= base\n    return result\n")),
      ("replace", "test_calc.py", "multiply, subtract\n", "multiply, power, subtract\n"),
      ("append", "test_calc.py", fn("def test_power():\n    assert power(2, 3) == 8\n    assert power(5, 0) == 1\n"))]),
    ("2026-01-20T14:45:00", "lin", "power(2, -1) returns 1; a negative exponent should give the reciprocal",
     [("replace", "calc.py", "    for _ in range(exponent):\n        result *= base\n    return result\n",
       "    for _ in range(abs(exponent)):\n        result *= base\n"
       "    return result if exponent >= 0 else 1 / result\n"),
      ("replace", "test_calc.py", "    assert power(5, 0) == 1\n",
       "    assert power(5, 0) == 1\n    assert power(2, -1) == 0.5\n")]),
    ("2026-01-22T09:15:00", "ada", "Add a README", [("write", "README.md", README)]),
    ("2026-01-26T13:00:00", "ada", "Add average()",
     [("append", "calc.py", fn('def average(values: list[float]) -> float:\n    """Return the arithmetic mean."""\n'
                               "    return sum(values) / len(values)\n")),
      ("replace", "test_calc.py", "from calc import add, divide", "from calc import add, average, divide"),
      ("append", "test_calc.py", fn("def test_average():\n    assert average([1, 2, 3]) == 2\n"))]),
    ("2026-01-28T17:10:00", "lin", "Rename average() to mean(), the name the statistics module uses",
     [("replace", "calc.py", "def average(", "def mean("),
      ("replace", "test_calc.py", "from calc import add, average, divide, multiply, power, subtract",
       "from calc import add, divide, mean, multiply, power, subtract"),
      ("replace", "test_calc.py", "def test_average():\n    assert average([1, 2, 3]) == 2\n",
       "def test_mean():\n    assert mean([1, 2, 3]) == 2\n")]),
    ("2026-01-30T10:40:00", "ada", "mean([]) raises ZeroDivisionError; raise ValueError with a clear message",
     [("replace", "calc.py", "    return sum(values) / len(values)\n",
       '    if not values:\n        raise ValueError("mean of an empty list")\n    return sum(values) / len(values)\n'),
      ("append", "test_calc.py", fn('def test_mean_of_nothing():\n    with pytest.raises(ValueError, match="empty"):\n'
                                    "        mean([])\n"))]),
    ("2026-02-03T15:05:00", "lin", "Add clamp()",
     [("append", "calc.py", fn('def clamp(value: float, low: float, high: float) -> float:\n'
                               '    """Return value limited to the range [low, high]."""\n    if value < low:\n'
                               "        return low\n    if value > high:\n        return high\n    return value\n")),
      ("replace", "test_calc.py", "from calc import add, divide", "from calc import add, clamp, divide"),
      ("append", "test_calc.py", fn("def test_clamp():\n    assert clamp(5, 0, 3) == 3\n"
                                    "    assert clamp(-1, 0, 3) == 0\n"
                                    "    assert clamp(2, 0, 3) == 2\n"))]),
    ("2026-02-05T11:25:00", "ada", "clamp() with low above high returns nonsense: raise ValueError",
     [("replace", "calc.py", '    """Return value limited to the range [low, high]."""\n    if value < low:\n',
       '    """Return value limited to the range [low, high]."""\n    if low > high:\n'
       '        raise ValueError("low is above high")\n    if value < low:\n'),
      ("append", "test_calc.py", fn("def test_clamp_with_low_above_high():\n    with pytest.raises(ValueError):\n"
                                    "        clamp(1, 3, 0)\n"))]),
    ("2026-02-09T09:50:00", "lin", "Ignore Python caches", [("write", ".gitignore", "__pycache__/\n.pytest_cache/\n")]),
    ("2026-02-12T14:30:00", "ada", "Add percent()",
     [("append", "calc.py", fn('def percent(part: float, whole: float) -> float:\n'
                               '    """Return part as a percentage of whole."""\n    return 100.0 * part / whole\n')),
      ("replace", "test_calc.py", "multiply, power, subtract", "multiply, percent, power, subtract"),
      ("append", "test_calc.py", fn("def test_percent():\n    assert percent(1, 4) == 25.0\n"))]),
    ("2026-02-16T16:00:00", "lin", "percent() of a zero whole raises ZeroDivisionError; raise ValueError instead",
     [("replace", "calc.py", "    return 100.0 * part / whole\n",
       '    if whole == 0:\n        raise ValueError("whole is zero")\n    return 100.0 * part / whole\n'),
      ("append", "test_calc.py", fn('def test_percent_of_a_zero_whole():\n    with pytest.raises(ValueError, '
                                    'match="zero"):\n        percent(1, 0)\n'))]),
    # -- held out from here (bench-history --since 2026-03-01 --until 2026-04-01) --
    ("2026-03-02T10:20:00", "ada", "Add sign(): -1, 0 or 1 by the sign of a number",
     [("append", "calc.py", fn('def sign(value: float) -> int:\n    """Return -1, 0 or 1 by the sign of value."""\n'
                               "    if value >= 0:\n        return 1\n    return -1\n")),
      ("replace", "test_calc.py", "percent, power, subtract", "percent, power, sign, subtract"),
      ("append", "test_calc.py", fn("def test_sign():\n    assert sign(-2) == -1\n    assert sign(7) == 1\n"))]),
    ("2026-03-04T15:35:00", "lin", "sign(0) returns 1; it should return 0",
     [("replace", "calc.py", "    if value >= 0:\n        return 1\n    return -1\n",
       "    if value > 0:\n        return 1\n    if value < 0:\n        return -1\n    return 0\n"),
      ("replace", "test_calc.py", "    assert sign(7) == 1\n", "    assert sign(7) == 1\n    assert sign(0) == 0\n")]),
    ("2026-03-09T11:00:00", "ada", "Add cumulative(): the running sums of a list",
     [("append", "calc.py", fn('def cumulative(values: list[float]) -> list[float]:\n'
                               '    """Return the cumulative sums of values."""\n    totals, total = [], 0\n'
                               "    for value in values:\n        totals.append(total)\n        total += value\n"
                               "    return totals\n")),
      ("replace", "test_calc.py", "from calc import add, clamp, divide",
       "from calc import add, clamp, cumulative, divide"),
      ("append", "test_calc.py", fn("def test_cumulative():\n    assert cumulative([]) == []\n"))]),
    ("2026-03-11T09:45:00", "lin", "cumulative([1, 2, 3]) returns [0, 1, 3] instead of [1, 3, 6]",
     [("replace", "calc.py", "        totals.append(total)\n        total += value\n",
       "        total += value\n        totals.append(total)\n"),
      ("replace", "test_calc.py", "    assert cumulative([]) == []\n",
       "    assert cumulative([]) == []\n    assert cumulative([1, 2, 3]) == [1, 3, 6]\n")]),
    ("2026-03-13T14:10:00", "ada", "power() returns an int for whole numbers; always return a float",
     [("replace", "calc.py", "    result = 1\n", "    result = 1.0\n"),
      ("replace", "test_calc.py", "    assert power(2, -1) == 0.5\n",
       "    assert power(2, -1) == 0.5\n    assert isinstance(power(2, 3), float)\n")]),
    ("2026-03-17T10:30:00", "lin", "Rename cumulative() to running_total()",
     [("replace", "calc.py", "def cumulative(", "def running_total("),
      ("replace", "test_calc.py", "from calc import add, clamp, cumulative, divide, mean, multiply, percent, power, "
       "sign, subtract", "from calc import add, clamp, divide, mean, multiply, percent, power, running_total, sign, "
       "subtract"),
      ("replace", "test_calc.py", "def test_cumulative():\n    assert cumulative([]) == []\n"
       "    assert cumulative([1, 2, 3]) == [1, 3, 6]\n",
       "def test_running_total():\n    assert running_total([]) == []\n"
       "    assert running_total([1, 2, 3]) == [1, 3, 6]\n")]),
    ("2026-03-20T16:45:00", "ada", "running_total() should return floats like the other functions",
     [("replace", "calc.py", "    totals, total = [], 0\n", "    totals, total = [], 0.0\n"),
      ("replace", "test_calc.py", "    assert running_total([1, 2, 3]) == [1, 3, 6]\n",
       "    assert running_total([1, 2, 3]) == [1, 3, 6]\n"
       "    assert all(isinstance(t, float) for t in running_total([1, 2]))\n")]),
    ("2026-03-24T11:15:00", "lin", "Simplify clamp() with min() and max()",
     [("replace", "calc.py", "    if value < low:\n        return low\n    if value > high:\n        return high\n"
       "    return value\n", "    return max(low, min(value, high))\n")]),
    ("2026-03-27T09:40:00", "ada", "Say in the docstrings which errors divide() and mean() raise",
     [("replace", "calc.py", '"""Return a divided by b."""',
       '"""Return a divided by b; raises ZeroDivisionError when b is 0."""'),
      ("replace", "calc.py", '"""Return the arithmetic mean."""',
       '"""Return the arithmetic mean; raises ValueError on an empty list."""')]),
    # -- after the benchmark window: the tests consolidated, then the two bugs the quickstart's tasks fix --
    ("2026-04-02T10:05:00", "lin", "Consolidate the tests", [("write", "test_calc.py", "@FINAL:test_calc.py")]),
    ("2026-04-07T15:20:00", "ada", "Simplify mean()",
     [("replace", "calc.py", '    if not values:\n        raise ValueError("mean of an empty list")\n', "")]),
    ("2026-04-10T13:55:00", "lin", "Tidy add() and subtract()",
     [("replace", "calc.py", "    return a + b\n", "    return a - b\n")]),
    ("2026-04-14T10:00:00", "ada", "Describe the module for the quickstart",
     [("replace", "calc.py", '"""Small calculator functions."""',
       '"""A small calculator module for the quickstart (it has a bug or two)."""')]),
]


def apply(repo: Path, operation: tuple[str, ...]) -> None:
    kind, path = operation[0], repo / operation[1]
    if kind == "write":
        text = operation[2]
        if text.startswith("@FINAL:"):
            text = (FINAL / text.removeprefix("@FINAL:")).read_text(encoding="utf-8")
        path.write_text(text, encoding="utf-8")
    elif kind == "append":
        path.write_text(path.read_text(encoding="utf-8") + operation[2], encoding="utf-8")
    elif kind == "replace":
        text, old, new = path.read_text(encoding="utf-8"), operation[2], operation[3]
        if text.count(old) != 1:
            raise SystemExit(f"history script bug: {old!r} occurs {text.count(old)} times in {operation[1]}")
        path.write_text(text.replace(old, new), encoding="utf-8")
    else:
        raise SystemExit(f"history script bug: unknown operation {kind!r}")


def git(repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def build(dest: Path) -> None:
    if dest.exists():
        raise SystemExit(f"error: {dest} already exists; pick a new directory")
    dest.mkdir(parents=True)
    git(dest, "init", "-q", "-b", "main")
    for date, author, message, operations in COMMITS:
        for operation in operations:
            apply(dest, operation)
        name, email = AUTHORS[author]
        env = {**os.environ, "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email, "GIT_COMMITTER_NAME": name,
               "GIT_COMMITTER_EMAIL": email, "GIT_AUTHOR_DATE": f"{date}+00:00", "GIT_COMMITTER_DATE": f"{date}+00:00"}
        git(dest, "add", "-A", env=env)
        git(dest, "-c", "commit.gpgsign=false", "commit", "-q", "-m", message, env=env)
    for name in ("calc.py", "test_calc.py"):
        if (dest / name).read_bytes() != (FINAL / name).read_bytes():
            raise SystemExit(f"history script bug: {name} at HEAD differs from examples/calculator/{name}")


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        raise SystemExit("usage: examples/calculator_history.py DEST")
    dest = Path(sys.argv[1])
    build(dest)
    print(f"example repository with {len(COMMITS)} commits ready at {dest}; its held-out benchmark: nightowl "
          f"bench-history {dest} --since {HOLDOUT_SINCE} --until {HOLDOUT_UNTIL} --out tasks.jsonl")


if __name__ == "__main__":
    main()
