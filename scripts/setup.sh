#!/usr/bin/env bash
# Create a virtual environment (default .venv) with mimicbrush-cli and its test dependencies.
# torch is installed first at a pinned CPU-friendly version so that the open `torch>=2.4` requirement
# in pyproject.toml does not pull a multi-GB CUDA build into an empty environment.
set -euo pipefail
VENV="${1:-.venv}"
cd "$(dirname "$0")/.."
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
