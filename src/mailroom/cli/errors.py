"""The one exception type commands raise to end with `mailroom: error: ...` and exit 1."""


class CommandError(Exception):
    """A user-facing failure; its message is the whole one-line explanation."""
