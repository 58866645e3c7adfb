#!/usr/bin/env bash
# Create a virtual environment (default .venv) with mimicbrush-cli and its test dependencies, and
# install Debian's Chromium and its driver for the browser tests of `mimicbrush serve` where missing.
# torch is installed first at a pinned CPU-friendly version so that the open `torch>=2.4` requirement
# in pyproject.toml does not pull a multi-GB CUDA build into an empty environment.
set -euo pipefail
VENV="${1:-.venv}"
cd "$(dirname "$0")/.."
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "torch==2.13.0"
"$VENV/bin/python" -m pip install --quiet -e ".[test]"
# The original LPIPS code, for the test that compares ours with it. Without its dependencies: it asks for
# torchvision, which does not import beside the CPU torch (the test gives it our AlexNet layers instead), and an
# extra in pyproject.toml cannot leave a dependency out, so `pip install -e ".[test]"` alone does not bring it.
# That test reads this pin to say what to run where lpips is missing (tests/benchmark/test_lpips.py).
"$VENV/bin/python" -m pip install --quiet --no-deps "lpips==0.1.4"

if ! command -v chromedriver >/dev/null || ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }; then
    if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo -n); fi
    if command -v apt-get >/dev/null && "${SUDO[@]}" true 2>/dev/null; then
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "note: the browser tests need Chromium: apt-get install chromium chromium-driver (as root)" >&2
    fi
fi
