"""Numba renderer: a Plan becomes the source of a Python module of compiled loops.

Each Program becomes an `@njit(error_model="numpy")` scalar function (IEEE division: inf
and NaN, no ZeroDivisionError) called by a loop compiled as a C function (`@cfunc`),

    kernel_NAME(rows, cols, a0, r0, c0, ..., out0, ...):
        out0[i * cols + j] = core(a0[r0[i] + j * c0], ...)

over pointers to contiguous data, the same contract and C signature as the LLVM
target's loops (see targets.kernel.loop_layout); the target does NumPy's broadcasting
and `out=` around them, and stores their machine code (targets/numba.py). The loops use
nothing of Numba's runtime, so that code links and runs without Numba (a RowReduce
loop's scratch memory is on the stack: targets/numba_helpers.scratch_*).

Every SSA value is passed through its dtype's constructor because Numba computes int32
arithmetic in int64; the conversion compiles to nothing where the types already agree.
Literals are module globals of the exact NumPy type (Numba freezes globals as typed
constants).
"""
from __future__ import annotations

from exprforge.engine import dtypes as dt

from .lower import PAIRWISE_BLOCK, Branch, Instr, Plan, Program, RowReduce

CTOR = {"float32": "np.float32", "float64": "np.float64", "int32": "np.int32",
        "int64": "np.int64", "bool": "np.bool_"}

# op -> template over argument names {0} {1} {2}; {to} is the target dtype's constructor
SPELLINGS = {
    "add": "{0} + {1}", "sub": "{0} - {1}", "mul": "{0} * {1}", "div": "{0} / {1}",
    "neg": "-{0}", "fma": "fma_({0}, {1}, {2})", "pow": "{0} ** {1}", "abs": "abs({0})",
    "min": "np.fmin({0}, {1})", "max": "np.fmax({0}, {1})",
    "copysign": "np.copysign({0}, {1})",
    "sqrt": "np.sqrt({0})", "cbrt": "np.cbrt({0})", "exp": "math.exp({0})",
    "exp2": "np.exp2({0})", "expm1": "math.expm1({0})", "log": "math.log({0})",
    "log2": "math.log2({0})", "log10": "math.log10({0})", "log1p": "math.log1p({0})",
    "sin": "math.sin({0})", "cos": "math.cos({0})", "tan": "math.tan({0})",
    "asin": "math.asin({0})", "acos": "math.acos({0})", "atan": "math.atan({0})",
    "atan2": "math.atan2({0}, {1})", "sinh": "math.sinh({0})", "cosh": "math.cosh({0})",
    "tanh": "math.tanh({0})", "asinh": "math.asinh({0})", "acosh": "math.acosh({0})",
    "atanh": "math.atanh({0})", "erf": "math.erf({0})", "erfc": "math.erfc({0})",
    "floor": "np.floor({0})", "ceil": "np.ceil({0})", "round": "np.rint({0})",
    "trunc": "np.trunc({0})", "hypot": "np.hypot({0}, {1})", "fmod": "np.fmod({0}, {1})",
    "lt": "{0} < {1}", "le": "{0} <= {1}", "gt": "{0} > {1}", "ge": "{0} >= {1}",
    "eq": "{0} == {1}", "ne": "{0} != {1}", "where": "{1} if {0} else {2}",
    "and": "{0} and {1}", "or": "{0} or {1}", "not": "not {0}",
    "bitand": "{0} & {1}", "bitor": "{0} | {1}", "bitxor": "{0} ^ {1}", "bitnot": "~{0}",
    # NumPy's shifts: a count outside [0, width) gives 0 (or -1 for a negative >> )
    "shl": "({0} << {1}) if 0 <= {1} < {bits} else {zero}",
    "shr": "({0} >> {1}) if 0 <= {1} < {bits} else ({minus_one} if {0} < 0 else {zero})",
    "ldexp": "ldexp_({0}, {exponent})", "cast": "{to}({0})",
    "bitcast": "bitcast_{src}_{dst}({0})",
}
HELPERS = ("fma_", "ldexp_", "block_sum", "bitcast_float32_int32", "bitcast_int32_float32",
           "bitcast_float64_int64", "bitcast_int64_float64", "scratch_float32",
           "scratch_float64", "scratch_int32", "scratch_int64")


def has(op: str) -> bool:
    return op in SPELLINGS


def literal(value, dtype: str) -> str:
    """Exact source spelling of a NumPy scalar of `dtype`."""
    if dt.is_float(dtype):
        return f"{CTOR[dtype]}(float.fromhex({float(value).hex()!r}))"
    if dtype == "bool":
        return f"np.bool_({bool(value)})"
    return f"{CTOR[dtype]}({int(value)})"


def _expression(ins: Instr, types: dict, constant) -> str:
    template = SPELLINGS[ins.op]
    src = types.get(ins.args[0], ins.dtype) if ins.args else ins.dtype
    fields = {"to": CTOR.get(ins.attr, ""), "src": src, "dst": ins.attr,
              "bits": dt.BITS[ins.dtype]}
    if "{zero}" in template:
        fields["zero"] = constant(0, ins.dtype)
    if "{minus_one}" in template:
        fields["minus_one"] = constant(-1, ins.dtype)
    if "{exponent}" in template:  # past +-2**20 every result is 0 or inf: clamp, don't wrap
        n = ins.args[1]
        fields["exponent"] = n if types[n] == "int32" else \
            f"np.int32(max(min({n}, 1048576), -1048576))"
    return template.format(*ins.args, **fields)


def render_program(p: Program, constants: dict, cache: bool, fastmath) -> list[str]:
    """Lines of a scalar core function; literals go into `constants`."""
    params = ", ".join(name for name, _ in p.params)
    types = dict(p.params)

    def constant(value, dtype):
        return _constant(constants, value, dtype)
    lines = [f"@njit(error_model='numpy', cache={cache}, fastmath={fastmath!r})",
             f"def core_{p.name}({params}):"]

    def emit(items, indent):
        pad = " " * indent
        for ins in items:
            types[ins.out] = ins.dtype
            if isinstance(ins, Branch):  # only the taken side runs
                lines.append(f"{pad}if {ins.cond}:")
                emit(ins.then, indent + 4)
                lines.append(f"{pad}    {ins.out} = {ins.then_result}")
                lines.append(f"{pad}else:")
                emit(ins.orelse, indent + 4)
                lines.append(f"{pad}    {ins.out} = {ins.else_result}")
            elif ins.op == "const":
                lines.append(f"{pad}{ins.out} = {constant(ins.attr, ins.dtype)}")
            else:
                lines.append(f"{pad}{ins.out} = {CTOR[ins.dtype]}"
                             f"({_expression(ins, types, constant)})")
    emit(p.body, 4)
    lines.append(f"    return {', '.join(p.returns)}")
    return lines


def _constant(constants: dict, value, dtype: str) -> str:
    """The module global holding a literal (Numba reads globals as typed constants)."""
    return constants.setdefault(literal(value, dtype), f"c{len(constants)}")


def _numba_type(dtype: str) -> str:
    return "boolean" if dtype == "bool" else dtype


def _array_type(dtype: str) -> str:
    return _numba_type(dtype) + "[::1]"


def _pointer(dtype: str) -> str:
    # NumPy's bools are bytes; Numba stores an i1 through a bool pointer: bytes it is
    return f"CPointer({'uint8' if dtype == 'bool' else dtype})"


def _load(pointer: str, dtype: str, index: str) -> str:
    return f"({pointer}[{index}] != 0)" if dtype == "bool" else f"{pointer}[{index}]"


def _stored(value: str, dtype: str) -> str:
    return f"np.uint8({value})" if dtype == "bool" else value


def loop_signature(p: Program, extra: int = 0) -> str:
    """The loop's C signature: pointers as the LLVM target's loops take them; `extra`
    int64 (pointer, table, step) triples follow the inputs (a RowReduce's schedule and
    result rows)."""
    triples = [f"{_pointer(d)}, CPointer(int64), int64" for _, d in p.params]
    triples += ["CPointer(int64), CPointer(int64), int64"] * extra
    outs = [_pointer(d) for _, d in p.outputs]
    return f"void(int64, int64, {', '.join(triples + outs)})"


def _loop(p: Program, name: str, options: str) -> list[str]:
    """kernel(rows, cols, a0, r0, c0, ..., out0, ...): out[i * cols + j] = f(a0[r0[i] + j
    * c0], ...), as the LLVM target's loops (see targets.kernel.loop_layout)."""
    # unsigned indices: Numba then skips its negative-index wraparound, and LLVM vectorizes
    params = [n for n, _ in p.params]
    header = ", ".join(f"{n}, r_{n}, c_{n}" for n in params)
    outs = [f"out{k}" for k in range(len(p.outputs))]

    def body(pad, row, col):
        args = ", ".join(_load(n, d, f"b_{n} + {col} * u_{n}") for n, d in p.params)
        if len(outs) == 1:
            value = _stored(f"core_{p.name}({args})", p.outputs[0][1])
            return [f"{pad}out0[{row} + {col}] = {value}"]
        values = [f"v{k}" for k in range(len(outs))]   # one call, then a store per output
        return [f"{pad}{', '.join(values)} = core_{p.name}({args})",
                *[f"{pad}{o}[{row} + {col}] = {_stored(v, d)}"
                  for o, v, (_, d) in zip(outs, values, p.outputs)]]
    return [f"@cfunc({loop_signature(p)!r}, {options})",
            f"def {name}(rows, cols, {header}, {', '.join(outs)}):",
            *[f"    u_{n} = uint64(c_{n})" for n in params],
            "    for i in range(rows):",
            *[f"        b_{n} = uint64(r_{n}[i])" for n in params],
            "        first = uint64(i) * uint64(cols)",
            "        for k in range(cols):",
            "            j = uint64(k)",
            *body(" " * 12, "first", "j")]


def _row_loop(p: RowReduce, name: str, options: str, constants: dict) -> list[str]:
    """kernel(rows, cols, a0, r0, c0, ..., schedule, -, -, table, -, accumulate, out0, ...):
    the sum of row i's per-element values, added in the schedule's order (see
    lower.pairwise_schedule), is outk[i] (a mean: divided by cols), or with accumulate
    is added to outk[table[i]]; an elementwise output (op "") is stored at
    outk[i * cols + j]; as the LLVM target's RowReduce loops."""
    params = [n for n, _ in p.params]
    header = ", ".join(f"{n}, r_{n}, c_{n}" for n in params)
    outs = [f"out{k}" for k in range(len(p.outputs))]
    values = [f"v{k}" for k in range(len(outs))]
    sums = [k for k, op in enumerate(p.ops) if op and op != "rcount"]
    counts = [k for k, op in enumerate(p.ops) if op == "rcount"]   # the row's length
    args = ", ".join(_load(n, d, f"b_{n} + j * u_{n}") for n, d in p.params)
    zeros = {k: _constant(constants, 0, p.outputs[k][1]) for k in sums}
    def stack(k, at):   # entry sp + at of sum k's stack, which follows its block
        return f"block{k}[{PAIRWISE_BLOCK + at} + sp]"
    lines = [f"@cfunc({loop_signature(p, extra=2)!r}, {options})",
             f"def {name}(rows, cols, {header}, schedule, r_schedule, c_schedule, "
             f"table, r_table, accumulate, {', '.join(outs)}):",
             *[f"    u_{n} = uint64(c_{n})" for n in params],
             *[f"    block{k} = scratch_{p.outputs[k][1]}()   # then the stack" for k in sums],
             "    for i in range(rows):",
             *[f"        b_{n} = uint64(r_{n}[i])" for n in params],
             "        first = uint64(i) * uint64(cols)",
             "        sp = 0",
             "        off = 0",
             "        q = 0",
             "        while schedule[q] >= 0:",
             "            s = schedule[q]",
             "            q += 1",
             "            if s > 0:",
             "                for t in range(s):",
             "                    j = uint64(off + t)",
             "                    u = uint64(t)",
             f"                    {', '.join(values)} = core_{p.name}({args})",
             *[f"                    block{k}[u] = v{k}" if k in sums else
               f"                    out{k}[first + j] = {_stored(f'v{k}', p.outputs[k][1])}"
               for k in range(len(outs))
               if k not in counts],
             *[f"                {stack(k, 0)} = block_sum(block{k}, s, {zeros[k]})"
               for k in sums],
             "                sp += 1",
             "                off += s",
             "            else:",
             "                sp -= 1",
             *[f"                {stack(k, -1)} = {stack(k, -1)} + {stack(k, 0)}"
               for k in sums]]
    lines.append("        if accumulate:   # out[table[i]] += total; the caller divides means")
    for k in sums:
        total = f"(block{k}[{PAIRWISE_BLOCK}] if sp else {zeros[k]})"
        lines.append(f"            out{k}[table[i]] += {total}")
    for k in counts:
        lines.append(f"            out{k}[table[i]] += {CTOR[p.outputs[k][1]]}(cols)")
    lines.append("        else:   # out[i] = 0 + total (NumPy's start: -0 becomes +0)")
    for k in counts:
        lines.append(f"            out{k}[i] = {CTOR[p.outputs[k][1]]}(cols)")
    for k in sums:
        d = p.outputs[k][1]
        total = f"({zeros[k]} + (block{k}[{PAIRWISE_BLOCK}] if sp else {zeros[k]}))"
        if p.ops[k] == "rmean":   # NumPy divides in float64, then rounds to the dtype
            total = f"{CTOR[d]}(np.float64({total}) / np.float64(cols))"
        lines.append(f"            out{k}[i] = {total}")
    return lines


def _matmul(plan: Plan, options: str, parallel: bool) -> list[str]:
    """`matmul(a, b, out)`: out[q, i, j] += f(a[q, i, k], b[q, k, j]) over k, for the
    plan's one Program f of two arguments; k before j, so the inner loop runs along rows
    of b and out (contiguous) and vectorizes. parallel: the rows i on Numba's threads."""
    programs = [p for p in plan.programs if not p.constant]
    if len(plan.steps) != 1 or len(programs) != 1 or len(plan.params) != 2:
        raise ValueError("matmul=True needs an elementwise program of two arguments")
    (p,) = programs
    first = "v_" + plan.params[0][0]
    arrays = ", ".join(_array_type(d).replace("::1", ":, :, ::1")
                       for d in [plan.params[0][1], plan.params[1][1], p.dtype])
    call = ", ".join("x" if n == first else "b[q, k, j]" for n, _ in p.params)
    rows = "prange" if parallel else "range"
    options += ", parallel=True" if parallel else ""
    return [f"@njit(['void({arrays})'], {options})",
            "def matmul(a, b, out):",
            "    for q in range(out.shape[0]):",
            f"        for i in {rows}(out.shape[1]):",
            "            for k in range(a.shape[2]):",
            "                x = a[q, i, k]",
            "                for j in range(out.shape[2]):",
            f"                    out[q, i, j] += core_{p.name}({call})"]


def render(plan: Plan, *, fastmath=False, title: str = "") -> str:
    """Module source: for each non-constant Program NAME, the loop `kernel_NAME`. The
    target stores the loops' machine code itself: nothing here uses Numba's cache."""
    constants: dict[str, str] = {}
    bodies = []
    loops = f"error_model='numpy', fastmath={fastmath!r}"
    for p in plan.programs:
        if p.constant:
            continue
        lines = render_program(p, constants, False, fastmath)
        if isinstance(p, RowReduce):
            lines += ["", ""] + _row_loop(p, f"kernel_{p.name}", loops, constants)
        else:
            lines += ["", ""] + _loop(p, f"kernel_{p.name}", loops)
        bodies.append("\n".join(lines))
    return _module(title, constants, bodies)


def render_matmul(plan: Plan, *, parallel: bool = False, fastmath=False, cache: bool = True,
                  title: str = "") -> str:
    """Module source of `matmul` (see _matmul; parallel: its rows on Numba's threads), a
    module of its own: loading it (from Numba's cache) compiles none of the loops."""
    constants: dict[str, str] = {}
    options = f"error_model='numpy', cache={cache}, fastmath={fastmath!r}"
    body = _matmul(plan, options, parallel)   # (which checks the plan is one such program)
    (p,) = [p for p in plan.programs if not p.constant]
    lines = render_program(p, constants, cache, fastmath)
    return _module(title, constants, ["\n".join(lines + ["", ""] + body)])


def _module(title: str, constants: dict, bodies: list) -> str:
    head = [f'"""Generated by exprforge. {title}"""'.replace("\n", " "),
            "import math", "", "import numpy as np",
            "from numba import cfunc, njit, prange, uint64", "",
            f"from exprforge.targets.numba_helpers import {', '.join(HELPERS)}  # noqa: F401",
            ""]
    head += [f"{name} = {text}" for text, name in constants.items()]
    return "\n".join(head) + "\n\n\n" + "\n\n\n".join(bodies) + "\n"
