"""A failed bundle run ends with the one line that says what went wrong.

MONAI's ``ConfigParser`` wraps the error of any config expression as ``RuntimeError: Failed to evaluate ...``, so
the error a check of this package raises (a dataset check naming the file, an existing output) is printed in the
middle of two tracebacks of some fifty lines. The bundle's ``common.json`` imports this module, which makes Python
report an uncaught error by its innermost cause: a ``ValueError`` or ``OSError`` raised by this package (bad input,
a missing or existing file) as its message alone; any other error with its traceback, followed by that line.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from types import TracebackType

__all__ = ["innermost_cause", "report_innermost_cause"]

# errors this package raises on purpose for input it refuses; their messages say all a user needs
_INPUT_ERRORS = (ValueError, OSError)
_PACKAGE = Path(__file__).resolve().parent


def innermost_cause(error: BaseException) -> BaseException:
    """The error at the end of ``error``'s chain of explicit causes (``raise ... from cause``)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


def _raised_by_this_package(error: BaseException) -> bool:
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(_PACKAGE)


def report_innermost_cause(
    error_type: type[BaseException], error: BaseException, error_traceback: TracebackType | None
) -> None:
    """A ``sys.excepthook``: the innermost cause's message, after the traceback unless the cause is bad input.

    Args:
        error_type, error, error_traceback: as Python passes them to ``sys.excepthook``.
    """
    cause = innermost_cause(error)
    if isinstance(cause, _INPUT_ERRORS) and _raised_by_this_package(cause):
        print(f"error: {cause}", file=sys.stderr)
        return
    traceback.print_exception(error_type, error, error_traceback)
    print(f"error: {type(cause).__name__}: {cause}", file=sys.stderr)


sys.excepthook = report_innermost_cause
