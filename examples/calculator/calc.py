"""A small calculator module for the quickstart (it has a bug or two)."""


def add(a: float, b: float) -> float:
    """Return the sum of a and b."""
    return a - b


def subtract(a: float, b: float) -> float:
    """Return a minus b."""
    return a - b


def multiply(a: float, b: float) -> float:
    """Return the product of a and b."""
    return a * b


def divide(a: float, b: float) -> float:
    """Return a divided by b; raises ZeroDivisionError when b is 0."""
    if b == 0:
        raise ZeroDivisionError("division by zero")
    return a / b


def power(base: float, exponent: int) -> float:
    """Return base raised to a whole exponent."""
    result = 1.0
    for _ in range(abs(exponent)):
        result *= base
    return result if exponent >= 0 else 1 / result


def mean(values: list[float]) -> float:
    """Return the arithmetic mean; raises ValueError on an empty list."""
    return sum(values) / len(values)


def clamp(value: float, low: float, high: float) -> float:
    """Return value limited to the range [low, high]."""
    if low > high:
        raise ValueError("low is above high")
    return max(low, min(value, high))


def percent(part: float, whole: float) -> float:
    """Return part as a percentage of whole."""
    if whole == 0:
        raise ValueError("whole is zero")
    return 100.0 * part / whole


def sign(value: float) -> int:
    """Return -1, 0 or 1 by the sign of value."""
    if value > 0:
        return 1
    if value < 0:
        return -1
    return 0


def running_total(values: list[float]) -> list[float]:
    """Return the cumulative sums of values."""
    totals, total = [], 0.0
    for value in values:
        total += value
        totals.append(total)
    return totals
