#!/usr/bin/env bash
# Set up and launch the app on the embedded offline default (http://localhost:7860).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec .venv/bin/python app.py
