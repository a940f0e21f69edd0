#!/usr/bin/env bash
# Set up and run the default test suite (slow tests are opt-in: pass --runslow).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
# Optional Ray extra (sweep --ray; tests/distributed): without it those tests skip and say why.
.venv/bin/python -m pip install -q -r requirements-ray.txt \
  || echo "warning: could not install ray (requirements-ray.txt); the Ray tests will be skipped"
# The browser test drives Debian's Chromium through Playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped"
fi
# The vote-store tests start a throwaway PostgreSQL server from Debian's binaries (tests/feedback/conftest.py).
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "warning: could not install postgresql; PostgreSQL vote-store tests will be skipped"
fi
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
