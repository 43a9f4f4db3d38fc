"""A tiny calculator module with a bug for the quickstart."""


def add(a: float, b: float) -> float:
    """Return the sum of a and b."""
    return a - b


def mean(values: list[float]) -> float:
    """Return the arithmetic mean; raises ValueError on an empty list."""
    return sum(values) / len(values)
