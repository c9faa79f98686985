#!/usr/bin/env bash
# The main job end to end, install included. For now: evaluate expressions in float32 and
# report their error against the exact (mpmath) value; later this grows into
# search -> verify -> compile -> import.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
xf=.venv/bin/exprforge
echo "== exp(x) - 1 near zero loses its digits to cancellation in float32:"
"$xf" eval "exp(x) - 1" x=1e-5 --dtype float32 --check
echo
echo "== expm1 computes the same function without the cancellation:"
"$xf" eval "expm1(x)" x=1e-5 --dtype float32 --check
echo
echo "== machine-readable, several points at once:"
"$xf" eval "(1 - cos(x)) / (x * x)" x=1e-3,1e-2,0.5 --dtype float32 --check --json
