"""The five dtypes of the IR and NumPy-style promotion, written once.

A dtype is a plain string ("float32", ...). "~f" and "~i" are *weak* types: a Python
literal that adopts the dtype of what it meets, as NumPy 2 does (NEP 50):
float32 array * 0.1 stays float32.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
DTYPES = FLOATS + INTS + ("bool",)

BITS = {"float32": 32, "float64": 64, "int32": 32, "int64": 64, "bool": 8}
SAME_WIDTH_INT = {"float32": "int32", "float64": "int64"}
SAME_WIDTH_FLOAT = {v: k for k, v in SAME_WIDTH_INT.items()}

# IEEE binary formats: (precision in bits incl. hidden bit, emin, emax)
FORMAT = {"float32": (24, -126, 127), "float64": (53, -1022, 1023)}


def check(dtype: str) -> str:
    if dtype not in DTYPES:
        raise TypeError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return dtype


def is_float(dtype) -> bool:
    return dtype in FLOATS


def is_int(dtype) -> bool:
    return dtype in INTS


def np_dtype(dtype: str) -> np.dtype:
    return np.dtype(dtype)


def kind(dtype) -> str:
    """'b', 'i' or 'f' (NumPy kind letters)."""
    return np.dtype(dtype).kind


_KIND_RANK = {"b": 0, "i": 1, "f": 2}


def promote(types) -> str:
    """Result dtype of combining `types` (NumPy rules; NEP 50 for weak literals).

    Weak literal types are "~i" and "~f". A weak literal takes the strong dtype unless
    its kind is higher (float literal with int array -> float64). All weak -> weak.
    """
    strong = [t for t in types if not t.startswith("~")]
    weak = [t[1] for t in types if t.startswith("~")]
    if not strong:
        return "~f" if "f" in weak else "~i"
    result = str(np.result_type(*[np.dtype(t) for t in strong]))
    if weak:
        top = max(weak, key=_KIND_RANK.__getitem__)
        if _KIND_RANK[top] > _KIND_RANK[kind(result)]:
            result = "float64" if top == "f" else "int64"
    return result


def round_fraction(q: Fraction, dtype: str) -> float:
    """Correctly round an exact rational to a float of `dtype` (ties to even, with subnormals).

    float(q) would round to float64 first and then again to float32: double rounding.
    """
    if dtype not in FORMAT:
        raise TypeError(f"round_fraction needs a float dtype, got {dtype}")
    if q == 0:
        return 0.0
    prec, emin, emax = FORMAT[dtype]
    sign = -1 if q < 0 else 1
    a = abs(q)
    e = a.numerator.bit_length() - a.denominator.bit_length()  # floor(log2 a) or one less
    if Fraction(2) ** e > a:
        e -= 1
    elif Fraction(2) ** (e + 1) <= a:
        e += 1
    quantum_exp = max(e, emin) - (prec - 1)  # exponent of one ulp at a
    scaled = a / (Fraction(2) ** quantum_exp)
    m = round(scaled)  # Python's round on Fraction is ties-to-even
    value = Fraction(m) * Fraction(2) ** quantum_exp
    if value >= Fraction(2) ** (emax + 1):
        return sign * float("inf")
    return sign * float(value)
