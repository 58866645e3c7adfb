"""The libraries' own output, quieted for the commands (and for the processes a benchmark spawns)."""

from __future__ import annotations


def quiet_libraries() -> None:
    """Library chatter (dtype notes, backend fallbacks) is not for CLI users; errors still show.

    Called by the commands that load models, so that the CLI starts (and `--help` answers) without
    importing diffusers or transformers.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
