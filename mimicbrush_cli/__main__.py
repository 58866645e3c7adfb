"""`python -m mimicbrush_cli` (and `accelerate launch -m mimicbrush_cli train ...`)."""

from .cli.app import main

main()
