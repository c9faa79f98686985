"""Per-element throughput cost of scalar math ops in numba loops, on this machine.

Run:  .venv/bin/python benchmarks/op_costs.py   -> table + benchmarks/results/op_costs.json

For each op and dtype (float32, float64) we compile with @njit(fastmath=False)

    for i in range(n): out[i] = OP(a[i], b[i], ...)

over n = 2**16 in-cache elements, keep the minimum time of >= REPS calls after
warm-up (compile excluded) over PASSES passes, and subtract a plain copy loop (out[i] = a[i]):
net = max(raw - copy, FLOOR_NS).  Cycles = net ns * GHz (clock: see clock_info).
Caveat: net is "extra time over a copy", so a cheap op that overlaps with the
memory traffic reads ~0, and a 2-3 input op also pays for its extra input streams.
"""
import datetime
import json
import math
import os
import platform
import re
import time

import llvmlite.binding as llvm
import numba
import numpy as np
from numba import njit

N = 2 ** 16          # elements per call
REPS = 20            # at least this many timed calls; the minimum is kept
MIN_TIME_S = 0.1     # ...and keep timing cheap ops until this much time has passed
PASSES = 3           # timing passes over all kernels; the minimum over passes is kept
FLOOR_NS = 0.005     # net cost is clamped at this floor (ns/elem)
OUT_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "op_costs.json")

# Op table: name -> (expression, input domains).  The expression uses scalars a, b, c
# (of the dtype), k (int32 in [-8, 8]) and T (the dtype, so that constants stay
# float32 in float32 kernels).  Float inputs are uniform on [-10, 10] unless given.
# Spelling notes: math.fma needs Python >= 3.13, else a*b+c (with fastmath=False
# LLVM does not contract it to an fma: it is a mul plus an add); numba's
# math.floor/ceil/trunc return int, so np.* is used; numba has no math.fmod -> np.fmod.
HAS_FMA = hasattr(math, "fma")
POS, UNIT = (0.1, 100.0), (-1.0, 1.0)
OPS = {
    "add": ("a + b", {}), "sub": ("a - b", {}), "mul": ("a * b", {}),
    "div": ("a / b", {"b": (0.5, 10.0)}), "neg": ("-a", {}),
    "fma": ("math.fma(a, b, c)" if HAS_FMA else "a * b + c", {}),
    "abs": ("abs(a)", {}), "min": ("min(a, b)", {}), "max": ("max(a, b)", {}),
    "sqrt": ("math.sqrt(a)", {"a": POS}), "cbrt": ("np.cbrt(a)", {}),
    "pow": ("a ** b", {"a": (0.1, 10.0), "b": (0.5, 3.0)}),
    "exp": ("math.exp(a)", {}), "exp2": ("np.exp2(a)", {}), "expm1": ("math.expm1(a)", {}),
    "log": ("math.log(a)", {"a": POS}), "log2": ("math.log2(a)", {"a": POS}),
    "log10": ("math.log10(a)", {"a": POS}), "log1p": ("math.log1p(a)", {"a": (-0.5, 100.0)}),
    "sin": ("math.sin(a)", {}), "cos": ("math.cos(a)", {}), "tan": ("math.tan(a)", {}),
    "asin": ("math.asin(a)", {"a": UNIT}), "acos": ("math.acos(a)", {"a": UNIT}),
    "atan": ("math.atan(a)", {}), "atan2": ("math.atan2(a, b)", {}),
    "sinh": ("math.sinh(a)", {}), "cosh": ("math.cosh(a)", {}), "tanh": ("math.tanh(a)", {}),
    "asinh": ("math.asinh(a)", {}), "acosh": ("math.acosh(a)", {"a": (1.0, 10.0)}),
    "atanh": ("math.atanh(a)", {"a": (-0.99, 0.99)}),
    # erf/erfc on [-3, 3]: erfc(10) would be a float32 subnormal (slow path)
    "erf": ("math.erf(a)", {"a": (-3.0, 3.0)}), "erfc": ("math.erfc(a)", {"a": (-3.0, 3.0)}),
    "sigmoid": ("T(1.0) / (T(1.0) + math.exp(-a))", {}),
    "floor": ("np.floor(a)", {}), "ceil": ("np.ceil(a)", {}), "round": ("np.rint(a)", {}),
    "trunc": ("np.trunc(a)", {}),
    "copysign": ("math.copysign(a, b)", {}), "hypot": ("math.hypot(a, b)", {}),
    "fmod": ("np.fmod(a, b)", {"b": (0.5, 3.0)}),
    "lt": ("a < b", {}), "where": ("a if a < b else b", {}),   # lt: bool stored as 0/1
    "ldexp": ("math.ldexp(a, k)", {}),
}
SRC = """
def kernel(A, B, C, K, out):
    for i in range(out.shape[0]):
        a = A[i]; b = B[i]; c = C[i]; k = K[i]
        out[i] = {expr}
def probe(a, b, c, k):
    return {expr}
"""
# LLVM vector intrinsics that x86 lowers to real SIMD instructions.  Others
# (llvm.exp/log/sin/pow.v8f32, vector frem) are split back by the backend into one
# scalar libm call per lane (numba has no SVML here), so they are not real SIMD.
NATIVE = {"sqrt", "fabs", "floor", "ceil", "rint", "nearbyint", "trunc", "round",
          "copysign", "minnum", "maxnum", "minimum", "maximum", "fma", "fmuladd"}


def build(expr, dtype, error_model="python"):
    """Compile the array kernel, plus a scalar probe whose return type tells the
    precision of the expression.  error_model="python" (numba's default) makes
    a/b test b == 0 and raise ZeroDivisionError; "numpy" is plain IEEE division."""
    ns = {"math": math, "np": np, "T": dtype}
    exec(SRC.format(expr=expr), ns)
    f = numba.from_dtype(np.dtype(dtype))
    kernel = njit(numba.void(f[::1], f[::1], f[::1], numba.int32[::1], f[::1]),
                  fastmath=False, error_model=error_model)(ns["kernel"])
    probe = njit((f, f, f, numba.int32), fastmath=False)(ns["probe"])
    return kernel, probe.nopython_signatures[0].return_type


def llvm_info(kernel):
    """Read the kernel's LLVM IR: widest float vector type, vector libm calls that
    get scalarised, float->double widening (float32 math done in float64), and
    whether numba's division-by-zero check is present."""
    ir = next(iter(kernel.inspect_llvm().values()))
    widths = [int(w) for w in re.findall(r"<(\d+) x (?:float|double)>", ir)]
    libm = set(re.findall(r"@llvm\.(\w+)\.v\d+f(?:32|64)", ir)) - NATIVE
    if re.search(r"frem (?:fast )?<", ir):
        libm.add("frem(fmod)")
    return {"ir_vector_width": max(widths, default=1), "scalarised_libm": sorted(libm),
            "fpext": bool(re.search(r"fpext float .* to double", ir)),
            "zero_div_check": "division by zero" in ir}


def inputs(dtype, domains, rng):
    arrs = [rng.uniform(*domains.get(x, (-10.0, 10.0)), N).astype(dtype) for x in "abc"]
    return arrs + [rng.integers(-8, 9, N).astype(np.int32), np.empty(N, dtype)]


def best_ns(fn, args, per, reps=REPS, min_time=MIN_TIME_S):
    """Minimum ns per `per` units over >= reps calls (and >= min_time s), after warm-up."""
    for _ in range(3):
        fn(*args)
    best, count, t_end = float("inf"), 0, time.perf_counter() + min_time
    while count < reps or (time.perf_counter() < t_end and count < 5000):
        t0 = time.perf_counter_ns()
        fn(*args)
        best, count = min(best, time.perf_counter_ns() - t0), count + 1
    return best / per


def prepare(name, dtype, rng, error_model="python"):
    """Compile one op's kernel, analyse its IR and draw its inputs (untimed)."""
    expr, domains = OPS.get(name, ("a", {}))        # "copy" is the baseline out = a
    kernel, ret = build(expr, dtype, error_model)
    info = llvm_info(kernel)
    # a float32 op is computed in float64 if its result is float64 or the IR widens
    in_f64 = dtype is np.float32 and (str(ret) == "float64" or info["fpext"])
    rec = {"expr": expr, "vectorized": info["ir_vector_width"] > 1 and not info["scalarised_libm"],
           "result_type": str(ret), "computed_in_float64": bool(in_f64), **info}
    return {"kernel": kernel, "args": inputs(dtype, domains, rng), "raw": float("inf"), "rec": rec}


# Clock.  "cpu MHz" in a VM is usually the fixed nominal/TSC rate, not the clock the
# core actually runs at, so we also time serial dependency chains that LLVM cannot
# reassociate or vectorise (float: fastmath=False; int: xor-then-mul is no reduction):
#   x = x * y[j]        mulsd latency 4 (Intel Skylake..Golden/Raptor Cove; Zen: 3)
#   x = (x ^ 5) * y[j]  xor 1 + imul 3 = 4 (Intel and AMD)
#   x = x + y[j]        addsd latency 4 on Skylake..Ice Lake and Zen (Agner Fog), but
#                       2 on Golden Cove and later (Sapphire/Emerald Rapids fast adder)
# If the two latency-4 chains agree (10%) and cpuinfo does not, we use the chains.
CHAINS = {"add": ("0.0", "x + y[j]"), "mul": ("1.0", "x * y[j]"), "xor_imul": ("1", "(x ^ 5) * y[j]")}
for _name, (_init, _step) in CHAINS.items():
    exec(f"def {_name}_chain(y, reps):\n x = {_init}\n for _ in range(reps):\n"
         f"  for j in range(y.shape[0]):\n   x = {_step}\n return x\n", globals())
    globals()[f"{_name}_chain"] = njit(fastmath=False)(globals()[f"{_name}_chain"])


def chain_ns():
    """ns per step of each dependency chain (the minimum of 5 runs of 20M steps)."""
    rng = np.random.default_rng(1)
    ys = {"add": rng.uniform(-1e-3, 1e-3, 1024), "mul": np.tile([1.0000001, 1 / 1.0000001], 512),
          "xor_imul": rng.integers(1, 1 << 20, 1024) | 1}
    return {k: best_ns(globals()[f"{k}_chain"], (ys[k], 20000), 20000 * 1024, 5, 0)
            for k in CHAINS}


def clock_info(ns):
    txt = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    mhz = [float(m) for m in re.findall(r"cpu MHz\s*:\s*([\d.]+)", txt)]
    model = re.search(r"model name\s*:\s*(.*)", txt)
    g_cpu = max(mhz) / 1000 if mhz and 0.5 < max(mhz) / 1000 < 6.5 else None
    g_mul, g_imul = 4 / ns["mul"], 4 / ns["xor_imul"]
    g_chain, agree = (g_mul + g_imul) / 2, abs(g_mul / g_imul - 1) < 0.1
    if g_cpu and (not agree or abs(g_cpu / g_chain - 1) < 0.1):
        ghz, how = g_cpu, "/proc/cpuinfo cpu MHz"
    elif agree:
        ghz, how = g_chain, ("mean of mulsd chain (latency 4) and xor+imul chain (latency 4)"
                             f"; /proc/cpuinfo says {g_cpu} GHz (nominal/TSC rate in this VM)")
    else:
        ghz, how = 4 / ns["add"], "addsd chain, latency 4 assumed"
    return {"cpu_model": model.group(1).strip() if model else platform.processor(),
            "ghz": ghz, "ghz_method": how, "cpuinfo_ghz": g_cpu,
            "ghz_from_mulsd_chain": g_mul, "ghz_from_xor_imul_chain": g_imul,
            "ghz_if_addsd_latency_4": 4 / ns["add"], **{f"{k}_chain_ns": v for k, v in ns.items()},
            "implied_addsd_latency_cycles": ns["add"] * ghz,
            "implied_mulsd_latency_cycles": ns["mul"] * ghz}


def main():
    t_start = time.time()
    rng, jobs = np.random.default_rng(0), {}
    for dtype in (np.float32, np.float64):           # compile everything first
        for name in ["copy", *OPS]:
            jobs[name, dtype] = prepare(name, dtype, rng)
            if jobs[name, dtype]["rec"]["zero_div_check"]:
                # numba's b == 0 test blocks vectorisation: also time plain IEEE division
                jobs[name + "@numpy_errors", dtype] = prepare(name, dtype, rng, "numpy")
    # Timing passes: the machine is shared and its clock moves, so every kernel and
    # clock chain is timed in each of PASSES passes and the minimum kept.
    chains = {k: float("inf") for k in CHAINS}
    for _ in range(PASSES):
        chains = {k: min(v, chains[k]) for k, v in chain_ns().items()}
        for job in jobs.values():
            job["raw"] = min(job["raw"], best_ns(job["kernel"], job["args"], N))
            assert np.isfinite(job["args"][-1]).all(), "non-finite output: fix the domain"
    clk = clock_info(chains)
    ghz = clk["ghz"]
    print(f"CPU: {clk['cpu_model']}\nGHz used: {ghz:.3f} ({clk['ghz_method']})\n"
          f"  chains -> GHz: mulsd {clk['ghz_from_mulsd_chain']:.3f}, xor+imul "
          f"{clk['ghz_from_xor_imul_chain']:.3f}; addsd latency at {ghz:.2f} GHz = "
          f"{clk['implied_addsd_latency_cycles']:.2f} cycles")
    if not HAS_FMA:
        print("note: math.fma unavailable (Python < 3.13): fma measured as a*b+c")
    print(f"\n{'op':9s} {'dtype':8s} {'raw ns':>7s} {'net ns':>7s} {'net cyc':>8s} {'simd':>5s}  notes")
    print("-" * 80)
    results = {}
    for (name, dtype), job in jobs.items():
        if "@" in name:
            continue
        dname, copy_ns = np.dtype(dtype).name, jobs["copy", dtype]["raw"]
        r = results.setdefault(name, {})[dname] = job["rec"]
        r["ns_per_elem_raw"] = job["raw"]
        if name == "copy":
            print(f"{'copy':9s} {dname:8s} {copy_ns:7.3f} {'(baseline)':>17s} {r['vectorized']!s:>5s}")
            continue
        net = lambda raw: max(raw - copy_ns, FLOOR_NS)
        r["ns_per_elem_net"] = net(job["raw"])
        r["cycles_per_elem_net"] = r["ns_per_elem_net"] * ghz
        notes = []
        if r["computed_in_float64"]:
            notes.append(f"float64 inside (result {r['result_type']}, fpext={r['fpext']})")
        if job["raw"] - copy_ns < FLOOR_NS:
            notes.append("<= copy, clamped")
        if r["scalarised_libm"]:
            notes.append("libm call per lane")
        if r["zero_div_check"]:
            v = jobs[name + "@numpy_errors", dtype]
            r["error_model_numpy"] = {"ns_per_elem_raw": v["raw"], "ns_per_elem_net": net(v["raw"]),
                                      "cycles_per_elem_net": net(v["raw"]) * ghz,
                                      "vectorized": v["rec"]["vectorized"]}
            notes.append(f"zero-div check; error_model='numpy': {net(v['raw']):.3f} ns "
                         f"{net(v['raw']) * ghz:.2f} cyc simd={v['rec']['vectorized']}")
        print(f"{name:9s} {dname:8s} {r['ns_per_elem_raw']:7.3f} {r['ns_per_elem_net']:7.3f} "
              f"{r['cycles_per_elem_net']:8.2f} {r['vectorized']!s:>5s}  " + "; ".join(notes))
    f64 = [n for n in OPS if results[n]["float32"]["computed_in_float64"]]
    print("\nfloat32 ops computed in float64 internally:", ", ".join(f64) or "none")
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "machine": platform.machine(), "n_cpus": os.cpu_count(),
            "llvm_host_cpu": llvm.get_host_cpu_name(), "python": platform.python_version(),
            "numba": numba.__version__, "numpy": np.__version__,
            "svml": bool(numba.config.USING_SVML), "n": N, "min_reps": REPS, "passes": PASSES,
            "floor_ns": FLOOR_NS, "fastmath": False, "error_model": "python (numba default)",
            "fma_spelling": "math.fma" if HAS_FMA else "a*b+c (math.fma unavailable)",
            "method": "min ns/elem over calls; net = raw - copy loop, clamped; cycles = net * ghz",
            **clk}
    os.makedirs(os.path.dirname(OUT_JSON), exist_ok=True)
    with open(OUT_JSON, "w") as fh:
        json.dump({"machine": meta, "ops": results}, fh, indent=1)
    print(f"wrote {OUT_JSON} in {time.time() - t_start:.0f} s")


if __name__ == "__main__":
    main()
