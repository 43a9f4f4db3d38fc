"""The change categories a T1 prompt is built from: our own bank of ~50 areas where code can be improved.

Each is phrased as an area to look into, not as a prescribed fix, so teachers produce bug fixes, hardening,
refactors and documentation alike.
"""
from __future__ import annotations

import hashlib
import random

CATEGORIES: tuple[str, ...] = (
    "releasing files, sockets or locks on every path out of the code",
    "checking arguments before they are used",
    "what happens when a call it depends on raises or returns an error",
    "error messages that do not say what went wrong or how to fix it",
    "state that is left half-updated when something fails midway",
    "behaviour when the same object is used from several threads or tasks",
    "the promises the public signature and docstring make versus what the body does",
    "work that is repeated needlessly or grows faster than it should with input size",
    "empty inputs, single elements and other boundary sizes",
    "off-by-one mistakes in ranges, slices or loop bounds",
    "None/null/nil values flowing where a real value is expected",
    "documentation that is missing, stale or misleading",
    "logic duplicated here and elsewhere that could drift apart",
    "the order in which steps run and whether it matters",
    "type conversions and lossy casts",
    "text encodings, bytes versus strings, and non-ASCII input",
    "time zones, clocks and durations",
    "numeric overflow, rounding and floating-point comparisons",
    "default values that surprise callers (shared mutable defaults, magic constants)",
    "naming that hides what a value or step really means",
    "branches that can never run or conditions that are always true",
    "configuration values that are read but not respected",
    "paths, separators and files that may not exist",
    "retry, timeout and cancellation behaviour",
    "logging that is too noisy, too quiet or leaks sensitive data",
    "caching that can return stale or wrong results",
    "resource limits: unbounded memory, recursion depth or queue growth",
    "comparisons and equality that ignore an important field",
    "sorting stability and deterministic output",
    "input that comes from users or the network and is trusted too much",
    "backwards compatibility of the behaviour callers rely on",
    "a function doing too many things that would read better split up",
    "early returns and guard clauses that would simplify nested logic",
    "return values that mix several meanings (sentinels, silent fallbacks)",
    "exceptions that are swallowed or too broad",
    "iteration that mutates the collection it walks",
    "string building, formatting and escaping",
    "interaction with the environment: environment variables, the current directory, global state",
    "consistency with how similar functions in the same module behave",
    "missing or wrong type annotations",
    "handling of optional features or dependencies that may be absent",
    "async/await misuse: blocking calls, forgotten awaits, unhandled tasks",
    "lifetimes and ownership of objects it creates or receives",
    "copying versus aliasing of data that callers may still hold",
    "validation of the output it produces before handing it back",
    "the contract with its callers when it is given unexpected combinations of options",
    "performance of hot paths: allocations, lookups and conversions inside loops",
    "readability: dense expressions, unclear control flow, dead code",
    "how it reports progress or partial results",
    "assumptions about the platform (OS, filesystem case sensitivity, line endings)",
    "idempotence: calling it twice should not do the work or the damage twice",
    "the way it handles very large inputs",
)


def pick_category(sample_id: str, attempt: int, seed: int, exclude: tuple[str, ...] = ()) -> str:
    """Deterministic for (seed, sample, attempt); a retry never repeats a category already tried."""
    digest = hashlib.sha256(f"{seed}:{sample_id}:{attempt}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    choices = [c for c in CATEGORIES if c not in exclude] or list(CATEGORIES)
    return rng.choice(choices)
