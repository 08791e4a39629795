"""The one exception type users see: a bad input, reported as one line.

The library names Python parameters (``restarts must be at least 1``); ``param`` lists the ones a message names,
so that the command line can say the same with its flags (``--restarts must be at least 1``, ``for_cli``).
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any


def is_number(value: Any) -> bool:
    """A real number, numpy's scalars included (a notebook's ``np.float32(0.3)``), but not a bool: what the input
    checks compare against a range."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class PreimageError(ValueError):
    """A user-facing error; the CLI prints its message on one line and exits with status 2.

    param: the Python parameter name(s) the message speaks of (words of the message), or None."""

    def __init__(self, message: str, *, param: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.params: tuple[str, ...] = (param,) if isinstance(param, str) else tuple(param or ())

    def for_cli(self, flag: Callable[[str], str | None]) -> str:
        """The message as the command line says it: a parameter that opens the message (``restarts must be ...``)
        or that reads as Python (``prior_weight``) becomes its flag (``flag(name)``, e.g. ``--restarts``); the
        other words stay, as they read as plain English (``unknown layer 'x'``)."""
        msg = str(self)
        for name in sorted(self.params, key=len, reverse=True):
            f = flag(name)
            if not f:
                continue
            msg = msg.replace(f"{name}=True", f)  # a boolean flag: ``force=True`` reads ``--force``
            msg = msg.replace(f"`{name}`", f)  # a parameter quoted mid-sentence (`force`) is its flag too
            if "_" in name:
                msg = re.sub(rf"(?<![\w\-]){re.escape(name)}(?![\w])", f, msg)
            elif re.match(rf"{re.escape(name)}(?![\w])", msg):
                msg = f + msg[len(name):]
        return msg
