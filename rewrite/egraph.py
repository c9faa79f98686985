"""The egglog bridge, generated from the op table: the language, Expr <-> egglog text and
terms, domain facts, constant folding, and an e-graph session per thread.

One sort holds every value. Leaves are variables (by name; the Expr's own variable node,
with its dtype, comes back), exact rational literals (BigRat) and special literals
(inf, nan, -0, True, False). Each op row becomes one constructor whose cost is the
row's cost under the chosen model; ops with an attribute (casts, reductions) carry it
as a String. Literals come back weak, so dtypes are restored by the context they meet,
exactly as when the user wrote them.

Everything goes through egglog's low-level bindings as program text: the high-level
Python API costs milliseconds per command (declaration hashing, reports), more than the
rewriting itself on small inputs. Compiling the rules takes ~0.2 s, so each thread keeps
one e-graph per language and rule selection, and every call works inside push/pop.
(Details: docs/egglog-notes.md.)
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

from egglog import bindings

from exprforge.engine.expr import Expr, const, make, named
from exprforge.engine.ops import OPS

FACTS = ("positive", "nonneg", "nonzero", "finite")
MODELS = ("ops", "cycles")
RULESETS = ("shrink", "expand")   # rules that make no term larger; all the others
_CUT_DEPTH = 32  # egglog reads deeply nested text slowly: name a node every 32 levels


# --- the language --------------------------------------------------------------------------

COST_SCALE = 100   # egglog counts each primitive (a Var's name, a Rat's value) as 1


def _op_cost(name: str, model: str) -> int:
    """An op's extraction cost: the model's (rewrite/cost.py; named constants are free)
    times COST_SCALE, so egglog's 1 per leaf only breaks ties (unscaled, a literal and
    a variable outweighed a cheaper op: sqrt(exp(x)) stayed over exp(0.5 * x))."""
    o = OPS[name]
    if o.group == "const":
        return 0
    return COST_SCALE * (1 if model == "ops" else max(1, round(o.cost)))


def _has_attr(name: str) -> bool:
    return OPS[name].group in ("convert", "reduce")


def language_text(cost_model: str) -> str:
    """Declarations: the sort, leaves, one constructor per op (its cost fixed by the
    model), the fact relations and the rulesets."""
    if cost_model not in MODELS:
        raise ValueError(f"unknown cost model {cost_model!r}; use 'ops' or 'cycles'")
    lines = ["(sort Math)", "(constructor Var (String) Math :cost 0)",
             "(constructor Rat (BigRat) Math :cost 0)",
             "(constructor Special (String) Math :cost 0)"]
    for name, o in OPS.items():
        if o.group == "leaf":
            continue
        args = " ".join(["Math"] * o.arity + (["String"] if _has_attr(name) else []))
        lines.append(f"(constructor op_{name} ({args}) Math :cost {_op_cost(name, cost_model)})")
    lines += [f"(relation is_{f} (Math))" for f in FACTS]
    lines += [f"(ruleset {r})" for r in RULESETS]
    return "\n".join(lines)


def rat_text(q: Fraction) -> str:
    return f'(Rat (bigrat (from-string "{q.numerator}") (from-string "{q.denominator}")))'


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- Expr <-> egglog ---------------------------------------------------------------------------

class Bridge:
    """Writes Exprs as egglog text and reads extracted terms back, remembering variables
    and attributes."""

    def __init__(self):
        self.attrs: dict[str, object] = {}
        self.variables: dict[str, Expr] = {}

    def attr_text(self, attr) -> str:
        text = repr(attr)
        self.attrs[text] = attr
        return text

    def literal(self, node: Expr) -> str:
        v = node.attr
        if isinstance(v, (bool, str)):
            return f"(Special {quote(str(v))})"
        return rat_text(Fraction(v))

    def node_text(self, node: Expr, args: list[str], pattern_vars=None) -> str:
        if node.op == "var":
            if pattern_vars is not None:
                return pattern_vars[node.name]
            self.variables[node.name] = node
            return f"(Var {quote(node.name)})"
        if node.op == "const":
            return self.literal(node)
        if _has_attr(node.op):
            args = args + [quote(self.attr_text(node.attr))]
        return f"(op_{node.op}{''.join(' ' + a for a in args)})"

    def pattern(self, root: Expr, pattern_vars: dict) -> str:
        """A rule pattern: variables are the given egglog pattern variables."""
        text = {}
        for node in root.toposort():
            text[node] = self.node_text(node, [text[a] for a in node.args], pattern_vars)
        return text[root]

    def terms(self, roots: list[Expr]) -> tuple[list[str], list[str]]:
        """(commands, refs): commands that add the roots, and a reference to each root.
        Roots, shared subterms and every _CUT_DEPTH-th level are named ($n0, $n1, ...),
        so the text stays linear in the DAG and shallow."""
        nodes = _toposort_all(roots)
        uses: dict[Expr, int] = {}
        for n in nodes:
            for a in n.args:
                uses[a] = uses.get(a, 0) + 1
        text, depth, commands = {}, {}, []
        for n in nodes:
            t = self.node_text(n, [text[a] for a in n.args])
            depth[n] = 1 + max((depth[a] for a in n.args), default=0)
            if n.args and (uses.get(n, 0) > 1 or depth[n] >= _CUT_DEPTH or n in roots):
                commands.append(f"(let $n{len(commands)} {t})")
                t, depth[n] = f"$n{len(commands) - 1}", 1
            text[n] = t
        return commands, [text[r] for r in roots]

    def from_term(self, dag, root: int) -> Expr:
        """Walk an extracted term (a TermDag id) back into an Expr; iterative, memoized."""
        memo: dict[int, Expr] = {}
        stack = [root]
        while stack:
            i = stack[-1]
            if i in memo:
                stack.pop()
                continue
            t = dag.get(i)
            kids = self._children(t)
            todo = [k for k in kids if k not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            memo[i] = self._build(dag, t, [memo[k] for k in kids])
        return memo[root]

    @staticmethod
    def _children(t) -> list[int]:
        if t.name in ("Var", "Rat", "Special"):
            return []
        return list(t.args[:-1] if _has_attr(t.name[3:]) else t.args)

    def _build(self, dag, t, args) -> Expr:
        if t.name == "Var":
            return self.variables[_string(dag, t.args[0])]
        if t.name == "Rat":
            num, den = (int(_string(dag, dag.get(a).args[0])) for a in dag.get(t.args[0]).args)
            return rational(Fraction(num, den))
        if t.name == "Special":
            text = _string(dag, t.args[0])
            return const({"True": True, "False": False}.get(text, text))
        name = t.name[3:]
        if OPS[name].group == "const":
            return named(name)
        attr = self.attrs[_string(dag, t.args[-1])] if _has_attr(name) else None
        return make(name, args, attr)


def rational(q: Fraction) -> Expr:
    """The exact rational q as an Expr: a literal, or the quotient of two integer literals
    where q has no finite decimal (a literal must have one)."""
    try:
        return const(q)
    except ValueError:
        return make("div", (const(q.numerator), const(q.denominator)))


def _string(dag, i: int) -> str:
    return dag.get(i).value.value


def _toposort_all(roots: list[Expr]) -> list[Expr]:
    seen, out = set(), []
    for r in roots:
        for n in r.toposort():
            if n not in seen:
                seen.add(n)
                out.append(n)
    return out


# --- facts and folding ------------------------------------------------------------------------

def analysis_text() -> list[str]:
    """Rules deriving domain facts. Every fact excludes NaN (positive and nonneg admit
    +inf, nonzero admits +-inf), so each derivation needs inputs known not to be NaN:
    inf/inf, 0*inf and inf-inf are where NaN would sneak in."""
    zero = "(bigrat (bigint 0) (bigint 1))"

    def derive(pattern, conditions, facts):
        query = " ".join([f"(= e {pattern})", *conditions])
        return f"(rule ({query}) ({' '.join(f'(is_{f} e)' for f in facts)}) :ruleset shrink)"

    def has(fact, var):
        return f"(is_{fact} {var})"
    rules = [
        derive("(Rat p)", [], ["finite"]),
        derive("(Rat p)", [f"(> p {zero})"], ["positive"]),
        derive("(Rat p)", [f"(>= p {zero})"], ["nonneg"]),
        derive("(Rat p)", [f"(< p {zero})"], ["nonzero"]),
        "(rule ((is_positive e)) ((is_nonneg e) (is_nonzero e)) :ruleset shrink)",
        derive("(op_add a b)", [has("positive", "a"), has("positive", "b")], ["positive"]),
        derive("(op_mul a b)", [has("positive", "a"), has("positive", "b")], ["positive"]),
        derive("(op_div a b)", [has("positive", "a"), has("positive", "b"), has("finite", "b")],
               ["positive"]),                                     # inf/inf is NaN
        derive("(op_add a b)", [has("nonneg", "a"), has("nonneg", "b")], ["nonneg"]),
        derive("(op_mul a b)", [has("nonneg", "a"), has("nonneg", "b"), has("finite", "a"),
                                has("finite", "b")], ["nonneg"]),  # 0*inf
        derive("(op_mul a b)", [has("nonzero", "a"), has("nonzero", "b")], ["nonzero"]),
        derive("(op_neg a)", [has("nonzero", "a")], ["nonzero"]),
        derive("(op_div a b)", [has("finite", "a"), has("finite", "b"), has("nonzero", "b")],
               ["finite"]),
        derive("(op_div a b)", [has("nonzero", "a"), has("finite", "b")], ["nonzero"]),
        derive("(op_sqrt a)", [has("nonneg", "a"), has("finite", "a")], ["finite"]),
        derive("(op_log a)", [has("positive", "a"), has("finite", "a")], ["finite"]),
        derive("(op_exp a)", [has("finite", "a")], ["positive", "finite"]),
        derive("(op_sqrt a)", [has("nonneg", "a")], ["nonneg"]),
        derive("(op_sqrt a)", [has("positive", "a")], ["positive"]),
        derive("(op_abs a)", [has("finite", "a")], ["nonneg"]),
        derive("(op_abs a)", [has("nonzero", "a")], ["positive"]),
        derive("(op_mul a a)", [has("finite", "a")], ["nonneg"]),
        derive("(op_cosh a)", [has("finite", "a")], ["positive", "finite"]),
    ]
    for name in ("add", "sub", "mul"):  # the oracle's reals never overflow
        rules.append(derive(f"(op_{name} a b)", [has("finite", "a"), has("finite", "b")],
                            ["finite"]))
    for name in ("neg", "sin", "cos", "tanh", "atan", "sigmoid", "erf", "abs"):
        rules.append(derive(f"(op_{name} a)", [has("finite", "a")], ["finite"]))
    for c in ("pi", "e", "ln2"):
        rules.append(derive(f"(op_{c})", [], ["positive", "finite"]))
    return rules


def folding_text() -> list[tuple[str, str, str]]:
    """(lhs, rhs, conditions) of exact arithmetic on rational literals (real-number
    meaning, so it is sound): egglog text."""
    zero, one = "(bigrat (bigint 0) (bigint 1))", "(bigrat (bigint 1) (bigint 1))"
    return [
        ("(op_add (Rat p) (Rat q))", "(Rat (+ p q))", ""),
        ("(op_sub (Rat p) (Rat q))", "(Rat (- p q))", ""),
        ("(op_mul (Rat p) (Rat q))", "(Rat (* p q))", ""),
        ("(op_neg (Rat p))", "(Rat (neg p))", ""),
        ("(op_div (Rat p) (Rat q))", "(Rat (/ p q))", f"(!= q {zero})"),
        # small integer powers of nonzero rationals
        ("(op_pow (Rat p) (Rat q))", "(Rat (pow p q))",
         "(= (denom q) (bigint 1)) (<= q (bigrat (bigint 64) (bigint 1))) "
         f"(>= q (bigrat (bigint -64) (bigint 1))) (!= p {zero})"),
        ("(op_abs (Rat p))", "(Rat (abs p))", ""),
        # exact square roots only: BigRat sqrt fails (no match) on other values
        ("(op_sqrt (Rat p))", "(Rat s)", "(= s (sqrt p)) (= (* s s) p)"),
        ("(op_sqrt (Rat p))", "(Rat p)", f"(= p {zero})"),
        ("(op_pow (Rat p) (Rat q))", "(Rat p)", f"(= p {zero}) (> q {zero})"),   # 0^q
        ("(op_pow (Rat p) (Rat q))", "(Rat p)", f"(= p {one})"),                 # 1^q
        ("(op_exp (Rat p))", "(op_e)", f"(= p {one})"),
    ]


def coefficient_text() -> list[tuple[str, str, str]]:
    """(lhs, rhs, conditions) of shrinking rules for literal factors: a negation taken
    into one, -(c * a) = (-c) * a; and p*a - q*a = (p - q)*a for finite a (at a = inf it
    is NaN, not (p - q)*inf), the form sums.gather_sums writes a term of both signs in.
    Real identities: tests/rewrite samples them."""
    one = "(bigrat (bigint 1) (bigint 1))"
    return [
        ("(op_neg (op_mul (Rat p) a))", "(op_mul (Rat (neg p)) a)", ""),
        ("(op_sub (op_mul (Rat p) a) (op_mul (Rat q) a))", "(op_mul (Rat (- p q)) a)",
         "(is_finite a)"),
        ("(op_sub (op_mul (Rat p) a) a)", f"(op_mul (Rat (- p {one})) a)", "(is_finite a)"),
        ("(op_sub a (op_mul (Rat q) a))", f"(op_mul (Rat (- {one} q)) a)", "(is_finite a)"),
    ]


POW_INT_MAX = 16   # x ** n is expanded into multiplications for integer 3 <= n <= this


def power_text() -> tuple[str, str, str]:
    """x ** n -> x ** (n - 1) * x for integer literals 3 <= n <= POW_INT_MAX (then
    pow-two): one pow costs as much as dozens of multiplications. A real identity for
    every extended real x (tests/rewrite samples it like the table's rules)."""
    def n(k):
        return f"(bigrat (bigint {k}) (bigint 1))"
    return ("(op_pow x (Rat q))", f"(op_mul (op_pow x (Rat (- q {n(1)}))) x)",
            f"(= (denom q) (bigint 1)) (>= q {n(3)}) (<= q {n(POW_INT_MAX)})")


def literal_pruning_text(ops: list[str]) -> list[str]:
    """Once a class is known to equal a rational literal, its other nodes (of these ops)
    are hidden from matching and extraction (egglog's subsume): the literal is the
    cheapest form, and rules rewriting 1 * 1, 0 + 0 ** 2, ... would otherwise keep
    growing the classes of the literals without end."""
    out = []
    for name in ops:
        args = " ".join(f"a{i}" for i in range(OPS[name].arity))
        args += " s" if _has_attr(name) else ""
        out.append(f"(rule ((= e (Rat p)) (= e (op_{name} {args}))) "
                   f"((subsume (op_{name} {args}))) :ruleset shrink)")
    return out


# --- sessions ---------------------------------------------------------------------------------

@dataclass
class Program:
    """The egglog text of one language and rule selection, and the label of each rule
    name (several egglog rules can come from one table rule)."""
    text: str
    labels: dict


class Session:
    """One egglog e-graph with the program loaded. Work happens in scope(); what a call
    adds is dropped at its end, so calls never see each other's terms or facts."""

    def __init__(self, program: Program):
        self.graph = bindings.EGraph()
        self.labels = program.labels
        self.graph.run_program(*self.graph.parse_program(program.text))
        self._parsed: dict[str, list] = {}

    def do(self, text: str) -> list:
        """Run commands; fixed command texts are parsed once."""
        commands = self._parsed.get(text)
        if commands is None:
            commands = self.graph.parse_program(text)
            if len(self._parsed) < 256:
                self._parsed[text] = commands
        return self.graph.run_program(*commands)

    def add(self, commands: list[str]) -> None:
        # one call each: egglog takes time quadratic in the commands of one call
        for text in commands:
            self.graph.run_program(*self.graph.parse_program(text))

    @contextmanager
    def scope(self):
        self.do("(push)")
        yield self
        self.do("(pop)")

    def size(self) -> int:
        (out,) = self.do("(print-size)")
        return sum(n for name, n in out.sizes if name.startswith("op_") or name in
                   ("Var", "Rat", "Special"))

    def run(self, schedule: str) -> tuple[bool, dict]:
        """Run a schedule; (changed, matches per table rule name)."""
        (out,) = self.do(f"(run-schedule {schedule})")
        matches: dict[str, int] = {}
        for key, count in out.report.num_matches_per_rule.items():
            label = self.labels.get(key)
            if count and label:
                matches[label] = matches.get(label, 0) + count
        return out.report.updated, matches

    def extract(self, ref: str) -> tuple[int, object, int]:
        """(cost, termdag, term id) of the cheapest term (tree cost) for ref."""
        (out,) = self.do(f"(extract {ref})")
        return out.cost, out.termdag, out.term

    def equal(self, a: str, b: str) -> bool:
        try:
            self.graph.run_program(*self.graph.parse_program(f"(check (= {a} {b}))"))
            return True
        except bindings.EggSmolError:
            return False


_local = threading.local()  # egglog e-graphs may only be used by the thread that made them


def session(key, build) -> Session:
    """The thread's session for key, made from build() -> Program on first use."""
    sessions = _local.__dict__.setdefault("sessions", {})
    if key not in sessions:
        sessions[key] = Session(build())
    return sessions[key]


def drop_session(key) -> None:
    """Forget a session (after an egglog panic it may be unusable)."""
    _local.__dict__.get("sessions", {}).pop(key, None)

