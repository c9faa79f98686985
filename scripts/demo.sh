#!/usr/bin/env bash
# The main job end to end, install included: measure an expression's float32 error,
# simplify it, compile it into a kernel, store it, and import it in a fresh process.
# (Later: search -> verify -> compile -> import.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
xf=.venv/bin/exprforge
export EXPRFORGE_CACHE_DIR="${EXPRFORGE_CACHE_DIR:-$PWD/.demo-store}"
echo "== exp(x) - 1 near zero loses its digits to cancellation in float32:"
"$xf" eval "exp(x) - 1" x=1e-5 --dtype float32 --check
echo
echo "== expm1 computes the same function without the cancellation:"
"$xf" eval "expm1(x)" x=1e-5 --dtype float32 --check
echo
echo "== simplify by e-graph rewriting:"
"$xf" simplify "sqrt(x)**2 + log(exp(y)) - (x + y)*(x - y)" --assume nonneg:x
echo
echo "== compile a GELU (tanh form) into an LLVM kernel and store it:"
"$xf" compile "0.5*x*(1 + tanh(0.7978845608*(x + 0.044715*x*x*x)))" --name gelu_tanh --target llvm
echo
echo "== import it in a new process (from the store: nothing compiles) and run it:"
.venv/bin/python - <<'PY'
import numpy as np
import exprforge as xf
from exprforge.kernels import gelu_tanh
x = np.linspace(-4, 4, 9, dtype=np.float32)
y = gelu_tanh(x)
print("from store:", gelu_tanh.cache_info["hit"], " compiled now:", gelu_tanh.cache_info["compiled"])
print("gelu_tanh(x) =", y, y.dtype)
exact = xf.exact(gelu_tanh.expr, {"x": x})
print("max error vs the exact value: kernel %.0f ULP, NumPy float32 %.0f ULP"
      % (xf.ulps(y, exact).max(), xf.ulps(xf.evaluate(gelu_tanh.expr, {"x": x}), exact).max()))
print("(1 + tanh(...) cancels for negative x: the formula loses the digits, not the kernel)")
PY
"$xf" kernels bench gelu_tanh --size 10000000
echo "(tanh is a scalar libm call per element here, NumPy's is SIMD: see the README's kernel benchmark)"
echo
echo "== an arithmetic kernel (PolyReLU-style), where one fused pass beats NumPy's pass per op:"
"$xf" compile "0.7*relu(x) + 0.2*relu(x)**2 + 0.05*relu(x)**3 + 0.01" --name polyrelu --target llvm
"$xf" kernels bench polyrelu --size 10000000
