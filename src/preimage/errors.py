"""The one exception type users see: a bad input, reported as one line."""

from __future__ import annotations


class PreimageError(ValueError):
    """A user-facing error; the CLI prints its message on one line and exits with status 2."""
