#!/usr/bin/env bash
# The test suite, install included: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test,distributed bash scripts/setup.sh
exec .venv/bin/python -m pytest -n 2 "$@"
