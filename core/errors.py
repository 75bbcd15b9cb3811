"""Errors the user can act on.

Raise :class:`InputError` (a ValueError) with a one-line message that names the file, the
row or column when known, and what to do next. The CLI prints it as ``error: <message>`` and
exits with status 2; the dashboard shows it with ``st.error``. Anything else is a bug and keeps
its traceback.
"""


class InputError(ValueError):
    """Bad input from the user (file, option, dataset/run mismatch). One line, actionable."""


class RunError(InputError):
    """A run directory is missing, incomplete, tampered with or does not match the data."""


class CancelledError(RuntimeError):
    """A training job was cancelled by request (not a failure)."""
