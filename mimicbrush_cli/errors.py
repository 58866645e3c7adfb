"""The one exception type meant for users.

Anything raised as `MimicBrushError` is a problem with the user's input, files or environment;
the CLI prints it as a single line and exits non-zero. Every other exception is a bug.
"""


class MimicBrushError(Exception):
    """A user-facing error: bad input, missing weights, unreadable file, invalid config."""
