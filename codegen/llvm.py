"""LLVM renderer: each Program becomes a loop function built with llvmlite's IR builder.

    void NAME(i64 rows, i64 cols, ptr a0, ptr r0, i64 c0, ..., ptr out0, ...)

computes outk[i * cols + j] = fk(a0[r0[i] + j * c0], ...) for i < rows, j < cols: r is a
table of each row's first element, c is 1 for an input that runs along the row or 0 for
one that is the same all along it (a scalar, or a row's mean broadcast over the row), so
broadcasting needs no copies. Each row runs in chunks of CHUNK elements; an input that
is constant along the row is loaded once per row and selected in the inner loop (which
reads a block of zeros in its place), so that every input is read at unit stride and the
outputs, marked noalias, overlap nothing: LLVM vectorizes it with no runtime checks.
Large results go out through non-temporal vector stores (STREAM_BYTES), computed on
explicit vectors in several independent pieces (STREAM_STEP), as long bodies are in
cache too (LONG_BODY). Float instructions carry no fast-math flags unless asked:
`contract` lets LLVM fuse a*b+c into an FMA (which changes results), `fastmath` allows
every reassociation. Transcendental functions left in the program (compile inlines the
library's float32 programs by default) are calls to the C library (expf, sin, ...),
resolved when the object code is loaded.
"""
from __future__ import annotations

from llvmlite import ir

from exprforge.engine import dtypes as dt

from .lower import Branch, Plan, Program, RowReduce

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
    """Emits one Program's instructions into a builder, on scalars or, with width > 1,
    on vectors of `width` elements (a branch-free body: a Branch needs scalars)."""

    def __init__(self, module: ir.Module, builder: ir.IRBuilder, flags: tuple, width: int = 1):
        self.m, self.b, self.flags, self.width = module, builder, flags, width

    def type(self, dtype: str, memory: bool = False):
        ty = (MEMORY if memory else TYPES)[dtype]
        return ir.VectorType(ty, self.width) if self.width > 1 else ty

    def const(self, dtype: str, value):
        """A constant of the dtype (every lane of it)."""
        return ir.Constant(self.type(dtype), float(value) if dt.is_float(dtype) else int(value))

    def function(self, name: str, ret, args) -> ir.Function:
        fnty = ir.FunctionType(ret, args)
        existing = self.m.globals.get(name)
        return existing if existing is not None else ir.Function(self.m, fnty, name)

    def suffix(self, ty) -> str:
        """An intrinsic's type suffix: f32, f64, v8f32, ..."""
        scalar = ty.element if isinstance(ty, ir.VectorType) else ty
        name = "f32" if scalar == TYPES["float32"] else "f64"
        return f"v{ty.count}{name}" if isinstance(ty, ir.VectorType) else name

    def intrinsic(self, name: str, ty, n: int):
        return self.function(f"{name}.{self.suffix(ty)}", ty, [ty] * n)

    def call_libm(self, name: str, ty, args):
        """A C library call; on vectors, one call per lane."""
        if not isinstance(ty, ir.VectorType):
            fn = self.function(name + ("f" if ty == TYPES["float32"] else ""), ty, [ty] * len(args))
            return self.b.call(fn, args)
        result = ir.Constant(ty, None)
        for lane in range(ty.count):
            k = ir.Constant(I32, lane)
            value = self.call_libm(name, ty.element, [self.b.extract_element(a, k) for a in args])
            result = self.b.insert_element(result, value, k)
        return result

    def emit(self, op: str, args: list, dtype: str, src: str | None, attr):
        b, ty = self.b, self.type(dtype)
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
            return b.select(b.icmp_signed("<", args[0], self.const(dtype, 0)), b.neg(args[0]), args[0])
        if op in ("min", "max") and not dt.is_float(dtype):
            pick = b.icmp_signed("<=" if op == "min" else ">=", args[0], args[1])
            return b.select(pick, args[0], args[1])
        if op in INTRINSICS:
            return b.call(self.intrinsic(INTRINSICS[op], ty, len(args)), args)
        if op in LIBM:
            return self.call_libm(LIBM[op], ty, args)
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
        zero, width = self.const(dtype, 0), self.const(dtype, dt.BITS[dtype])
        # NumPy: a count outside [0, width) shifts everything out (LLVM would give poison)
        return self.b.select(self.b.icmp_unsigned("<", n, width), self.b.shl(a, n), zero)

    def emit_shr(self, args, dtype, src, attr):
        a, n = args
        width = self.const(dtype, dt.BITS[dtype])
        fill = self.b.ashr(a, self.const(dtype, dt.BITS[dtype] - 1))   # 0 or -1
        return self.b.select(self.b.icmp_unsigned("<", n, width), self.b.ashr(a, n), fill)

    def emit_ldexp(self, args, dtype, src, attr):
        x, n = args
        i32 = self.type("int32")
        if n.type != i32:  # clamp a 64-bit exponent: past +-2**20 every result is 0 or inf
            limit = ir.Constant(n.type, 1 << 20)
            n = self.b.select(self.b.icmp_signed(">", n, limit), limit, n)
            n = self.b.select(self.b.icmp_signed("<", n, self.b.neg(limit)), self.b.neg(limit), n)
            n = self.b.trunc(n, i32)
        ty = self.type(dtype)
        ints = f"v{self.width}i32" if self.width > 1 else "i32"
        name = f"llvm.ldexp.{self.suffix(ty)}.{ints}"
        return self.b.call(self.function(name, ty, [ty, i32]), [x, n])

    def emit_bitcast(self, args, dtype, src, attr):
        return self.b.bitcast(args[0], self.type(dtype))

    def emit_cast(self, args, dtype, src, attr):
        b, x, to = self.b, args[0], self.type(dtype)
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


def splat(b: ir.IRBuilder, value, width: int):
    """value in every lane of a vector of `width` (value itself when width is 1)."""
    if width == 1:
        return value
    vector = ir.VectorType(value.type, width)
    one = b.insert_element(ir.Constant(vector, None), value, ir.Constant(I32, 0))
    return b.shuffle_vector(one, ir.Constant(vector, None),
                            ir.Constant(ir.VectorType(I32, width), [0] * width))


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
            values[ins.out] = emitter.const(ins.dtype, ins.attr)
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
        r, head, done = self.counted(self.zero, self.rows, "row")
        return (r, head, done, *self.row_reads(r, self.slots))

    def row_reads(self, r, slots):
        """Row r's first element of each input, and whether the input runs along the
        row; an input that does not has its one value put in its entry of `slots`."""
        b = self.b
        starts, along = [], []
        for k, ((ptr, table, stride), (_, dtype)) in enumerate(zip(self.inputs, self.p.params)):
            offset = b.load(b.gep(table, [r], source_etype=I64), typ=I64)
            start = b.gep(ptr, [offset], source_etype=MEMORY[dtype])
            runs = b.icmp_signed("!=", stride, self.zero)
            with b.if_then(b.not_(runs)):   # constant along the row: its one value
                b.store(b.load(start, typ=MEMORY[dtype]), slots[k])
            starts.append(start)
            along.append(runs)
        return starts, along

    def sources(self, starts, along, c, slots=None):
        """Per input, where the element loop reads it from the row's element c on, and
        its row value: an input constant along the row reads a block of zeros (a load
        the loop can make one vector load, like the others) and takes its row's value
        instead: no per-row copy of it."""
        b, p = self.b, self.p
        sources = [b.select(runs, b.gep(start, [c], source_etype=MEMORY[dtype]), self.zeros)
                   for runs, start, (_, dtype) in zip(along, starts, p.params)]
        fixed = [b.load(slot, typ=MEMORY[dtype])
                 for slot, (_, dtype) in zip(slots or self.slots, p.params)]
        return sources, along, fixed

    def compute(self, reads, j, width: int = 1) -> dict:
        """The program's values at element j of `reads` (what sources() gave): SSA name
        -> LLVM value, the body's results included; with width > 1, vectors of the values
        at j, j + 1, ... (a body without Branch items)."""
        b, values, types = self.b, {}, {}
        emitter = _Emitter(self.module, b, self.flags, width)
        for (name, dtype), source, runs, value in zip(self.p.params, *reads):
            at = b.gep(source, [j], source_etype=MEMORY[dtype])
            raw = b.load(at, typ=emitter.type(dtype, memory=True), align=dt.BITS[dtype] // 8)
            raw = b.select(runs, raw, splat(b, value, width))
            values[name] = b.trunc(raw, emitter.type("bool")) if dtype == "bool" else raw
            types[name] = dtype
        _emit_items(emitter, self.fn, self.p.body, values, types)
        return values

    def elements(self, starts, along, c, m, store, width: int = 1, start=None):
        """The element loop over start <= j < m (the row's elements c + j, m <= CHUNK):
        computes the program's per-element values and calls store(value, dtype, k, j) for
        each; with width > 1, `width` elements at a time (store(..., j, width))."""
        reads = self.sources(starts, along, c)
        j, head, done = self.counted(start or self.zero, m, "elem")
        if width > 1:
            # computed a register's worth of the widest value at a time and joined for
            # the store: independent chains, each value in one register
            piece = min(width, STREAM_ALIGN // max(_bytes(d) for d in self._dtypes()))
            parts = [self.compute(reads, self.b.add(j, ir.Constant(I64, i)), piece)
                     for i in range(0, width, piece)]
            for k, (name, (_, dtype)) in enumerate(zip(self.p.returns, self.p.outputs)):
                store(_join(self.b, [part[name] for part in parts]), dtype, k, j, width)
        else:
            values = self.compute(reads, j)
            for k, (name, (_, dtype)) in enumerate(zip(self.p.returns, self.p.outputs)):
                store(values[name], dtype, k, j)
        self.close(j, ir.Constant(I64, width), head, done)  # branches may have moved the block

    def _dtypes(self) -> set:
        """The dtypes of the program's inputs and values."""
        return {d for _, d in self.p.params} | {i.dtype for i in self.p.flat()}


def _bytes(dtype: str) -> int:
    return max(1, dt.BITS[dtype] // 8)


def _join(b: ir.IRBuilder, parts: list):
    """One vector of the vectors `parts`, in order."""
    while len(parts) > 1:
        n = parts[0].type.count
        parts = [b.shuffle_vector(x, y, ir.Constant(ir.VectorType(I32, 2 * n), list(range(2 * n))))
                 for x, y in zip(parts[::2], parts[1::2])]
    return parts[0]


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


# Results this large (bytes, all outputs of a call) are written with non-temporal stores,
# past the caches, as the C library's memcpy does for large copies: a normal store first
# reads the line it writes. At N = 1e7 float32, x*2 + 1 took 3.4-4.0 ms with normal stores
# and 2.9 ms (a copy's time) with these, on 2026-12-02's Intel host. Below this size the
# result is left in cache for whatever reads it next.
STREAM_BYTES = 1 << 24
STREAM_ALIGN = 64   # bytes: a vector store past the cache must be aligned to its size
# Bytes of each output an iteration of such a loop writes: two 64-byte stores, computed in
# pieces of a register each (see _Loop.elements). More pieces are more independent
# chains: tanh and silu (float64 inside) at N = 1e7 took 12.4-14.5 ms with one store per
# iteration, 8.6-8.8 ms with two (2 or 4 pieces), and 11.5-13.2 ms with normal stores.
STREAM_STEP = 128
# Results kept in cache are computed the same way where the body is long (exp at N = 1e6:
# 483 -> 315-330 us, tanh 827 -> 744-755 us), while short bodies keep the loop LLVM
# vectorizes itself (x*2 + 1 and polyrelu at 1e4 took 5.0 -> 6.5 and 5.7 -> 8.5 us
# computed this way). Both only where rows are at least LONG_ROWS steps long: a row's last
# < step elements go one by one.
LONG_BODY = 16   # instructions
LONG_ROWS = 4


def render_program(module: ir.Module, p: Program, flags: tuple) -> ir.Function:
    if isinstance(p, RowReduce):
        from .llvm_rows import render_row_reduce   # it builds on this module's _Loop
        return render_row_reduce(module, p, flags)
    loop = _Loop(module, p, flags)
    b = loop.b
    width = _vector_width(p)
    if width:
        long_rows = b.icmp_signed(">=", loop.cols, ir.Constant(I64, LONG_ROWS * width))
        with b.if_else(long_rows) as (wide, narrow):
            with wide:
                with b.if_else(_streams(loop)) as (streamed, cached):
                    with streamed:
                        _program_loops(loop, width, stream=True)
                    with cached:
                        _program_loops(loop, width if len(p.flat()) > LONG_BODY else 1)
            with narrow:
                _program_loops(loop, 1)
    else:
        _program_loops(loop, 1)
    b.ret_void()
    return loop.fn


def _vector_width(p: Program) -> int:
    """Elements of each output per iteration of the explicitly vectorized loop
    (STREAM_STEP bytes of its narrowest output), or 0 where LLVM's loop is kept: a body
    with branches or C library calls (its time is in those) or with byte-sized outputs."""
    sizes = [dt.BITS[dtype] // 8 for _, dtype in p.outputs]
    if min(sizes) < 4 or any(isinstance(i, Branch) for i in p.body) or \
            any(i.op in LIBM for i in p.flat()):
        return 0
    return STREAM_STEP // min(sizes)


def _streams(loop: "_Loop"):
    """Whether this call's results go past the cache: large enough, and every output's
    rows starting on a STREAM_ALIGN boundary (its first element, and each row's length
    when there are several rows)."""
    b, p = loop.b, loop.p
    n = b.mul(loop.rows, loop.cols)
    size = sum(dt.BITS[dtype] // 8 for _, dtype in p.outputs)
    big = b.icmp_signed(">=", b.mul(n, ir.Constant(I64, size)), ir.Constant(I64, STREAM_BYTES))
    mask = ir.Constant(I64, STREAM_ALIGN - 1)
    ok = big
    for out, (_, dtype) in zip(loop.outs, p.outputs):
        row = b.mul(loop.cols, ir.Constant(I64, dt.BITS[dtype] // 8))
        aligned = b.icmp_signed("==", b.and_(b.ptrtoint(out, I64), mask), loop.zero)
        rows_aligned = b.or_(b.icmp_signed("==", loop.rows, loop.one),
                             b.icmp_signed("==", b.and_(row, mask), loop.zero))
        ok = b.and_(ok, b.and_(aligned, rows_aligned))
    return ok


def _program_loops(loop: "_Loop", width: int, stream: bool = False):
    """The row and chunk loops of an elementwise Program; width > 1: `width` elements at
    a time (see STREAM_STEP), the last < width of each chunk one by one, with stream
    their results stored past the cache (see STREAM_BYTES)."""
    b, p, chunk = loop.b, loop.p, ir.Constant(I64, CHUNK)
    r, row_head, row_done, starts, along = loop.row()
    row_start = b.mul(r, loop.cols)
    c, chunk_head, chunk_done = loop.counted(loop.zero, loop.cols, "chunk")
    left = b.sub(loop.cols, c)
    m = b.select(b.icmp_signed("<", left, chunk), left, chunk)
    first = b.add(row_start, c)
    targets = [b.gep(out, [first], source_etype=MEMORY[dtype])
               for out, (_, dtype) in zip(loop.outs, p.outputs)]
    streamed = loop.module.add_metadata([ir.Constant(I32, 1)])

    def store(value, dtype, k, j, lanes=1):
        if dtype == "bool":
            value = b.zext(value, MEMORY["bool"])
        at = b.gep(targets[k], [j], source_etype=MEMORY[dtype])
        if not stream:
            b.store(value, at, align=dt.BITS[dtype] // 8 if lanes > 1 else None)
        elif lanes == 1:
            b.store(value, at)
        else:
            b.store(value, at, align=STREAM_ALIGN).set_metadata("nontemporal", streamed)
    if width > 1:
        whole = b.and_(m, ir.Constant(I64, -width))   # the chunk's elements in full vectors
        loop.elements(starts, along, c, whole, store, width)
        loop.elements(starts, along, c, m, store, 1, start=whole)
    else:
        loop.elements(starts, along, c, m, store)
    loop.close(c, chunk, chunk_head, chunk_done)
    loop.close(r, loop.one, row_head, row_done)
    if stream:   # the stores past the cache are ordered before anything after the call
        b.fence("seq_cst")


def render(plan: Plan, *, fastmath: bool = False, contract: bool = False,
           triple: str = "") -> ir.Module:
    flags = ("fast",) if fastmath else ("contract",) if contract else ()
    module = ir.Module(name="exprforge_kernel")
    module.triple = triple
    for p in plan.programs:
        if not p.constant:
            render_program(module, p, flags)
    return module
