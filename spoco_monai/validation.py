"""Checks of numeric options, done once where a user's value enters a loss, transform or clustering function."""

from __future__ import annotations

from numbers import Real

__all__ = [
    "check_positive",
    "check_non_negative",
    "check_open_unit_interval",
    "check_unit_interval",
    "check_positive_int",
    "check_int",
]


def _check_real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, found {type(value).__name__} ({value!r}).")
    return float(value)


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float, raising unless it is a real number > 0."""
    number = _check_real(name, value)
    if not number > 0:
        raise ValueError(f"{name} must be > 0, found {value!r}.")
    return number


def check_non_negative(name: str, value: object) -> float:
    """Return ``value`` as a float, raising unless it is a real number >= 0."""
    number = _check_real(name, value)
    if not number >= 0:
        raise ValueError(f"{name} must be >= 0, found {value!r}.")
    return number


def check_open_unit_interval(name: str, value: object) -> float:
    """Return ``value`` as a float, raising unless 0 < value < 1."""
    number = _check_real(name, value)
    if not 0 < number < 1:
        raise ValueError(f"{name} must lie in the open interval (0, 1), found {value!r}.")
    return number


def check_unit_interval(name: str, value: object) -> float:
    """Return ``value`` as a float, raising unless 0 <= value <= 1."""
    number = _check_real(name, value)
    if not 0 <= number <= 1:
        raise ValueError(f"{name} must lie in [0, 1], found {value!r}.")
    return number


def check_int(name: str, value: object) -> int:
    """Return ``value``, raising unless it is an integer (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, found {type(value).__name__} ({value!r}).")
    return value


def check_positive_int(name: str, value: object) -> int:
    """Return ``value``, raising unless it is an integer >= 1."""
    number = check_int(name, value)
    if number < 1:
        raise ValueError(f"{name} must be >= 1, found {value!r}.")
    return number
