"""LLVM rendering of a RowReduce (see codegen/llvm.py for the loops' calling convention):
row sums in NumPy's pairwise order, summed as the argument is computed, on vectors of 8,
several short rows in lockstep, long arguments in groups side by side."""
from __future__ import annotations

from llvmlite import ir

from exprforge.engine import dtypes as dt

from .llvm import I32, I64, LONG_BODY, MEMORY, TYPES, _Loop
from .lower import PAIRWISE_STACK, Branch, RowReduce


# Rows a RowReduce sums side by side. Each sum's 8 lanes are one chain of dependent vector
# adds (NumPy's order fixes it): with a short argument, one row at a time waits on the
# add's latency; rows in lockstep (they share one schedule) give the adder independent
# chains, as long as the chains fit the vector registers. With a longer argument the
# work per element hides the latency and more rows only add register pressure.
ROW_LANES = (4, 2)
MAX_CHAINS = 12
MAX_LANE_BODY = 16   # instructions


def row_lanes(p: RowReduce) -> int:
    """How many rows the RowReduce `p` sums side by side."""
    if len(p.flat()) > MAX_LANE_BODY:
        return 1
    chains = max(1, sum(1 for op in p.ops if op and op != "rcount"))
    return next((n for n in ROW_LANES if n * chains <= MAX_CHAINS), 1)


def render_row_reduce(module: ir.Module, p: RowReduce, flags: tuple) -> ir.Function:
    """void NAME(rows, cols, inputs..., ptr schedule, ptr -, i64 -, ptr table, ptr -,
    i64 accumulate, out0, ...): the sum of row i's per-element values, added in the
    schedule's order (see lower.pairwise_schedule), is outk[i] (a mean: divided by cols),
    or with accumulate != 0 is added to outk[table[i]]; an elementwise output (op "") is
    stored at outk[i * cols + j]; a count (op "rcount") is cols, its summand unused.
    Values are summed as they are computed (see _leaf_sums), the partial sums of a row
    waiting on a stack; row_lanes(p) rows run together, then the rows left one by one."""
    loop = _Loop(module, p, flags, extra=2)
    b, n = loop.b, row_lanes(p)
    rest = loop.zero
    if n > 1:
        r, head, done = loop.counted(loop.zero, b.sub(loop.rows, ir.Constant(I64, n - 1)),
                                     "rows")
        _reduce_rows(loop, [b.add(r, ir.Constant(I64, k)) for k in range(n)])
        loop.close(r, ir.Constant(I64, n), head, done)
        rest = r
    r, head, done = loop.counted(rest, loop.rows, "row")
    _reduce_rows(loop, [r])
    loop.close(r, loop.one, head, done)
    b.ret_void()
    return loop.fn


def _reduce_rows(loop: _Loop, rows: list):
    """The RowReduce's work for the rows `rows` (in order), through one run of the
    schedule: their sums interleaved, their results stored (or added) row by row."""
    b, fn, p = loop.b, loop.fn, loop.p
    sums = [(k, dtype) for k, ((_, dtype), op) in enumerate(zip(p.outputs, p.ops))
            if op and op != "rcount"]
    counts = [(k, dtype) for k, ((_, dtype), op) in enumerate(zip(p.outputs, p.ops))
              if op == "rcount"]
    slots = [[loop.alloca(dtype, 1) for _, dtype in p.params] for _ in rows]
    stacks = [{k: loop.alloca(dtype, PAIRWISE_STACK) for k, dtype in sums} for _ in rows]
    row_reads = [loop.row_reads(r, lane) for r, lane in zip(rows, slots)]
    row_starts = [b.mul(r, loop.cols) for r in rows]
    schedule = loop.extra[0][0]
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

    def storer(row_start):
        def store(value, dtype, k, j):   # an elementwise output (or 8): stored in place
            if dtype == "bool":
                value = b.zext(value, ir.VectorType(MEMORY["bool"], value.type.count)
                               if isinstance(value.type, ir.VectorType) else MEMORY["bool"])
            at = b.add(b.add(row_start, off), j)
            b.store(value, b.gep(loop.outs[k], [at], source_etype=MEMORY[dtype]),
                    align=dt.BITS[dtype] // 8 if dtype != "bool" else 1)
        return store
    reads = [loop.sources(starts, along, off, lane)
             for (starts, along), lane in zip(row_reads, slots)]
    totals = _leaf_sums(loop, reads, s, sums, [storer(start) for start in row_starts])
    for lane, row_totals in zip(stacks, totals):
        for (k, dtype), total in zip(sums, row_totals):
            b.store(total, b.gep(lane[k], [sp], source_etype=TYPES[dtype]))
    pushed, moved = b.add(sp, loop.one), b.add(off, s)
    leaf_end = b.block
    b.branch(next_step)

    b.position_at_end(combine)     # s == 0: the top two partial sums added
    popped = b.sub(sp, loop.one)
    below = b.sub(sp, ir.Constant(I64, 2))
    for lane in stacks:
        for k, dtype in sums:
            ty = TYPES[dtype]
            low = b.gep(lane[k], [below], source_etype=ty)
            high = b.gep(lane[k], [popped], source_etype=ty)
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
    for r, lane in zip(rows, stacks):   # in row order: rows adding into one result
        for k, dtype in sums + counts:
            ty, op = TYPES[dtype], p.ops[k]
            total = b.sitofp(loop.cols, ty) if op == "rcount" else \
                b.select(empty, ir.Constant(ty, 0.0), b.load(lane[k], typ=ty))
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


def _fold(loop: _Loop, start, stop, step, firsts: list, update, name: str) -> list:
    """A loop over i = start, start + step, ... < stop carrying values: each starts as
    its entry of `firsts` and becomes update(i, values) (a list) per step; their final
    values."""
    b, fn = loop.b, loop.fn
    before = b.block
    head, body, done = (fn.append_basic_block(f"{name}.{s}") for s in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(start, before)
    carried = []
    for first in firsts:
        phi = b.phi(first.type)
        phi.add_incoming(first, before)
        carried.append(phi)
    b.cbranch(b.icmp_signed("<", i, stop), body, done)
    b.position_at_end(body)
    for phi, value in zip(carried, update(i, carried)):
        phi.add_incoming(value, b.block)       # the body may have branched: its last block
    i.add_incoming(b.add(i, step), b.block)
    b.branch(head)
    b.position_at_end(done)
    return carried


# Groups of 8 a long argument (over LONG_BODY instructions) computes side by side: each
# lane still adds its elements in NumPy's order, but the groups' arithmetic is
# independent, so more of it is in flight (the summing itself is a short chain).
GROUPS = 4


def _leaf_sums(loop: _Loop, reads: list, n, sums: list, stores: list) -> list:
    """NumPy's sum of the program's values over elements j < n (n <= 128) of each row's
    `reads`, for each output in `sums` ((k, dtype) pairs), computed as they are summed
    (nothing is buffered): 8 lanes, lane l adding elements l, l + 8, ... below n rounded
    down to 8, added as ((0+1)+(2+3))+((4+5)+(6+7)), then the rest left to right; below
    8 elements that is 0 plus each in turn, NumPy's order there too. (NumPy starts its
    lanes at the first 8 values, not at 0: the two differ only in a zero's sign, and the
    row's total is 0 + the sum, which makes every zero +0.) Each group of 8 is the
    program on vectors of 8 (with branches: the scalar program 8 times). Other outputs
    go to the row's store(value, dtype, k, j) at each element. Per row, its sums."""
    b, p = loop.b, loop.p

    def values_at(j, width=1):   # every row's summands at j, row after row
        out = []
        for row_reads, store in zip(reads, stores):
            values = loop.compute(row_reads, j, width)
            for k, (name, (_, dtype)) in enumerate(zip(p.returns, p.outputs)):
                if not p.ops[k]:
                    store(values[name], dtype, k, j)
            out += [values[p.returns[k]] for k, _ in sums]
        return out

    def add_group(g, accs):
        if not any(isinstance(item, Branch) for item in p.body):   # 8 at once
            return [b.fadd(acc, group) for acc, group in zip(accs, values_at(g, 8))]
        lanes = [values_at(b.add(g, ir.Constant(I64, lane))) for lane in range(8)]
        out = []
        for k, acc in enumerate(accs):
            group = ir.Constant(acc.type, None)
            for lane in range(8):
                group = b.insert_element(group, lanes[lane][k], ir.Constant(I32, lane))
            out.append(b.fadd(acc, group))
        return out

    def add_groups(g, accs):     # GROUPS groups computed side by side, added in order
        groups = [values_at(b.add(g, ir.Constant(I64, 8 * i)), 8) for i in range(GROUPS)]
        for values in groups:
            accs = [b.fadd(acc, v) for acc, v in zip(accs, values)]
        return accs

    def add_one(j, totals):
        return [b.fadd(t, v) for t, v in zip(totals, values_at(j))]
    end = b.and_(n, ir.Constant(I64, -8))
    zeros = [ir.Constant(ir.VectorType(TYPES[dtype], 8), None) for _ in reads for _, dtype in sums]
    start = loop.zero
    if len(p.flat()) > LONG_BODY and not any(isinstance(item, Branch) for item in p.body):
        start = b.and_(n, ir.Constant(I64, -8 * GROUPS))
        zeros = _fold(loop, loop.zero, start, ir.Constant(I64, 8 * GROUPS), zeros,
                      add_groups, "groups")
    accs = _fold(loop, start, end, ir.Constant(I64, 8), zeros, add_group, "lanes")
    trees = []
    for acc in accs:
        r = [b.extract_element(acc, ir.Constant(I32, k)) for k in range(8)]
        trees.append(b.fadd(b.fadd(b.fadd(r[0], r[1]), b.fadd(r[2], r[3])),
                            b.fadd(b.fadd(r[4], r[5]), b.fadd(r[6], r[7]))))
    totals = _fold(loop, end, n, loop.one, trees, add_one, "rest")
    return [totals[i * len(sums):(i + 1) * len(sums)] for i in range(len(reads))]
