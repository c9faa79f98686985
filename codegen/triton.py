"""Triton renderer: a Plan becomes the source of a Python module of `@triton.jit` kernels.

Each non-constant Program NAME becomes `kernel_NAME`, a 1-D masked block over flattened
inputs (the target broadcasts them to the output shape and makes them contiguous), tuned
over a few block sizes, and `launch_NAME(*inputs, out, n)`, which launches it.

Exactness, op by op (each SSA value has its node's dtype, as in the reference evaluator):
- division is `fdiv(ieee_rounding=True)` and float32 sqrt is `sqrt_rn`: Triton's `/` and
  `tl.sqrt` are approximate on NVIDIA GPUs (div.full.f32, sqrt.approx.ftz.f32);
- launches pass enable_fp_fusion=False (unless contract=True), so a*b+c is never fused;
- transcendental ops call libdevice (the CUDA math library) rather than tl.exp
  (ex2.approx on NVIDIA); launches pass enable_reflect_ftz=False so libdevice keeps
  float32 subnormals;
- literals are built from their bit pattern, so no float literal is ever re-rounded;
- shifts follow NumPy: a count outside [0, width) gives 0, or -1 for a negative value >>.
"""
from __future__ import annotations

import numpy as np

from exprforge.engine import dtypes as dt

from .lower import Instr, Plan, Program

TL = {"float32": "tl.float32", "float64": "tl.float64", "int32": "tl.int32",
      "int64": "tl.int64", "bool": "tl.int1"}

# op -> template over argument names {0} {1} {2}; the named fields are filled per Instr
SPELLINGS = {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}",
    "div": "tl.math.fdiv({0}, {1}, ieee_rounding=True)",
    "neg": "-{0}", "fma": "tl.fma({0}, {1}, {2})", "pow": "libdevice.pow({0}, {1})",
    "abs": "tl.abs({0})",
    # NaN-ignoring, as NumPy's fmin/fmax (minnum/maxnum)
    "min": "tl.minimum({0}, {1}, propagate_nan=tl.PropagateNan.NONE)",
    "max": "tl.maximum({0}, {1}, propagate_nan=tl.PropagateNan.NONE)",
    "copysign": "libdevice.copysign({0}, {1})",
    "sqrt": "tl.sqrt_rn({0})", "cbrt": "libdevice.cbrt({0})", "exp": "libdevice.exp({0})",
    "exp2": "libdevice.exp2({0})", "expm1": "libdevice.expm1({0})",
    "log": "libdevice.log({0})", "log2": "libdevice.log2({0})",
    "log10": "libdevice.log10({0})", "log1p": "libdevice.log1p({0})",
    "sin": "libdevice.sin({0})", "cos": "libdevice.cos({0})", "tan": "libdevice.tan({0})",
    "asin": "libdevice.asin({0})", "acos": "libdevice.acos({0})",
    "atan": "libdevice.atan({0})", "atan2": "libdevice.atan2({0}, {1})",
    "sinh": "libdevice.sinh({0})", "cosh": "libdevice.cosh({0})",
    "tanh": "libdevice.tanh({0})", "asinh": "libdevice.asinh({0})",
    "acosh": "libdevice.acosh({0})", "atanh": "libdevice.atanh({0})",
    "erf": "libdevice.erf({0})", "erfc": "libdevice.erfc({0})",
    "floor": "tl.floor({0})", "ceil": "tl.ceil({0})", "round": "libdevice.rint({0})",
    "trunc": "libdevice.trunc({0})", "hypot": "libdevice.hypot({0}, {1})",
    "fmod": "libdevice.fmod({0}, {1})",  # Triton's % is x - trunc(x/y)*y: not exact
    "lt": "{0} < {1}", "le": "{0} <= {1}", "gt": "{0} > {1}", "ge": "{0} >= {1}",
    "eq": "{0} == {1}", "ne": "{0} != {1}", "where": "tl.where({0}, {1}, {2})",
    "and": "{0} & {1}", "or": "{0} | {1}", "not": "~{0}",
    "bitand": "{0} & {1}", "bitor": "{0} | {1}", "bitxor": "{0} ^ {1}", "bitnot": "~{0}",
    # the count is masked into range first: an out-of-range shift is undefined in LLVM
    "shl": "tl.where(({1} >= 0) & ({1} < {bits}), {0} << ({1} & {low_bits}), {zero})",
    "shr": "tl.where(({1} >= 0) & ({1} < {bits}), {0} >> ({1} & {low_bits}), "
           "tl.where({0} < 0, {minus_one}, {zero}))",
    "ldexp": "libdevice.ldexp({0}, {exponent})",
    "cast": "{0}.to({to})", "bitcast": "{0}.to({to}, bitcast=True)",
}
# spellings that differ by the Instr's dtype
# float64: precise_divf and sqrt_rn do not lower for f64, but LLVM's f64 fdiv and sqrt are
# already div.rn.f64 and sqrt.rn.f64 on NVIDIA (there is no approximate f64 form)
BY_DTYPE = {("div", "float64"): "{0} / {1}", ("sqrt", "float64"): "tl.sqrt({0})"}

# (BLOCK, num_warps) choices the autotuner measures on a GPU
CONFIGS = ((256, 2), (1024, 4), (4096, 8))


def has(op: str) -> bool:
    return op in SPELLINGS


def literal(value, dtype: str) -> str:
    """An exact 0-d tensor of `dtype`: floats from their bits (a Triton float literal would
    be rounded to float32 from a double, and has no spelling for inf, NaN or -0)."""
    if dt.is_float(dtype):
        int_type = dt.SAME_WIDTH_INT[dtype]
        bits = int(np.asarray(value, dtype=dtype).view(int_type))
        return f"tl.full([], {bits}, {TL[int_type]}).to({TL[dtype]}, bitcast=True)"
    return f"tl.full([], {int(value)}, {TL[dtype]})"


def _expression(ins: Instr, types: dict) -> str:
    fields = {"to": TL.get(ins.attr, ""), "bits": dt.BITS[ins.dtype],
              "low_bits": dt.BITS[ins.dtype] - 1, "exponent": _exponent(ins, types)}
    if dt.is_int(ins.dtype):
        fields.update(zero=literal(0, ins.dtype), minus_one=literal(-1, ins.dtype))
    template = BY_DTYPE.get((ins.op, ins.dtype), SPELLINGS[ins.op])
    return template.format(*ins.args, **fields)


def _exponent(ins: Instr, types: dict) -> str:
    """ldexp's exponent as int32, which libdevice takes: past +-65536 every result is
    already 0 or inf (or the argument itself), so clamping changes nothing."""
    if ins.op != "ldexp" or types[ins.args[1]] == "int32":
        return ins.args[1] if ins.op == "ldexp" else ""
    return f"tl.minimum(tl.maximum({ins.args[1]}, -65536), 65536).to(tl.int32)"


def render_program(p: Program, contract: bool) -> list[str]:
    """Lines of `kernel_NAME` and `launch_NAME` for one Program."""
    names = [name for name, _ in p.params]
    types = dict(p.params)
    outs = [f"out{k}" for k in range(len(p.outputs))]
    pointers = ", ".join([f"{name}_ptr" for name in names] + [f"{o}_ptr" for o in outs])
    lines = ['@triton.autotune(configs=CONFIGS, key=["n"])', "@triton.jit",
             f"def kernel_{p.name}({pointers}, n, BLOCK: tl.constexpr):",
             # 64-bit offsets: a tensor may hold more than 2**31 elements
             "    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)",
             "    mask = offs < n"]
    lines += [f"    {name} = tl.load({name}_ptr + offs, mask=mask)" for name in names]
    for ins in p.flat():  # no per-element branches in a block: both sides, then a select
        types[ins.out] = ins.dtype
        if ins.op == "const":
            value = np.asarray(ins.attr).item()
            lines.append(f"    {ins.out} = {literal(ins.attr, ins.dtype)}  # {value!r}")
        else:
            lines.append(f"    {ins.out} = {_expression(ins, types)}")
    lines += [f"    tl.store({o}_ptr + offs, {name}, mask=mask)"
              for o, (name, _) in zip(outs, p.outputs)]
    params = ", ".join(names + outs)
    lines += ["", "",
              f"def launch_{p.name}({params}, n):",
              f"    kernel_{p.name}[lambda meta: (triton.cdiv(n, meta['BLOCK']),)](",
              f"        {params}, n, enable_fp_fusion={contract}, enable_reflect_ftz=False)"]
    return lines


def render(plan: Plan, *, configs=CONFIGS, contract: bool = False, title: str = "") -> str:
    """Module source: for each non-constant Program NAME, `kernel_NAME` and `launch_NAME`.

    `configs` are the (BLOCK, num_warps) pairs to tune over (one pair: no tuning)."""
    bodies = ["\n".join(render_program(p, contract)) for p in plan.programs if not p.constant]
    choices = ", ".join(f"triton.Config({{'BLOCK': {block}}}, num_warps={warps})"
                        for block, warps in configs)
    head = [f'"""Generated by exprforge. {title}"""'.replace("\n", " "),
            "import triton", "import triton.language as tl", "",
            "# libdevice on a GPU; NumPy stand-ins under TRITON_INTERPRET=1",
            "from exprforge.targets.triton import libdevice", "",
            f"CONFIGS = [{choices}]"]
    return "\n".join(head) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"
