"""Scalar intrinsics that generated Numba kernels import: each compiles to one instruction
(llvm.fma, a register bitcast), where Python-level code would build arrays."""
from __future__ import annotations

from numba import types
from numba.extending import intrinsic


@intrinsic
def fma_(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma)."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


def _bitcast(src, dst):
    @intrinsic
    def cast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(dst))
        return dst(x), codegen
    return cast


bitcast_float32_int32 = _bitcast(types.float32, types.int32)
bitcast_int32_float32 = _bitcast(types.int32, types.float32)
bitcast_float64_int64 = _bitcast(types.float64, types.int64)
bitcast_int64_float64 = _bitcast(types.int64, types.float64)
