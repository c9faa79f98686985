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

from .lower import PAIRWISE_BLOCK, PAIRWISE_STACK, Branch, Plan, Program, RowReduce

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


CHUNK = 256   # elements per inner loop (and 8-byte zeros in _zeros)
I32 = ir.IntType(32)


class _Loop:
    """The frame both kinds of Program share: the function, its row loop, the value of
    each input that is constant along the row (loaded once per row), and the element
    loop."""

    def __init__(self, module: ir.Module, p: Program, flags: tuple, extra: int = 0):
        args = [I64, I64] + [PTR, PTR, I64] * (len(p.params) + extra)
        fnty = ir.FunctionType(ir.VoidType(), args + [PTR] * len(p.outputs))
        self.module, self.p, self.flags = module, p, flags
        self.fn = fn = ir.Function(module, fnty, p.name)
        self.rows, self.cols = fn.args[0], fn.args[1]
        triples = [fn.args[2 + 3 * k: 5 + 3 * k] for k in range(len(p.params) + extra)]
        self.inputs, self.extra = triples[:len(p.params)], triples[len(p.params):]
        self.outs = fn.args[2 + 3 * (len(p.params) + extra):]
        for out in self.outs:   # the caller never passes an output that overlaps an input
            out.add_attribute("noalias")
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))
        self.zero, self.one = ir.Constant(I64, 0), ir.Constant(I64, 1)
        self.slots = [self.alloca(dtype, 1) for _, dtype in p.params]
        self.zeros = _zeros(module)

    def alloca(self, dtype: str, n: int):
        """A stack array of n elements, made in the entry block."""
        with self.b.goto_entry_block():
            return self.b.bitcast(self.b.alloca(MEMORY[dtype], size=ir.Constant(I64, n)), PTR)

    def counted(self, start, stop, name):
        """Opens a loop over i = start, ... while i < stop, leaving the builder in its
        body: (i, head block, exit block), which close() takes once the body is built."""
        b, fn = self.b, self.fn
        head, body, done = (fn.append_basic_block(f"{name}.{s}") for s in ("head", "body", "done"))
        before = b.block
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, before)
        b.cbranch(b.icmp_signed("<", i, stop), body, done)
        b.position_at_end(body)
        return i, head, done

    def close(self, i, step, head, done):
        i.add_incoming(self.b.add(i, step), self.b.block)
        self.b.branch(head)
        self.b.position_at_end(done)

    def row(self):
        """Opens the row loop and keeps the value of each input constant along this row:
        (row index, head, exit, each input's first element in the row, whether it runs
        along the row)."""
        b = self.b
        r, head, done = self.counted(self.zero, self.rows, "row")
        starts, along = [], []
        for k, ((ptr, table, stride), (_, dtype)) in enumerate(zip(self.inputs, self.p.params)):
            offset = b.load(b.gep(table, [r], source_etype=I64), typ=I64)
            start = b.gep(ptr, [offset], source_etype=MEMORY[dtype])
            runs = b.icmp_signed("!=", stride, self.zero)
            with b.if_then(b.not_(runs)):   # constant along the row: its one value
                b.store(b.load(start, typ=MEMORY[dtype]), self.slots[k])
            starts.append(start)
            along.append(runs)
        return r, head, done, starts, along

    def elements(self, starts, along, c, m, store):
        """The element loop over j < m (the row's elements c + j, m <= CHUNK): computes the
        program's per-element values and calls store(value, dtype, k, j) for each. An
        input constant along the row reads a block of zeros (a load the loop can make
        one vector load, like the others) and takes its row's value instead: no
        per-row copy of it."""
        b, p = self.b, self.p
        sources = [b.select(runs, b.gep(start, [c], source_etype=MEMORY[dtype]), self.zeros)
                   for runs, start, (_, dtype) in zip(along, starts, p.params)]
        fixed = [b.load(slot, typ=MEMORY[dtype]) for slot, (_, dtype) in zip(self.slots, p.params)]
        j, head, done = self.counted(self.zero, m, "elem")
        values, types = {}, {}
        for (name, dtype), source, runs, value in zip(p.params, sources, along, fixed):
            raw = b.load(b.gep(source, [j], source_etype=MEMORY[dtype]), typ=MEMORY[dtype])
            raw = b.select(runs, raw, value)
            values[name] = b.trunc(raw, TYPES["bool"]) if dtype == "bool" else raw
            types[name] = dtype
        _emit_items(_Emitter(self.module, b, self.flags), self.fn, p.body, values, types)
        for k, (name, (_, dtype)) in enumerate(zip(p.returns, p.outputs)):
            store(values[name], dtype, k, j)
        self.close(j, self.one, head, done)      # branches may have moved the block


def _zeros(module: ir.Module):
    """CHUNK 8-byte zeros, one constant array per module (what an input constant along
    the row 'reads' in the element loop)."""
    name = "exprforge.zeros"
    if name in module.globals:
        return module.globals[name]
    ty = ir.ArrayType(ir.IntType(8), CHUNK * 8)
    g = ir.GlobalVariable(module, ty, name)
    g.initializer = ir.Constant(ty, None)
    g.global_constant = True
    g.linkage = "private"
    g.align = 64
    return g


def render_program(module: ir.Module, p: Program, flags: tuple) -> ir.Function:
    if isinstance(p, RowReduce):
        return render_row_reduce(module, p, flags)
    loop = _Loop(module, p, flags)
    b, chunk = loop.b, ir.Constant(I64, CHUNK)
    r, row_head, row_done, starts, along = loop.row()
    row_start = b.mul(r, loop.cols)
    c, chunk_head, chunk_done = loop.counted(loop.zero, loop.cols, "chunk")
    left = b.sub(loop.cols, c)
    m = b.select(b.icmp_signed("<", left, chunk), left, chunk)
    first = b.add(row_start, c)
    targets = [b.gep(out, [first], source_etype=MEMORY[dtype])
               for out, (_, dtype) in zip(loop.outs, p.outputs)]

    def store(value, dtype, k, j):
        if dtype == "bool":
            value = b.zext(value, MEMORY["bool"])
        b.store(value, b.gep(targets[k], [j], source_etype=MEMORY[dtype]))
    loop.elements(starts, along, c, m, store)
    loop.close(c, chunk, chunk_head, chunk_done)
    loop.close(r, loop.one, row_head, row_done)
    b.ret_void()
    return loop.fn


def render_row_reduce(module: ir.Module, p: RowReduce, flags: tuple) -> ir.Function:
    """void NAME(rows, cols, inputs..., ptr schedule, ptr -, i64 -, ptr table, ptr -,
    i64 accumulate, out0, ...): the sum of row i's per-element values, added in the
    schedule's order (see lower.pairwise_schedule), is outk[i] (a mean: divided by cols),
    or with accumulate != 0 is added to outk[table[i]]; an elementwise output (op "") is
    stored at outk[i * cols + j]; a count (op "rcount") is cols, its summand unused. A
    block's values go to a buffer and are summed there in 8 lanes (one vector add per 8
    elements); the block sums wait on a stack."""
    loop = _Loop(module, p, flags, extra=2)
    b, fn = loop.b, loop.fn
    schedule = loop.extra[0][0]
    sums = [(k, dtype) for k, ((_, dtype), op) in enumerate(zip(p.outputs, p.ops))
            if op and op != "rcount"]
    counts = [(k, dtype) for k, ((_, dtype), op) in enumerate(zip(p.outputs, p.ops))
              if op == "rcount"]
    blocks = {k: loop.alloca(dtype, PAIRWISE_BLOCK) for k, dtype in sums}
    stacks = {k: loop.alloca(dtype, PAIRWISE_STACK) for k, dtype in sums}
    r, row_head, row_done, starts, along = loop.row()
    row_start = b.mul(r, loop.cols)
    entry = b.block
    step_head, step_body, row_end = (fn.append_basic_block(f"step.{s}")
                                     for s in ("head", "body", "end"))
    b.branch(step_head)
    b.position_at_end(step_head)   # q: the schedule's index, sp: the stack's height
    q, sp, off = b.phi(I64), b.phi(I64), b.phi(I64)
    for phi in (q, sp, off):
        phi.add_incoming(loop.zero, entry)
    s = b.load(b.gep(schedule, [q], source_etype=I64), typ=I64)
    b.cbranch(b.icmp_signed("<", s, loop.zero), row_end, step_body)
    b.position_at_end(step_body)
    leaf, combine, next_step = (fn.append_basic_block(f"step.{n}")
                                for n in ("leaf", "combine", "next"))
    b.cbranch(b.icmp_signed(">", s, loop.zero), leaf, combine)

    b.position_at_end(leaf)        # s > 0: the next s values, summed and pushed

    def store(value, dtype, k, j):
        if p.ops[k] == "rcount":   # the row's length, not its sum
            return
        if k in blocks:
            b.store(value, b.gep(blocks[k], [j], source_etype=MEMORY[dtype]))
            return
        if dtype == "bool":        # an elementwise output: stored in place
            value = b.zext(value, MEMORY["bool"])
        at = b.add(b.add(row_start, off), j)
        b.store(value, b.gep(loop.outs[k], [at], source_etype=MEMORY[dtype]))
    loop.elements(starts, along, off, s, store)
    for k, dtype in sums:
        total = _block_sum(loop, blocks[k], s, dtype)
        b.store(total, b.gep(stacks[k], [sp], source_etype=TYPES[dtype]))
    pushed, moved = b.add(sp, loop.one), b.add(off, s)
    leaf_end = b.block
    b.branch(next_step)

    b.position_at_end(combine)     # s == 0: the top two partial sums added
    popped = b.sub(sp, loop.one)
    below = b.sub(sp, ir.Constant(I64, 2))
    for k, dtype in sums:
        ty = TYPES[dtype]
        low = b.gep(stacks[k], [below], source_etype=ty)
        high = b.gep(stacks[k], [popped], source_etype=ty)
        b.store(b.fadd(b.load(low, typ=ty), b.load(high, typ=ty)), low)
    b.branch(next_step)

    b.position_at_end(next_step)
    new_sp, new_off = b.phi(I64), b.phi(I64)
    new_sp.add_incoming(pushed, leaf_end)
    new_sp.add_incoming(popped, combine)
    new_off.add_incoming(moved, leaf_end)
    new_off.add_incoming(off, combine)
    q.add_incoming(b.add(q, loop.one), next_step)
    sp.add_incoming(new_sp, next_step)
    off.add_incoming(new_off, next_step)
    b.branch(step_head)

    b.position_at_end(row_end)     # the one sum left (an empty row: none, and 0)
    empty = b.icmp_signed("==", sp, loop.zero)
    f64 = TYPES["float64"]
    table, _, accumulate = loop.extra[1]
    adds = b.icmp_signed("!=", accumulate, loop.zero)
    for k, dtype in sums + counts:
        ty, op = TYPES[dtype], p.ops[k]
        total = b.sitofp(loop.cols, ty) if op == "rcount" else \
            b.select(empty, ir.Constant(ty, 0.0), b.load(stacks[k], typ=ty))
        with b.if_else(adds) as (add, store):
            with add:              # out[table[r]] += total; the caller divides means
                slot = b.gep(loop.outs[k], [b.load(b.gep(table, [r], source_etype=I64),
                                                   typ=I64)], source_etype=ty)
                b.store(b.fadd(b.load(slot, typ=ty), total), slot)
            with store:            # out[r] = 0 + total (NumPy's start: -0 becomes +0)
                value = b.fadd(ir.Constant(ty, 0.0), total)
                if op == "rmean":  # NumPy divides in float64, then rounds to the dtype
                    wide = value if ty == f64 else b.fpext(value, f64)
                    quotient = b.fdiv(wide, b.sitofp(loop.cols, f64))
                    value = quotient if ty == f64 else b.fptrunc(quotient, ty)
                b.store(value, b.gep(loop.outs[k], [r], source_etype=ty))
    loop.close(r, loop.one, row_head, row_done)
    b.ret_void()
    return fn


def _block_sum(loop: _Loop, block, n, dtype: str):
    """NumPy's sum of a block of n <= 128 values: left to right from 0 when n < 8, else
    8 partial sums (lane k adds elements k, k + 8, ... up to n rounded down to 8) added
    as ((0+1)+(2+3))+((4+5)+(6+7)), then the rest left to right."""
    b, fn, ty = loop.b, loop.fn, TYPES[dtype]
    vec, eight = ir.VectorType(ty, 8), ir.Constant(I64, 8)
    size = 4 if dtype == "float32" else 8

    def accumulate(start, stop, first, step, load, name):
        """first, then each load(i) added, for i = start, start + step, ... < stop."""
        before = b.block
        head, body, done = (fn.append_basic_block(f"{name}.{s}") for s in ("head", "body", "done"))
        b.branch(head)
        b.position_at_end(head)
        i, acc = b.phi(I64), b.phi(first.type)
        i.add_incoming(start, before)
        acc.add_incoming(first, before)
        b.cbranch(b.icmp_signed("<", i, stop), body, done)
        b.position_at_end(body)
        acc.add_incoming(b.fadd(acc, load(i)), b.block)
        i.add_incoming(b.add(i, step), b.block)
        b.branch(head)
        b.position_at_end(done)
        return acc

    def element(i):
        return b.load(b.gep(block, [i], source_etype=ty), typ=ty)

    def lane_group(i):
        return b.load(b.gep(block, [i], source_etype=ty), typ=vec, align=size)

    small, wide, join = (fn.append_basic_block(f"block.{s}") for s in ("small", "wide", "join"))
    b.cbranch(b.icmp_signed("<", n, eight), small, wide)
    b.position_at_end(small)
    small_total = accumulate(loop.zero, n, ir.Constant(ty, 0.0), loop.one, element, "seq")
    small_end = b.block
    b.branch(join)
    b.position_at_end(wide)
    end = b.and_(n, ir.Constant(I64, -8))
    lanes = accumulate(eight, end, lane_group(loop.zero), eight, lane_group, "lanes")
    r = [b.extract_element(lanes, ir.Constant(I32, k)) for k in range(8)]
    tree = b.fadd(b.fadd(b.fadd(r[0], r[1]), b.fadd(r[2], r[3])),
                  b.fadd(b.fadd(r[4], r[5]), b.fadd(r[6], r[7])))
    wide_total = accumulate(end, n, tree, loop.one, element, "rest")
    wide_end = b.block
    b.branch(join)
    b.position_at_end(join)
    total = b.phi(ty)
    total.add_incoming(small_total, small_end)
    total.add_incoming(wide_total, wide_end)
    return total


def render(plan: Plan, *, fastmath: bool = False, contract: bool = False,
           triple: str = "") -> ir.Module:
    flags = ("fast",) if fastmath else ("contract",) if contract else ()
    module = ir.Module(name="exprforge_kernel")
    module.triple = triple
    for p in plan.programs:
        if not p.constant:
            render_program(module, p, flags)
    return module
