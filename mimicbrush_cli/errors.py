"""The one exception type meant for users.

Anything raised as `MimicBrushError` is a problem with the user's input, files or environment;
the CLI prints it as a single line and exits non-zero. Every other exception is a bug.
"""


class MimicBrushError(Exception):
    """A user-facing error: bad input, missing weights, unreadable file, invalid config."""


class WeightsUnavailable(MimicBrushError):
    """Weights that are not on this machine and cannot be downloaded now (offline, no network, not in the
    folder given); a benchmark leaves the metrics that need them unmeasured instead of stopping."""


def first_line(error: BaseException, limit: int = 200) -> str:
    """An exception's message cut to one line for a user error; its type name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0][:limit] if text else type(error).__name__
