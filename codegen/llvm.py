"""LLVM renderer: each Program becomes a loop function built with llvmlite's IR builder.

    void NAME(i64 rows, i64 cols, ptr a0, ptr r0, i64 c0, ..., ptr out0, ...)

computes outk[i * cols + j] = fk(a0[r0[i] + j * c0], ...) for i < rows, j < cols: r is a
table of each row's first element, c is 1 for an input that runs along the row or 0 for
one that is the same all along it (a scalar, or a row's mean broadcast over the row), so
broadcasting needs no copies. Each row runs in chunks of CHUNK elements; an input that
is constant along the row is copied into a chunk-long buffer once per row, so that in the
inner loop every input is read at unit stride and the outputs, marked noalias, overlap
nothing: LLVM vectorizes it with no runtime checks. Float instructions carry no fast-math
flags unless asked: `contract` lets LLVM fuse a*b+c into an FMA (which changes results),
`fastmath` allows every reassociation. Transcendental functions are calls to the C
library (expf, sin, ...), resolved when the object code is loaded.
"""
from __future__ import annotations

from llvmlite import ir

from exprforge.engine import dtypes as dt

from .lower import Branch, Plan, Program

TYPES = {"float32": ir.FloatType(), "float64": ir.DoubleType(), "int32": ir.IntType(32),
         "int64": ir.IntType(64), "bool": ir.IntType(1)}
MEMORY = {**TYPES, "bool": ir.IntType(8)}   # NumPy stores a bool in a byte
I64 = ir.IntType(64)
PTR = ir.PointerType()

# spellings, by kind of operand ---------------------------------------------------------
FLOAT_BINARY = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}
INT_BINARY = {"add": "add", "sub": "sub", "mul": "mul", "bitand": "and_", "bitor": "or_",
              "bitxor": "xor", "and": "and_", "or": "or_"}
COMPARE = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
INTRINSICS = {"sqrt": "llvm.sqrt", "abs": "llvm.fabs", "floor": "llvm.floor",
              "ceil": "llvm.ceil", "trunc": "llvm.trunc", "round": "llvm.roundeven",
              "fma": "llvm.fma", "min": "llvm.minnum", "max": "llvm.maxnum",
              "copysign": "llvm.copysign"}
LIBM = {op: op for op in ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sin",
                          "cos", "tan", "asin", "acos", "atan", "atan2", "sinh", "cosh",
                          "tanh", "asinh", "acosh", "atanh", "erf", "erfc", "cbrt", "pow",
                          "hypot", "fmod")}
OTHER = {"neg", "where", "not", "bitnot", "shl", "shr", "ldexp", "cast", "bitcast"}


def has(op: str) -> bool:
    return op in FLOAT_BINARY or op in INT_BINARY or op in COMPARE or op in INTRINSICS \
        or op in LIBM or op in OTHER


class _Emitter:
    """Emits one Program's instructions into a builder."""

    def __init__(self, module: ir.Module, builder: ir.IRBuilder, flags: tuple):
        self.m, self.b, self.flags = module, builder, flags

    def function(self, name: str, ret, args) -> ir.Function:
        fnty = ir.FunctionType(ret, args)
        existing = self.m.globals.get(name)
        return existing if existing is not None else ir.Function(self.m, fnty, name)

    def intrinsic(self, name: str, ty, n: int):
        return self.function(f"{name}.{'f32' if ty == TYPES['float32'] else 'f64'}", ty, [ty] * n)

    def libm(self, name: str, ty, n: int):
        return self.function(name + ("f" if ty == TYPES["float32"] else ""), ty, [ty] * n)

    def emit(self, op: str, args: list, dtype: str, src: str | None, attr):
        b, ty = self.b, TYPES[dtype]
        is_float = dt.is_float(src or dtype)
        if op in COMPARE:
            return (b.fcmp_unordered("!=", *args) if op == "ne" and is_float  # NaN != NaN
                    else b.fcmp_ordered(COMPARE[op], *args) if is_float
                    else b.icmp_signed(COMPARE[op], *args))
        if op in FLOAT_BINARY and dt.is_float(dtype):
            return getattr(b, FLOAT_BINARY[op])(*args, flags=self.flags)
        if op in INT_BINARY:
            return getattr(b, INT_BINARY[op])(*args)
        if op == "abs" and not dt.is_float(dtype):
            return b.select(b.icmp_signed("<", args[0], ir.Constant(ty, 0)), b.neg(args[0]), args[0])
        if op in ("min", "max") and not dt.is_float(dtype):
            pick = b.icmp_signed("<=" if op == "min" else ">=", args[0], args[1])
            return b.select(pick, args[0], args[1])
        if op in INTRINSICS:
            return b.call(self.intrinsic(INTRINSICS[op], ty, len(args)), args)
        if op in LIBM:
            return b.call(self.libm(LIBM[op], ty, len(args)), args)
        return getattr(self, "emit_" + op)(args, dtype, src, attr)

    def emit_neg(self, args, dtype, src, attr):
        return self.b.fneg(args[0], flags=self.flags) if dt.is_float(dtype) else self.b.neg(args[0])

    def emit_where(self, args, dtype, src, attr):
        return self.b.select(*args)

    def emit_not(self, args, dtype, src, attr):
        return self.b.not_(args[0])

    emit_bitnot = emit_not

    def emit_shl(self, args, dtype, src, attr):
        a, n = args
        zero, width = ir.Constant(TYPES[dtype], 0), ir.Constant(TYPES[dtype], dt.BITS[dtype])
        # NumPy: a count outside [0, width) shifts everything out (LLVM would give poison)
        return self.b.select(self.b.icmp_unsigned("<", n, width), self.b.shl(a, n), zero)

    def emit_shr(self, args, dtype, src, attr):
        a, n = args
        ty = TYPES[dtype]
        width = ir.Constant(ty, dt.BITS[dtype])
        fill = self.b.ashr(a, ir.Constant(ty, dt.BITS[dtype] - 1))   # 0 or -1
        return self.b.select(self.b.icmp_unsigned("<", n, width), self.b.ashr(a, n), fill)

    def emit_ldexp(self, args, dtype, src, attr):
        x, n = args
        i32 = ir.IntType(32)
        if n.type != i32:  # clamp a 64-bit exponent: past +-2**20 every result is 0 or inf
            limit = ir.Constant(n.type, 1 << 20)
            n = self.b.select(self.b.icmp_signed(">", n, limit), limit, n)
            n = self.b.select(self.b.icmp_signed("<", n, self.b.neg(limit)), self.b.neg(limit), n)
            n = self.b.trunc(n, i32)
        ty = TYPES[dtype]
        name = f"llvm.ldexp.{'f32' if ty == TYPES['float32'] else 'f64'}.i32"
        return self.b.call(self.function(name, ty, [ty, i32]), [x, n])

    def emit_bitcast(self, args, dtype, src, attr):
        return self.b.bitcast(args[0], TYPES[dtype])

    def emit_cast(self, args, dtype, src, attr):
        b, x, to = self.b, args[0], TYPES[dtype]
        if src == dtype:
            return x
        if dtype == "bool":
            return (b.fcmp_unordered("!=", x, ir.Constant(x.type, 0.0)) if dt.is_float(src)
                    else b.icmp_signed("!=", x, ir.Constant(x.type, 0)))
        if src == "bool":
            return b.uitofp(x, to) if dt.is_float(dtype) else b.zext(x, to)
        if dt.is_float(src) and dt.is_float(dtype):
            return b.fpext(x, to) if dt.BITS[dtype] > dt.BITS[src] else b.fptrunc(x, to)
        if dt.is_float(src):
            return b.fptosi(x, to)  # out of range: undefined in C and LLVM (x86 gives INT_MIN)
        if dt.is_float(dtype):
            return b.sitofp(x, to)
        return b.sext(x, to) if dt.BITS[dtype] > dt.BITS[src] else b.trunc(x, to)


def constant(value, dtype: str):
    if dt.is_float(dtype):
        return ir.Constant(TYPES[dtype], float(value))
    return ir.Constant(TYPES[dtype], int(value))


def _emit_items(emitter: _Emitter, fn, items, values: dict, types: dict):
    b = emitter.b
    for ins in items:
        if isinstance(ins, Branch):  # only the taken side runs; a phi joins the two
            then, orelse, join = (fn.append_basic_block(f"{ins.out}.{s}")
                                  for s in ("then", "else", "join"))
            b.cbranch(values[ins.cond], then, orelse)
            incoming = []
            for block, items_, result in ((then, ins.then, ins.then_result),
                                          (orelse, ins.orelse, ins.else_result)):
                b.position_at_end(block)
                _emit_items(emitter, fn, items_, values, types)
                incoming.append((values[result], b.block))
                b.branch(join)
            b.position_at_end(join)
            phi = b.phi(TYPES[ins.dtype])
            for value, block in incoming:
                phi.add_incoming(value, block)
            values[ins.out] = phi
        elif ins.op == "const":
            values[ins.out] = constant(ins.attr, ins.dtype)
        else:
            src = types[ins.args[0]] if ins.args else None
            values[ins.out] = emitter.emit(ins.op, [values[a] for a in ins.args], ins.dtype,
                                           src, ins.attr)
        types[ins.out] = ins.dtype


CHUNK = 256   # elements per inner loop: the buffers are 256 * 8 bytes at most per input


def render_program(module: ir.Module, p: Program, flags: tuple) -> ir.Function:
    args = [I64, I64]
    for _ in p.params:
        args += [PTR, PTR, I64]
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), args + [PTR] * len(p.outputs)),
                     p.name)
    rows, cols = fn.args[0], fn.args[1]
    inputs = [fn.args[2 + 3 * k: 5 + 3 * k] for k in range(len(p.params))]
    outs = fn.args[2 + 3 * len(p.params):]
    for out in outs:   # the caller never passes an output that overlaps an input
        out.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    zero, one, chunk = ir.Constant(I64, 0), ir.Constant(I64, 1), ir.Constant(I64, CHUNK)
    buffers = [b.bitcast(b.alloca(MEMORY[dtype], size=ir.Constant(I64, CHUNK)), PTR)
               for _, dtype in p.params]
    fill = b.select(b.icmp_signed("<", cols, chunk), cols, chunk)

    def counted(start, stop, name):
        """Opens a loop over i = start, ... while i < stop, leaving the builder in its
        body: (i, head block, exit block), which close() takes once the body is built."""
        head, body, done = (fn.append_basic_block(f"{name}.{s}") for s in ("head", "body", "done"))
        before = b.block
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, before)
        b.cbranch(b.icmp_signed("<", i, stop), body, done)
        b.position_at_end(body)
        return i, head, done

    def close(i, step, head, done):
        i.add_incoming(b.add(i, step), b.block)
        b.branch(head)
        b.position_at_end(done)

    r, row_head, row_done = counted(zero, rows, "row")
    starts, along = [], []
    for k, ((ptr, table, stride), (_, dtype)) in enumerate(zip(inputs, p.params)):
        offset = b.load(b.gep(table, [r], source_etype=I64), typ=I64)
        start = b.gep(ptr, [offset], source_etype=MEMORY[dtype])
        runs = b.icmp_signed("!=", stride, zero)
        with b.if_then(b.not_(runs)):   # constant along the row: fill its buffer once
            value = b.load(start, typ=MEMORY[dtype])
            t, head, done = counted(zero, fill, f"fill{k}")
            b.store(value, b.gep(buffers[k], [t], source_etype=MEMORY[dtype]))
            close(t, one, head, done)
        starts.append(start)
        along.append(runs)
    row_start = b.mul(r, cols)
    c, chunk_head, chunk_done = counted(zero, cols, "chunk")
    left = b.sub(cols, c)
    m = b.select(b.icmp_signed("<", left, chunk), left, chunk)
    sources = [b.select(runs, b.gep(start, [c], source_etype=MEMORY[dtype]), buffer)
               for runs, start, buffer, (_, dtype) in zip(along, starts, buffers, p.params)]
    first = b.add(row_start, c)
    targets = [b.gep(out, [first], source_etype=MEMORY[dtype])
               for out, (_, dtype) in zip(outs, p.outputs)]
    j, inner_head, inner_done = counted(zero, m, "elem")
    values, types = {}, {}
    for (name, dtype), source in zip(p.params, sources):
        raw = b.load(b.gep(source, [j], source_etype=MEMORY[dtype]), typ=MEMORY[dtype])
        values[name] = b.trunc(raw, TYPES["bool"]) if dtype == "bool" else raw
        types[name] = dtype
    _emit_items(_Emitter(module, b, flags), fn, p.body, values, types)
    for target, (name, dtype) in zip(targets, p.outputs):
        result = values[name]
        if dtype == "bool":
            result = b.zext(result, MEMORY["bool"])
        b.store(result, b.gep(target, [j], source_etype=MEMORY[dtype]))
    close(j, one, inner_head, inner_done)      # branches may have moved the block
    close(c, chunk, chunk_head, chunk_done)
    close(r, one, row_head, row_done)
    b.ret_void()
    return fn


def render(plan: Plan, *, fastmath: bool = False, contract: bool = False,
           triple: str = "") -> ir.Module:
    flags = ("fast",) if fastmath else ("contract",) if contract else ()
    module = ir.Module(name="exprforge_kernel")
    module.triple = triple
    for p in plan.programs:
        if not p.constant:
            render_program(module, p, flags)
    return module
