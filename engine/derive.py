"""Symbolic derivatives from the op table's rules (forward mode over the DAG).

derive(e, "x") is de/dx for elementwise expressions. Through a reduction it is the
derivative along an all-ones change of x (a directional derivative, as forward mode
gives); per-element gradients of reductions are the business of a VJP.
Integer- and bool-valued nodes are piecewise constant: their derivative is zero
(so a range reduction's k = floor(x / ln2) contributes nothing, as it should). A float
made by bitcast from integers that depend on the variable has no such excuse (a
mantissa rebuilt from bits varies with x), so differentiating through it is an error.
Piecewise ops use the usual subgradients: abs'(0) = 0, relu'(0) = 0, min/max pick
the first argument on ties.

The result gets a light clean-up: x*1, 1*x, x+0, 0+x, x-0, x/1, --x are dropped, and
arithmetic on literals is folded only where it is exact in the dtype.
"""
from __future__ import annotations

from fractions import Fraction

from . import dtypes as dt
from .expr import Expr, F, as_expr, const, make, rebuild, var


def derive(expr: Expr, wrt) -> Expr:
    """d expr / d wrt, where wrt is a variable name or node."""
    target = _find_var(expr, wrt)
    d: dict[Expr, Expr | None] = {}  # None means zero
    depends: dict[Expr, bool] = {}
    for node in expr.toposort():
        depends[node] = node is target or any(depends[a] for a in node.args)
        if node.op == "bitcast" and dt.is_float(node.dtype) and depends[node]:
            raise ValueError(f"cannot differentiate through bitcast to {node.dtype}: the bits "
                             f"depend on {target.name}")
        d[node] = _node_derivative(node, target, d)
    result = d[expr]
    if result is None:
        return const(0, expr.dtype) if not expr.is_weak else const(0.0)
    return cleanup(result)


def _find_var(expr: Expr, wrt):
    if isinstance(wrt, Expr):
        if wrt.op != "var":
            raise TypeError("derive with respect to a variable")
        return wrt
    for v in expr.variables():
        if v.name == wrt:
            return v
    return None  # not in the expression: the derivative is zero


def _node_derivative(node: Expr, target, d):
    if node.op == "var":
        return const(1, node.dtype) if node is target else None
    if not node.args or not dt.is_float(node.dtype):
        return None
    tangents = [d[a] for a in node.args]
    if all(t is None for t in tangents):
        return None
    o = node.spec
    if o.jvp is not None:
        if o.group == "reduce" and not tangents[0].variables():
            # a constant tangent has no shape: spread it over the reduced argument first
            tangents[0] = F.where(True, tangents[0], node.args[0])
        return o.jvp(node.args, node, [0 if t is None else t for t in tangents], F)
    if o.deriv is None:
        raise ValueError(f"{o.spelling} has no derivative (it depends on {target.name})")
    partials = o.deriv(node.args, node, F)
    total = None
    for partial, t in zip(partials, tangents):
        if t is None or partial is None or (not isinstance(partial, Expr) and partial == 0):
            continue
        term = t if (not isinstance(partial, Expr) and partial == 1) else \
            make("neg", (t,)) if (not isinstance(partial, Expr) and partial == -1) else \
            as_expr(partial) * t
        total = term if total is None else total + term
    return total


# --- clean-up --------------------------------------------------------------------------

def _literal(e: Expr):
    """Exact value of a finite numeric literal, else None."""
    if e.op == "const" and not isinstance(e.attr, (str, bool)):
        return Fraction(e.attr)
    return None


def _representable(q: Fraction, dtype: str) -> bool:
    if dt.is_float(dtype):
        return Fraction(dt.round_fraction(q, dtype)) == q
    if dt.is_int(dtype):
        bits = dt.BITS[dtype]
        return q.denominator == 1 and -(1 << (bits - 1)) <= q < (1 << (bits - 1))
    return q.denominator == 1  # weak: any exact value


def _fold(node: Expr, args):
    """One clean-up step: identities and exact literal arithmetic, else None."""
    op = node.op
    vals = [_literal(a) for a in args]
    if op in ("add", "sub", "mul") and all(v is not None for v in vals):
        a, b = vals
        q = a + b if op == "add" else a - b if op == "sub" else a * b
        if _representable(q, node.dtype):
            value = int(q) if node.dtype in ("~i",) + dt.INTS else q
            return const(value, None if node.is_weak else node.dtype)
    if op == "mul":
        if vals[0] == 1:
            return args[1]
        if vals[1] == 1:
            return args[0]
    if op == "add":
        if vals[0] == 0:
            return args[1]
        if vals[1] == 0:
            return args[0]
    if op == "sub" and vals[1] == 0:
        return args[0]
    if op == "div" and vals[1] == 1:
        return args[0]
    if op == "pow" and vals[1] == 1:
        return args[0]
    if op == "neg" and args[0].op == "neg":
        return args[0].args[0]
    if op == "mul" and -1 in vals:  # exact in IEEE: x * -1 == -x
        return make("neg", (args[1] if vals[0] == -1 else args[0],))
    if op == "add" and args[1].op == "neg":  # a + -b == a - b, exactly
        return make("sub", (args[0], args[1].args[0]))
    return None


def cleanup(expr: Expr) -> Expr:
    def visit(node, args):
        rebuilt = node if all(x is y for x, y in zip(args, node.args)) else \
            make(node.op, args, node.attr)
        folded = _fold(rebuilt, rebuilt.args) if rebuilt.args else None
        if folded is not None and folded.dtype != rebuilt.dtype and not rebuilt.is_weak:
            folded = make("cast", (folded,), rebuilt.dtype)
        return folded if folded is not None else rebuilt
    return rebuild(expr, visit)


def grad(expr: Expr, wrt) -> Expr:
    return derive(expr, wrt)


# --- reverse mode through reductions ------------------------------------------------------
# A reduction's cotangent is the sum over its axes of what its users send it (keepdims);
# the op table's vjp column passes that sum on to the reduction's argument.
# Each user's term is summed on its own: the terms have the shapes of the pieces they
# come from, and a sum of their total would count a term that is shorter on a summed
# axis once per element of the longer ones (sum(x * mean(x, -1), -1) + mean(x, -1) sends
# mean(x, -1) a cotangent of length 1 from the top and of x's length from the sum).

def vjp(expr: Expr, cotangent: Expr, wrt, flat: dict | None = None) -> dict:
    """{name: gradient of sum(cotangent * expr) with respect to variable `name`} for the
    names in `wrt` (None where it is zero), through reductions too.

    The DAG is cut at its reductions. Each piece between cuts is elementwise and is
    differentiated in forward mode by `derive`, with the reductions inside it held as
    placeholder variables; so a program without reductions gets cotangent * derive(expr, x),
    and one with them gets, for y = f(x, r(x)), cotangent * df/dx + rule_r(sum over r's
    axes of cotangent * df/dr) * du/dx, repeated down the nested reductions.
    `cotangent` must have expr's shape. `flat` maps variable names (the cotangent's too)
    to the axes (negative) on which they have length 1; each variable's gradient is
    summed over its own where it is longer (keepdims), term by term. Without it a
    gradient's shape may be a broadcast of its variable's, for the caller to sum: right
    only where its terms have the same lengths on the summed axes.
    Without `flat`, too, a program whose pieces stretch the same axis to different
    lengths (w * x * sum(x * v, -1), w and v of lengths 5 and 3, x of length 1) has a
    gradient program that fails to broadcast when run; with it each term is summed
    first. A literal term is never summed (a cotangent is not a literal).
    """
    flat = flat or {}
    flat_of = flat_axes(flat)
    shared = {tuple(sorted(n.attr)) for n in expr.toposort() if n.spec.group == "reduce"}
    reductions = [n for n in expr.toposort() if n.spec.group == "reduce"
                  and dt.is_float(n.dtype) and n.variables()]
    taken = {v.name for v in expr.variables()} | {v.name for v in cotangent.variables()}
    names = (f"r{i}_" for i in range(1 << 30))
    hold = {r: var(next(n for n in names if n not in taken), r.dtype) for r in reductions}
    back = {p: r for r, p in hold.items()}
    grads = {name: None for name in wrt}
    sent = {r: None for r in reductions}  # cotangents the reductions' users send them

    def add(total, term, axes):
        """total + term summed over those of `axes` on which it may be longer than 1."""
        found = flat_of(term)
        over = () if found is ALL_AXES else tuple(sorted(set(axes) - found))
        term = summed(term, over, shared) if over else term
        return term if total is None else total + term

    def send(root: Expr, c: Expr):
        piece = rebuild(root, lambda node, args: hold.get(node))
        inside = {v.name for v in piece.variables()}
        for name in grads:
            if name in inside:
                d = _nonzero(derive(piece, name))
                if d is not None:
                    grads[name] = add(grads[name], c * d.subs(back), flat.get(name, ()))
        for r, p in hold.items():
            if p.name in inside:
                d = _nonzero(derive(piece, p))
                if d is not None:   # summed over r's axes, and where r is broadcast
                    sent[r] = add(sent[r], c * d.subs(back), flat_of(r))

    send(expr, cotangent)
    for r in reversed(reductions):  # every user of r comes later in topological order
        if sent[r] is None:
            continue
        if r.spec.vjp is None:
            raise NotImplementedError(f"no vector-Jacobian product for {r.op}")
        send(r.args[0], r.spec.vjp(sent[r], r.args[0], r, F))
    return {n: None if g is None else cleanup(g) for n, g in grads.items()}


def summed(grad: Expr, axes: tuple, shared=()) -> Expr:
    """grad summed over `axes` (keepdims). Where the program reduces over fewer of them
    (`shared`: its reductions' axes), the sum is over those first (a CPU target runs it
    in the loop of those reductions: a (C, 1, 1) parameter's gradient of a program with
    row means is a sum of per-row sums), then over the rest."""
    axes = tuple(sorted(axes))
    inner = max((r for r in shared if set(r) < set(axes)), key=len, default=None)
    if axes in shared or inner is None:
        return grad.sum(axis=axes)
    rest = tuple(sorted(set(axes) - set(inner)))
    return grad.sum(axis=inner).sum(axis=rest)


def _nonzero(d: Expr):
    return None if d.op == "const" and d.attr == 0 else d


# --- taking factors out of sums ---------------------------------------------------------
# A backward program sums products such as grad * a * x * r over a row, where a (a
# broadcast parameter) and r (a row's value) do not change along the row: summing
# grad * x once and multiplying by a * r is the same sum over the reals, with fewer
# products per element, and the same sum of grad * x then serves every term that needs
# it (PolyNorm's three means' cotangents and its three coefficients' gradients).

ALL_AXES = None   # flat_axes of a value constant along every axis (a literal)


def flat_axes(flat: dict):
    """A function giving, for an Expr, the axes on which it has length 1 (ALL_AXES for a
    literal), given those of its variables (`flat`: name -> axes): elementwise values are
    flat where all their inputs are, reductions on their axes too (kept dims)."""
    memo: dict = {}

    def of(e):
        if e in memo:
            return memo[e]
        if e.op == "const" or e.spec.group == "const":
            out = ALL_AXES
        elif e.op == "var":
            out = frozenset(flat.get(e.name, ()))
        else:
            out = ALL_AXES
            for a in e.args:
                out = _meet(out, of(a))
            if e.spec.group == "reduce":
                out = frozenset(e.attr) | (out or frozenset())
        memo[e] = out
        return out
    return of


def hoist_constant_factors(expr: Expr, flat: dict, ranks: dict) -> Expr:
    """expr with every float sum and mean over axes A of a product rewritten as
    (the factors constant along A) * (the sum or mean of the others). `flat` maps a
    variable's name to the axes (negative) on which it has length 1 (is broadcast, or
    absent: beyond its rank); see flat_axes for the other nodes. `ranks` maps it to its
    number of dimensions: the factors left in the sum keep one that has all of A (in
    sum(a * y, (-2, -1)) with a of shape (4,) and y (1, 1), y stays in). Exact over the
    reals; the rounding differs (a factor 1/c from x / c overflows for a subnormal c;
    a * sum(...) is NaN where a is 0 and the sum overflows, where the sum of a * ... was
    0)."""
    flat_of = flat_axes(flat)

    def rank_of(e):
        return max((ranks.get(v.name, 0) for v in e.variables()), default=0)

    def visit(node, args):
        if node.op not in ("rsum", "rmean") or not dt.is_float(node.dtype):
            return None
        axes = frozenset(node.attr)
        sign, factors = _factors(args[0], lambda f: _covers(flat_of(f), axes))
        out, rest = [], []
        for f in factors:
            if not (f.op == "const" and f.attr == 1):   # a factor 1 is dropped
                (out if _covers(flat_of(f), axes) else rest).append(f)
        if out and max(map(rank_of, rest), default=0) < max(-a for a in axes):
            carrier = max(out, key=rank_of)   # the product had the rank: one factor has
            out.remove(carrier)
            rest.append(carrier)
        if not rest or len(rest) == len(factors):   # all constant, or nothing to take out
            return None
        result = make(node.op, (_product(rest),), node.attr)
        result = _product(out + [result]) if out else result
        return make("neg", (result,)) if sign else result
    return rebuild(expr, visit)


def _meet(a, b):
    return b if a is ALL_AXES else a if b is ALL_AXES else a & b


def _covers(axes, wanted) -> bool:
    return axes is ALL_AXES or wanted <= axes


def _factors(e: Expr, constant) -> tuple[bool, list]:
    """(negated, factors) of a product tree: through mul, neg, and a division by a
    constant value (as a factor 1/c); a subtree with no constant factor stays whole
    (x * x * x stays the value the forward computes)."""
    if not _has_constant_factor(e, constant):
        return False, [e]
    if e.op == "mul":
        s1, f1 = _factors(e.args[0], constant)
        s2, f2 = _factors(e.args[1], constant)
        return s1 != s2, f1 + f2
    if e.op == "neg":
        s, f = _factors(e.args[0], constant)
        return not s, f
    if e.op == "div" and constant(e.args[1]) and not constant(e.args[0]):
        s, f = _factors(e.args[0], constant)
        return s, f + [1 / e.args[1]]
    return False, [e]


def _has_constant_factor(e: Expr, constant) -> bool:
    if constant(e):
        return True
    if e.op == "mul":
        return any(_has_constant_factor(a, constant) for a in e.args)
    if e.op == "neg":
        return _has_constant_factor(e.args[0], constant)
    return e.op == "div" and constant(e.args[1])


def _product(factors: list) -> Expr:
    out = factors[0]
    for f in factors[1:]:
        out = out * f
    return out
