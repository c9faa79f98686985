#!/usr/bin/env bash
# The main job end to end, install included: search a float32 approximation of exp with
# evolution (a short budget), verify it on every float32 input of its domain, store it,
# import it in a fresh process and call it next to NumPy's exp. Then the earlier tour:
# error measurement, e-graph simplification, compile/store/import of a formula.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
xf=.venv/bin/exprforge
export EXPRFORGE_CACHE_DIR="${EXPRFORGE_CACHE_DIR:-$PWD/.demo-store}"
echo "== search a float32 exp (NSGA-II over the core of a Cody-Waite template; ~2-4 minutes),"
echo "== then check the chosen program on all ~2.2e9 float32 inputs of its domain:"
"$xf" approx exp --generations 6 --population 24 --seed 0 --out "$EXPRFORGE_CACHE_DIR/runs/demo-exp"
echo
echo "== import it in a new process (from the store: nothing compiles) and compare with NumPy:"
.venv/bin/python - <<'PY'
import numpy as np
import exprforge as xf
from exprforge.kernels import exp_f32
x = np.float32([-100.5, -10.25, -1e-3, 0.0, 0.5, 1.0, 20.75, 88.5])
ours, ref = exp_f32(x), np.exp(x)
exact = xf.exact(xf.parse("exp(x)", vars={"x": "float32"}), {"x": x})
print("compiled now:", exp_f32.cache_info["compiled"])
print("x        ", x)
print("exp_f32  ", ours)
print("numpy.exp", ref)
print("error vs the correctly rounded value (ULP): exprforge %s, numpy %s"
      % (xf.ulps(ours, exact).tolist(), xf.ulps(ref, exact).tolist()))
import time
big = np.random.default_rng(0).uniform(-80, 80, 10**7).astype(np.float32)
def best(f):
    f(big)
    return min((lambda t: (f(big), time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(5))
t_ours, t_np = best(exp_f32), best(np.exp)
print(f"1e7 elements, one thread: exp_f32 {t_ours * 1e3:.1f} ms, numpy.exp {t_np * 1e3:.1f} ms "
      f"({t_np / t_ours:.2f}x numpy)")
PY
echo
echo "== exp(x) - 1 near zero loses its digits to cancellation in float32:"
"$xf" eval "exp(x) - 1" x=1e-5 --dtype float32 --check
echo
echo "== simplify by e-graph rewriting:"
"$xf" simplify "sqrt(x)**2 + log(exp(y)) - (x + y)*(x - y)" --assume nonneg:x
echo
echo "== compile a PolyReLU-style formula into an LLVM kernel, store it and benchmark it:"
"$xf" compile "0.7*relu(x) + 0.2*relu(x)**2 + 0.05*relu(x)**3 + 0.01" --name polyrelu --target llvm
"$xf" kernels bench polyrelu --size 10000000
