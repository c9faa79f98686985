"""Scalar intrinsics that generated Numba kernels import: each compiles to one instruction
(llvm.fma, a register bitcast), where Python-level code would build arrays."""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from exprforge.codegen.lower import PAIRWISE_BLOCK, PAIRWISE_STACK


@intrinsic
def fma_(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma)."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


@intrinsic
def ldexp_(typingctx, x, n):
    """x * 2**n with one rounding (llvm.ldexp, as the LLVM target's): Numba's math.ldexp
    calls a helper of its own runtime, which a loaded kernel runs without."""
    if not (isinstance(x, types.Float) and n == types.int32):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        suffix = "f32" if x == types.float32 else "f64"
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
            ty, [ty, ir.IntType(32)]), f"llvm.ldexp.{suffix}.i32")
        return builder.call(fn, list(args))
    return x(x, n), codegen


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


def _scratch(dtype):
    @intrinsic
    def scratch(typingctx):
        """A pointer to PAIRWISE_BLOCK + PAIRWISE_STACK values on the stack (one alloca in
        the function's entry block): a RowReduce loop's block and stack of partial sums,
        without Numba's runtime, which the stored loops run without."""
        def codegen(context, builder, signature, args):
            return cgutils.alloca_once(builder, context.get_data_type(dtype),
                                       size=PAIRWISE_BLOCK + PAIRWISE_STACK)
        return types.CPointer(dtype)(), codegen
    return scratch


scratch_float32 = _scratch(types.float32)
scratch_float64 = _scratch(types.float64)
scratch_int32 = _scratch(types.int32)
scratch_int64 = _scratch(types.int64)


# no cache=True: Numba would write it next to this file (site-packages); kernels store
# their loops' object code themselves
@njit(error_model="numpy", nogil=True)
def block_sum(block, n, zero):
    """NumPy's sum of block[:n], n <= 128 (lower.pairwise_schedule): left to right from
    `zero` when n < 8, else 8 partial sums (sum k adds elements k, k + 8, ... below n
    rounded down to 8) added as ((0+1)+(2+3))+((4+5)+(6+7)), then the rest in order.
    Unsigned indices: Numba then skips its negative-index wraparound."""
    if n < 8:
        total = zero
        for i in range(n):
            total += block[uint64(i)]
        return total
    r0, r1, r2, r3 = block[0], block[1], block[2], block[3]
    r4, r5, r6, r7 = block[4], block[5], block[6], block[7]
    end = n - n % 8
    for k in range(1, end // 8):
        i = uint64(8 * k)
        r0 += block[i]
        r1 += block[i + uint64(1)]
        r2 += block[i + uint64(2)]
        r3 += block[i + uint64(3)]
        r4 += block[i + uint64(4)]
        r5 += block[i + uint64(5)]
        r6 += block[i + uint64(6)]
        r7 += block[i + uint64(7)]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(end, n):
        total += block[uint64(i)]
    return total
