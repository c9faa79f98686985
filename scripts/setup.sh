#!/usr/bin/env bash
# Install exprforge and its pinned dependencies into .venv (idempotent; a fresh machine
# needs only python3 >= 3.11). EXTRAS picks optional groups, e.g. EXTRAS=test,bench.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
spec="."
[ -n "${EXTRAS:-}" ] && spec=".[${EXTRAS}]"
.venv/bin/python -m pip install --quiet -c constraints.txt -e "$spec"
