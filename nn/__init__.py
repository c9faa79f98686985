"""exprforge.nn: torch layers from the seed papers, running on generated kernels.

Names load on first use, so `import exprforge.nn` imports neither torch nor a compiler.
"""
from importlib import import_module

_WHERE = {"PolyReLU": "polycom", "PolyNorm": "polycom", "lmul": "l_mul",
          "lmul_matmul": "l_mul", "LMulAttention": "attention", "EvoNormB0": "evonorm",
          "EvoNormS0": "evonorm", "GaussianRBF": "rbf", "log_besseli": "bessel",
          "log_besselk": "bessel", "fit_vmf": "vmf"}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_WHERE))
