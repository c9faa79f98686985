"""log-Bessel functions and von Mises-Fisher fitting (Plesner, Sorensen, Hauberg 2024).

Run:  .venv/bin/python benchmarks/papers/bessel.py [--quick] [--out PATH]
      -> markdown tables on stdout + benchmarks/results/papers_bessel.json

1. Accuracy: exprforge.nn.log_besseli / log_besselk (float64, llvm kernel) against mpmath
   (besseli / besselk at 50 digits, then log; about 0.3 s a point, hence only POINTS
   points) on (v, x) drawn log-uniformly from v in [1e-3, 1e4], x in [1e-6, 1e6]
   (seed 0). Relative error |got - true| / |true| per region of the programs; points
   where mpmath's series do not converge are counted, not scored. SciPy's log(ive) + x
   and log(kve) - x are scored the same way where finite.
2. SciPy's range: on the same grid, the share where iv, ive, kv, kve return 0 (underflow),
   inf (overflow) or NaN, i.e. where their log is not finite.
3. float32: the float32 programs (float32 (v, x) in and out) against mpmath at the same
   grid rounded to float32, and against the float64 programs at N_SPEED such points;
   error relative to max(|true|, 1) (absolute near a zero of the log, where a relative
   error of log I means nothing), in units of 2**-24.
4. Speed: N = 1e6 log-uniform (v, x), one thread each, best of REPEATS: the kernel of
   log_besseli vs SciPy's log(ive(v, x)) + x, and log_besselk's vs log(kve(v, x)) - x,
   in float64 and with float32 arrays (SciPy's float32 loops against our float32
   programs); and log_besseli / log_besselk themselves, which use every core.
5. vMF: for p = 2048, 8192, 32768 and kappa = p/2, p, 2p, SAMPLES unit vectors from our
   Wood (1994) sampler (seed 0); kappa by maximum likelihood (Newton in log kappa on
   A_p = I_{p/2} / I_{p/2-1}) with our log-Bessel and with SciPy's (log ive) in its place.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from multiprocessing import Pool
from pathlib import Path

import mpmath
import numpy as np
import scipy
from scipy import special

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from exprforge.nn import fit_vmf, log_besseli, log_besselk  # noqa: E402
from exprforge.nn.bessel import (DEBYE_V, QUAD_X, TEMME_X, TERMS, _kernel,  # noqa: E402
                                 mp_log_bessel)
from exprforge.nn.vmf import sample_vmf  # noqa: E402

POINTS, N_SPEED, REPEATS, SAMPLES = 300, 1_000_000, 3, 1000
DIMS = (2048, 8192, 32768)


def grid(n, seed=0):
    rng = np.random.default_rng(seed)
    return 10 ** rng.uniform(-3, 4, n), 10 ** rng.uniform(-6, 6, n)




def summarize(err, mask):
    e = err[mask]
    scored = e[np.isfinite(e)]
    return {"points": int(mask.sum()), "scored": int(scored.size),
            "max_rel": float(scored.max()) if scored.size else None,
            "median_rel": float(np.median(scored)) if scored.size else None,
            "share_over_1e-14": float(np.mean(scored > 1e-14)) if scored.size else None}


def accuracy(n):
    v, x = grid(n)
    began = time.perf_counter()
    with Pool(2) as pool:                            # mpmath is the slow part: two workers
        true = {fn: np.array(pool.starmap(mp_log_bessel, [(fn, a, b) for a, b in zip(v, x)]))
                for fn in "ik"}
    oracle_s = time.perf_counter() - began
    with np.errstate(all="ignore"):
        ours = {"i": log_besseli(v, x), "k": log_besselk(v, x)}
        scipy_log = {"i": np.log(special.ive(v, x)) + x, "k": np.log(special.kve(v, x)) - x}
    d = DEBYE_V
    regions = {"i": {f"debye (v >= {d})": v >= d,
                     f"series (v < {d}, x <= 10)": (v < d) & (x <= 10),
                     f"recurrence (v < {d}, x > 10)": (v < d) & (x > 10),
                     "all": np.ones_like(v, bool)},
               "k": {f"debye (v >= {d})": v >= d,
                     f"Temme + recurrence (v < {d}, x <= {TEMME_X:g})": (v < d) & (x <= TEMME_X),
                     f"quadrature + recurrence (v < {d}, x <= {QUAD_X:g})":
                         (v < d) & (x > TEMME_X) & (x <= QUAD_X),
                     f"Steed or Hankel (x > {TERMS['float64'].hankel_x:g}) + recurrence "
                     f"(v < {d}, x > {QUAD_X:g})": (v < d) & (x > QUAD_X),
                     "all": np.ones_like(v, bool)}}
    out = {"points": n, "oracle_seconds": round(oracle_s, 1), "oracle_failed":
           {fn: int(np.isnan(true[fn]).sum()) for fn in "ik"}}
    for fn in "ik":
        known = np.isfinite(true[fn])
        out[fn] = {"ours_nonfinite": int((~np.isfinite(ours[fn]) & known).sum()),
                   "scipy_nonfinite": int((~np.isfinite(scipy_log[fn]) & known).sum()),
                   "regions": {}}
        for name, mask in regions[fn].items():
            with np.errstate(all="ignore"):
                err = np.abs(ours[fn] - true[fn]) / np.abs(true[fn])
                serr = np.abs(scipy_log[fn] - true[fn]) / np.abs(true[fn])
            serr[~np.isfinite(scipy_log[fn])] = np.nan
            out[fn]["regions"][name] = {"exprforge": summarize(err, mask & known),
                                        "scipy_where_finite": summarize(serr, mask & known)}
    return out


def float32_accuracy(n, n_dense):
    """The float32 programs: against mpmath on the float32-rounded grid, and against the
    float64 programs (within 5e-15 of mpmath, section 1) on n_dense points."""
    unit = 2.0 ** -24
    v, x = (a.astype(np.float32).astype(np.float64) for a in grid(n))
    with Pool(2) as pool:
        true = {fn: np.array(pool.starmap(mp_log_bessel, [(fn, a, b) for a, b in zip(v, x)]))
                for fn in "ik"}
    vd, xd = (a.astype(np.float32) for a in grid(n_dense, seed=2))
    out = {"points_mpmath": n, "points_vs_float64": n_dense, "unit": "2**-24"}
    for fn, f in (("i", log_besseli), ("k", log_besselk)):
        got = f(v.astype(np.float32), x.astype(np.float32)).astype(np.float64)
        known = np.isfinite(true[fn])
        err = np.abs(got - true[fn])[known] / np.maximum(np.abs(true[fn][known]), 1) / unit
        dense = f(vd, xd).astype(np.float64)
        ref = f(vd.astype(np.float64), xd.astype(np.float64))
        derr = np.abs(dense - ref) / np.maximum(np.abs(ref), 1) / unit
        worst = int(np.argmax(derr))
        out[fn] = {"vs_mpmath": {"scored": int(known.sum()), "max": float(err.max()),
                                 "median": float(np.median(err)),
                                 "nonfinite": int((~np.isfinite(got) & known).sum())},
                   "vs_float64": {"max": float(derr.max()), "median": float(np.median(derr)),
                                  "p999": float(np.quantile(derr, 0.999)),
                                  "worst_at": [float(vd[worst]), float(xd[worst])],
                                  "nonfinite": int((~np.isfinite(dense)).sum())}}
    return out


def scipy_range(n):
    v, x = grid(n)
    out = {}
    with np.errstate(all="ignore"):
        for name in ("iv", "ive", "kv", "kve"):
            y = getattr(special, name)(v, x)
            out[name] = {"underflow_0": float(np.mean(y == 0)),
                         "overflow_inf": float(np.mean(np.isinf(y))),
                         "nan": float(np.mean(np.isnan(y))),
                         "log_not_finite": float(np.mean(~np.isfinite(np.log(y))))}
    return out


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def speed(n, repeats):
    v, x = grid(n, seed=1)
    v32, x32 = v.astype(np.float32), x.astype(np.float32)
    for a, b in ((v, x), (v32, x32)):                              # compile outside timing
        log_besseli(a[:10], b[:10]), log_besselk(a[:10], b[:10])

    def serial(which, a, b):   # the kernel log_besseli runs, without its threads
        return lambda: _kernel(which, "llvm", str(a.dtype))(a, b)
    with np.errstate(all="ignore"):
        t = {"log_besseli": best(serial("i", v, x), repeats),
             "scipy log(ive)+x": best(lambda: np.log(special.ive(v, x)) + x, repeats),
             "log_besselk": best(serial("k", v, x), repeats),
             "scipy log(kve)-x": best(lambda: np.log(special.kve(v, x)) - x, repeats),
             "log_besseli float32": best(serial("i", v32, x32), repeats),
             "scipy log(ive)+x float32":
                 best(lambda: np.log(special.ive(v32, x32)) + x32, repeats),
             "log_besselk float32": best(serial("k", v32, x32), repeats),
             "scipy log(kve)-x float32":
                 best(lambda: np.log(special.kve(v32, x32)) - x32, repeats),
             "log_besseli all cores": best(lambda: log_besseli(v, x), repeats),
             "log_besselk all cores": best(lambda: log_besselk(v, x), repeats)}
    ratio = lambda a, b: round(t[a] / t[b], 2)                         # noqa: E731
    return {"n": n, "cores": os.cpu_count(), "seconds": {k: round(s, 4) for k, s in t.items()},
            "speedup_i_vs_scipy": ratio("scipy log(ive)+x", "log_besseli"),
            "speedup_k_vs_scipy": ratio("scipy log(kve)-x", "log_besselk"),
            "speedup_i_float32_vs_scipy": ratio("scipy log(ive)+x float32",
                                                "log_besseli float32"),
            "speedup_k_float32_vs_scipy": ratio("scipy log(kve)-x float32",
                                                "log_besselk float32"),
            "float32_vs_float64_i": ratio("log_besseli", "log_besseli float32"),
            "float32_vs_float64_k": ratio("log_besselk", "log_besselk float32"),
            "all_cores_i_vs_scipy": ratio("scipy log(ive)+x", "log_besseli all cores"),
            "all_cores_k_vs_scipy": ratio("scipy log(kve)-x", "log_besselk all cores")}


def scipy_logi(v, x):
    with np.errstate(all="ignore"):
        return np.log(special.ive(v, x)) + x


def vmf(samples):
    rows = []
    for p in DIMS:
        for kappa in (p / 2, p, 2 * p):
            rng = np.random.default_rng(0)
            mu = rng.standard_normal(p)
            X = sample_vmf(mu, kappa, samples, rng=rng)
            began = time.perf_counter()
            _, ours = fit_vmf(X)
            ours_s = time.perf_counter() - began
            _, theirs = fit_vmf(X, logi=scipy_logi)
            rows.append({"p": p, "kappa": kappa, "exprforge_kappa": ours,
                         "exprforge_rel_err": abs(ours - kappa) / kappa,
                         "exprforge_fit_seconds": round(ours_s, 4),
                         "scipy_kappa": None if np.isnan(theirs) else theirs,
                         "scipy_rel_err": None if np.isnan(theirs) else
                         abs(theirs - kappa) / kappa})
            del X
    return rows


def fmt(x):
    return "-" if x is None else f"{x:.2e}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 points, N = 1e5, 200 samples")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/papers_bessel.json"))
    args = ap.parse_args(argv)
    points, n_speed, samples = (100, 100_000, 200) if args.quick else (POINTS, N_SPEED, SAMPLES)
    result = {"platform": platform.platform(), "numpy": np.__version__,
              "scipy": scipy.__version__, "mpmath": mpmath.__version__,
              "accuracy": accuracy(points), "scipy_range": scipy_range(points),
              "float32": float32_accuracy(points, n_speed),
              "speed": speed(n_speed, REPEATS), "vmf": vmf(samples), "vmf_samples": samples}
    acc = result["accuracy"]
    print(f"accuracy vs mpmath ({points} points; mpmath gave up on {acc['oracle_failed']})")
    print("| fn | region | points | max rel | median rel | > 1e-14 "
          "| SciPy max rel (where finite) |")
    print("|---|---|---|---|---|---|---|")
    for fn in "ik":
        for name, r in acc[fn]["regions"].items():
            e, s = r["exprforge"], r["scipy_where_finite"]
            print(f"| log {fn.upper()} | {name} | {e['scored']} | {fmt(e['max_rel'])} | "
                  f"{fmt(e['median_rel'])} | {e['share_over_1e-14']:.1%} | {fmt(s['max_rel'])} |")
    print("\nSciPy on the same grid (share of points)")
    print("| function | 0 (underflow) | inf (overflow) | NaN | log not finite |")
    print("|---|---|---|---|---|")
    for name, r in result["scipy_range"].items():
        print(f"| {name} | {r['underflow_0']:.1%} | {r['overflow_inf']:.1%} | {r['nan']:.1%} | "
              f"{r['log_not_finite']:.1%} |")
    f32 = result["float32"]
    print("\nfloat32 programs (error / max(|true|, 1) in units of 2**-24)")
    print("| fn | vs mpmath: max | median | vs float64 program: max | p99.9 | median |")
    print("|---|---|---|---|---|---|")
    for fn in "ik":
        m, d = f32[fn]["vs_mpmath"], f32[fn]["vs_float64"]
        print(f"| log {fn.upper()} | {m['max']:.1f} | {m['median']:.2f} | {d['max']:.1f} | "
              f"{d['p999']:.1f} | {d['median']:.2f} |")
    sp = result["speed"]
    print(f"\nspeed at N = {sp['n']} (seconds, one thread): {sp['seconds']}; "
          f"log I {sp['speedup_i_vs_scipy']}x, log K {sp['speedup_k_vs_scipy']}x vs SciPy; "
          f"float32: {sp['speedup_i_float32_vs_scipy']}x, {sp['speedup_k_float32_vs_scipy']}x; "
          f"log_besseli / log_besselk on all {sp['cores']} cores: {sp['all_cores_i_vs_scipy']}x, "
          f"{sp['all_cores_k_vs_scipy']}x")
    print(f"\nvMF kappa by maximum likelihood ({samples} samples)")
    print("| p | kappa | exprforge | rel err | SciPy (ive) | rel err |")
    print("|---|---|---|---|---|---|")
    for r in result["vmf"]:
        sk = "fails (NaN)" if r["scipy_kappa"] is None else f"{r['scipy_kappa']:.1f}"
        print(f"| {r['p']} | {r['kappa']:g} | {r['exprforge_kappa']:.1f} | "
              f"{r['exprforge_rel_err']:.2%} | {sk} | "
              f"{'-' if r['scipy_rel_err'] is None else format(r['scipy_rel_err'], '.2%')} |")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
