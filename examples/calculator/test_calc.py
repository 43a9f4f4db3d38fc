import pytest
from calc import add, clamp, divide, mean, percent, power, running_total, sign


def test_add():
    assert add(2, 3) == 5


def test_mean():
    assert mean([1, 2, 3]) == 2


def test_mean_of_nothing():
    with pytest.raises(ValueError):
        mean([])


def test_divide_by_zero():
    with pytest.raises(ZeroDivisionError):
        divide(1, 0)


def test_power():
    assert power(2, 3) == 8
    assert power(2, -1) == 0.5


def test_clamp_percent_sign():
    assert clamp(5, 0, 3) == 3
    assert percent(1, 4) == 25.0
    assert sign(-2) == -1


def test_running_total():
    assert running_total([1, 2, 3]) == [1, 3, 6]
