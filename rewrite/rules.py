"""Rewrite rules as data: a name, a group, two patterns in exprforge's text syntax and the
conditions under which they are equal. Nothing here knows about egglog; the e-graph
bridge reads these rows (and the soundness tests sample them).

Patterns. A pattern is expression text. Its variables are pattern variables: a, b, c,
x, y, z (and any other plain name) stand for float64 subexpressions; p and q stand for
boolean subexpressions (BOOL_VARIABLES), so `where(p, a, a)` and `not (not p)` can be
written. Everything else is ops and literals of the text syntax. pattern() parses both
sides; literals in a pattern are made float64 (or stay bool), like the variables.

Facts. An assumption is FACT(var) with FACT one of FACTS, about the real value of the
subexpression a float pattern variable stands for. Every fact excludes NaN:
    positive(x)  0 < x,  +inf allowed
    nonneg(x)    0 <= x, +inf allowed
    nonzero(x)   x < 0 or x > 0, +-inf allowed
    finite(x)    x is a real number: not +-inf, not NaN
They combine: ("positive(x)", "finite(x)") is 0 < x < inf.

Soundness policy. A rule is sound when the real-number meaning of its two sides (the
mpmath oracle, engine.evaluate.oracle: the extended reals with +-inf, and NaN where a
value is undefined) agrees at EVERY point that satisfies its assumptions: equal values,
or both NaN; comparisons and logic must agree as booleans, NaN included (every
comparison with NaN is False, != is True). A both_ways rule is used in both directions,
so its assumptions must make both directions sound; agreement is symmetric, so that
holds when both sides have the same variables (validate() checks this). A rule that is true only "almost
everywhere" (x/x -> 1 without nonzero(x) and finite(x)) is not sound. Consequences of
the oracle's semantics that decide conditions below: it has no signed zero (so 1/0 =
+inf, and -2 * 0 = 0, which breaks 1/(b*c) = (1/b)/c at b = 0 unless b, c are nonzero);
x ** 0 is NaN at x = +-inf and 1 ** inf is NaN; log(0) = -inf and exp(-inf) = 0;
min/max are C's fmin/fmax, which ignore a NaN argument.

tests/rewrite/test_rules.py checks every rule of RULES against this policy by sampling
its variables in its domain (special values included) and comparing the two sides with
the oracle at 200 bits (4000 where cancellation needs more). Rules are identities, not
constant folding, which the e-graph does itself; the only ground rules are exp(0),
log(1), sin(0) and cos(0). The table is validated at import (validate()).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from exprforge.engine.expr import Expr, concretize
from exprforge.engine.parse import ParseError, parse

GROUPS = ("arithmetic", "fractions", "powers", "explog", "trig", "hyperbolic", "compare")
FACTS = ("positive", "nonneg", "nonzero", "finite")
BOOL_VARIABLES = ("p", "q")

_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*\Z")
_ASSUMPTION = re.compile(r"([a-z]+)\(([A-Za-z][A-Za-z0-9_]*)\)\Z")


@dataclass(frozen=True)
class Rule:
    name: str            # unique, kebab-case
    group: str           # one of GROUPS
    lhs: str             # pattern text
    rhs: str
    assume: tuple = ()   # FACT(var) conditions on lhs variables
    both_ways: bool = False   # usable in both directions (an egglog birewrite)


def _r(name, group, lhs, rhs, *assume, both_ways=False) -> Rule:
    return Rule(name, group, lhs, rhs, tuple(assume), both_ways)


def _arithmetic(g="arithmetic"):
    return [
        _r("add-commute", g, "a + b", "b + a", both_ways=True),
        _r("mul-commute", g, "a * b", "b * a", both_ways=True),
        _r("add-assoc", g, "a + (b + c)", "(a + b) + c"),
        _r("mul-assoc", g, "a * (b * c)", "(a * b) * c"),
        _r("add-zero", g, "x + 0", "x"),
        _r("mul-one", g, "x * 1", "x"),
        _r("sub-zero", g, "x - 0", "x"),
        _r("zero-sub", g, "0 - x", "-x"),
        _r("mul-neg-one", g, "x * -1", "-x"),
        _r("neg-neg", g, "-(-x)", "x"),
        _r("sub-to-add-neg", g, "a - b", "a + -b", both_ways=True),
        # inf * (2 + -1) = inf but inf * 2 + inf * -1 = NaN
        _r("distribute", g, "a * (b + c)", "a * b + a * c", "finite(a)", both_ways=True),
        _r("add-self", g, "x + x", "2 * x", both_ways=True),
        _r("neg-add", g, "-(a + b)", "-a - b", both_ways=True),
        _r("neg-mul", g, "(-a) * b", "-(a * b)", both_ways=True),
        _r("neg-mul-neg", g, "(-a) * (-b)", "a * b"),
        _r("fma-expand", g, "fma(a, b, c)", "a * b + c", both_ways=True),
        _r("mul-zero", g, "x * 0", "0", "finite(x)"),          # inf * 0 = NaN
        _r("sub-self", g, "x - x", "0", "finite(x)"),          # inf - inf = NaN
        _r("min-self", g, "min(x, x)", "x"),
        _r("max-self", g, "max(x, x)", "x"),
        _r("min-commute", g, "min(a, b)", "min(b, a)", both_ways=True),
        _r("max-commute", g, "max(a, b)", "max(b, a)", both_ways=True),
        _r("abs-neg", g, "abs(-x)", "abs(x)"),
        _r("abs-abs", g, "abs(abs(x))", "abs(x)"),
        _r("abs-mul", g, "abs(a * b)", "abs(a) * abs(b)", both_ways=True),
        _r("abs-div", g, "abs(a / b)", "abs(a) / abs(b)", both_ways=True),
        _r("abs-sqr", g, "abs(x * x)", "x * x"),
        _r("abs-exp", g, "abs(exp(x))", "exp(x)"),
        _r("abs-sqrt", g, "abs(sqrt(x))", "sqrt(x)"),
        _r("abs-pow-abs", g, "abs(abs(x) ** y)", "abs(x) ** y"),   # a power of |x| is >= 0
        # relu(NaN) = NaN but max(NaN, 0) = 0 (fmax ignores NaN)
        _r("relu-max", g, "relu(x)", "max(x, 0)", "finite(x)", both_ways=True),
    ]


def _fractions(g="fractions"):
    return [
        _r("div-to-mul-recip", g, "a / b", "a * (1 / b)", both_ways=True),
        # no signed zero: (1/0)/-2 = -inf but 1/(0 * -2) = 1/0 = +inf
        _r("div-div", g, "(a / b) / c", "a / (b * c)", "nonzero(b)", "nonzero(c)",
           both_ways=True),
        _r("div-by-div", g, "a / (b / c)", "(a * c) / b", "nonzero(b)", "finite(c)"),
        _r("div-self", g, "x / x", "1", "nonzero(x)", "finite(x)"),
        _r("mul-div-cancel", g, "(a * b) / b", "a", "nonzero(b)", "finite(b)"),
        # at b = 0: 1/0 + 0/0 = NaN but (1 + 0)/0 = inf
        _r("div-add", g, "a / b + c / b", "(a + c) / b", "nonzero(b)", both_ways=True),
        _r("recip-recip", g, "1 / (1 / x)", "x", "finite(x)"),   # 1/(1/-inf) = +inf
        _r("neg-div", g, "(-a) / b", "-(a / b)", both_ways=True),
        _r("zero-div", g, "0 / x", "0", "nonzero(x)"),
        _r("mul-div-assoc", g, "a * (b / c)", "(a * b) / c", both_ways=True),
        _r("frac-add", g, "a / b + c / d", "(a * d + b * c) / (b * d)",
           "nonzero(b)", "finite(b)", "nonzero(d)", "finite(d)", both_ways=True),
    ]


def _powers(g="powers"):
    return [
        _r("pow-one", g, "x ** 1", "x"),
        _r("pow-zero", g, "x ** 0", "1", "finite(x)"),         # oracle: inf ** 0 = NaN
        _r("pow-two", g, "x ** 2", "x * x", both_ways=True),
        _r("pow-neg-one", g, "x ** -1", "1 / x", both_ways=True),
        _r("sqrt-pow-half", g, "sqrt(x)", "x ** 0.5", both_ways=True),
        _r("sqrt-mul-self", g, "sqrt(x) * sqrt(x)", "x", "nonneg(x)"),
        _r("sqrt-sqr", g, "sqrt(x) ** 2", "x", "nonneg(x)"),
        _r("sqrt-of-sqr", g, "sqrt(x * x)", "abs(x)"),
        _r("sqrt-mul", g, "sqrt(x) * sqrt(y)", "sqrt(x * y)", "nonneg(x)", "nonneg(y)",
           both_ways=True),
        # finite(x): inf ** 1 * inf ** -2 = inf * 0 = NaN but inf ** -1 = 0. Infinite
        # exponents need no condition: 2 ** inf * 2 ** -inf = NaN = 2 ** NaN, and the
        # oracle's 1 ** inf is NaN
        _r("pow-add", g, "x ** a * x ** b", "x ** (a + b)", "positive(x)", "finite(x)",
           both_ways=True),
        # (0.5 ** inf) ** 0 = 0 ** 0 = 1 but 0.5 ** NaN = NaN
        _r("pow-pow", g, "(x ** a) ** b", "x ** (a * b)", "positive(x)", "finite(x)",
           "finite(a)"),
        # no signed zero: 1 / (-inf) ** -1 = 1/0 = +inf, but (-inf) ** 1 = -inf
        _r("recip-pow", g, "1 / x ** a", "x ** -a", "nonneg(x)", both_ways=True),
        _r("recip-pow-finite", g, "1 / x ** a", "x ** -a", "finite(x)", both_ways=True),
        _r("cbrt-cube", g, "cbrt(x) ** 3", "x"),
        _r("cbrt-of-cube", g, "cbrt(x * x * x)", "x"),
    ]


def _explog(g="explog"):
    return [
        _r("exp-zero", g, "exp(0)", "1"),
        _r("log-one", g, "log(1)", "0"),
        _r("exp-log", g, "exp(log(x))", "x", "nonneg(x)"),     # exp(log(0)) = exp(-inf) = 0
        _r("log-exp", g, "log(exp(x))", "x"),
        _r("exp-sum", g, "exp(a + b)", "exp(a) * exp(b)", both_ways=True),
        _r("exp-neg", g, "exp(-a)", "1 / exp(a)", both_ways=True),
        # log(-1 * 0) = -inf but log(-1) + log(0) = NaN
        _r("log-mul", g, "log(a * b)", "log(a) + log(b)", "nonneg(a)", "nonneg(b)",
           both_ways=True),
        # a > 0 alone suffices: b < 0 gives NaN on both sides, b = 0 gives -inf
        _r("log-mul-positive", g, "log(a * b)", "log(a) + log(b)", "positive(a)",
           both_ways=True),
        _r("log-div", g, "log(a / b)", "log(a) - log(b)", "nonneg(a)", "nonneg(b)",
           both_ways=True),
        # at x = inf, a = 0 both sides are NaN (inf ** 0 and 0 * inf); at x = 1, a = inf too
        _r("log-pow", g, "log(x ** a)", "a * log(x)", "positive(x)"),
        # the power 1/2 needs no condition: x < 0 is NaN on both sides, log(0) = -inf
        _r("log-sqrt", g, "log(sqrt(x))", "0.5 * log(x)"),
        _r("sqrt-exp", g, "sqrt(exp(x))", "exp(0.5 * x)"),
        _r("pow-exp-log", g, "x ** a", "exp(a * log(x))", "positive(x)"),
        # b = 0 needs a finite: exp(-inf) ** 0 = 0 ** 0 = 1 but exp(-inf * 0) = NaN
        _r("exp-pow", g, "exp(a) ** b", "exp(a * b)", "nonzero(b)"),
        _r("exp-pow-finite", g, "exp(a) ** b", "exp(a * b)", "finite(a)"),
        _r("expm1-def", g, "exp(a) - 1", "expm1(a)", both_ways=True),
        _r("log1p-def", g, "log(1 + a)", "log1p(a)", both_ways=True),
        _r("exp2-def", g, "exp2(a)", "exp(a * ln2)", both_ways=True),
        _r("log2-def", g, "log2(x)", "log(x) / ln2", both_ways=True),
        _r("log10-def", g, "log10(x)", "log(x) / log(10)", both_ways=True),
        _r("sigmoid-def", g, "sigmoid(x)", "1 / (1 + exp(-x))", both_ways=True),
    ]


def _trig(g="trig"):
    return [
        _r("sin-cos-pythagoras", g, "sin(x) ** 2 + cos(x) ** 2", "1", "finite(x)"),
        _r("sin-neg", g, "sin(-x)", "-sin(x)", both_ways=True),
        _r("cos-neg", g, "cos(-x)", "cos(x)"),
        # no real x (and no mpf) makes cos(x) exactly 0; at +-inf both sides are NaN
        _r("tan-quot", g, "tan(x)", "sin(x) / cos(x)", both_ways=True),
        _r("sin-zero", g, "sin(0)", "0"),
        _r("cos-zero", g, "cos(0)", "1"),
        _r("sin-double", g, "sin(2 * x)", "2 * sin(x) * cos(x)", both_ways=True),
        _r("cos-double", g, "cos(2 * x)", "cos(x) ** 2 - sin(x) ** 2", both_ways=True),
        _r("sin-sum", g, "sin(a + b)", "sin(a) * cos(b) + cos(a) * sin(b)", both_ways=True),
        _r("atan-neg", g, "atan(-x)", "-atan(x)", both_ways=True),
        # |x| > 1: both NaN; else cos is >= 0 on asin's range [-pi/2, pi/2]
        _r("cos-asin", g, "cos(asin(x))", "sqrt(1 - x * x)"),
        # atan(inf) is pi/2 rounded to the working precision: tan of it is large, not inf
        _r("tan-atan", g, "tan(atan(x))", "x", "finite(x)"),
        _r("sin-complement", g, "sin(pi / 2 - x)", "cos(x)"),   # pi is exact in the oracle
    ]


def _hyperbolic(g="hyperbolic"):
    return [
        _r("sinh-def", g, "sinh(x)", "(exp(x) - exp(-x)) / 2", both_ways=True),
        _r("cosh-def", g, "cosh(x)", "(exp(x) + exp(-x)) / 2", both_ways=True),
        # one step for what the two definitions reach only through the expanding phase
        _r("sinh-from-exp", g, "exp(x) - exp(-x)", "2 * sinh(x)"),
        _r("cosh-from-exp", g, "exp(x) + exp(-x)", "2 * cosh(x)"),
        _r("tanh-quot", g, "tanh(x)", "sinh(x) / cosh(x)", "finite(x)"),  # tanh(inf) = 1
        _r("cosh-sinh-pythagoras", g, "cosh(x) ** 2 - sinh(x) ** 2", "1", "finite(x)"),
        _r("sinh-neg", g, "sinh(-x)", "-sinh(x)", both_ways=True),
        _r("cosh-neg", g, "cosh(-x)", "cosh(x)"),
        _r("tanh-neg", g, "tanh(-x)", "-tanh(x)", both_ways=True),
        _r("sinh-double", g, "sinh(2 * x)", "2 * sinh(x) * cosh(x)", both_ways=True),
    ]


def _compare(g="compare"):
    return [
        _r("lt-flip", g, "a < b", "b > a", both_ways=True),
        _r("not-eq", g, "not (a == b)", "a != b", both_ways=True),
        # with NaN: not (NaN < 1) is True but NaN >= 1 is False
        _r("not-lt", g, "not (a < b)", "a >= b", "finite(a)", "finite(b)", both_ways=True),
        _r("lt-self", g, "x < x", "False"),                    # NaN < NaN is False too
        _r("eq-self", g, "x == x", "True", "finite(x)"),
        _r("lt-sub-zero", g, "a < b", "a - b < 0", both_ways=True),
        _r("lt-add-cancel", g, "a + c < b + c", "a < b", "finite(c)"),
        # fmin(a, NaN) = a but where(a < NaN, a, NaN) = NaN
        _r("where-lt-min", g, "where(a < b, a, b)", "min(a, b)", "finite(b)"),
        _r("where-gt-max", g, "where(a > b, a, b)", "max(a, b)", "finite(b)"),
        _r("where-same", g, "where(p, a, a)", "a"),
        _r("where-not", g, "where(not p, a, b)", "where(p, b, a)", both_ways=True),
        _r("not-not", g, "not (not p)", "p"),
        _r("de-morgan-and", g, "not (p and q)", "(not p) or (not q)", both_ways=True),
    ]


RULES: tuple[Rule, ...] = tuple(_arithmetic() + _fractions() + _powers() + _explog()
                                + _trig() + _hyperbolic() + _compare())


# --- reading rules ---------------------------------------------------------------------------

def rules(groups=None) -> tuple[Rule, ...]:
    """The rules of the named groups (all with None), in table order."""
    if groups is None:
        return RULES
    wanted = (groups,) if isinstance(groups, str) else tuple(groups)
    unknown = [g for g in wanted if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown rule group(s) {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(GROUPS)}")
    return tuple(r for r in RULES if r.group in wanted)


def _parse_side(text: str) -> Expr:
    names = {n: "bool" for n in BOOL_VARIABLES}
    e = parse(text, vars=names)
    return concretize(e, "float64") if e.is_weak else e


@lru_cache(maxsize=None)
def pattern(rule: Rule) -> tuple[Expr, Expr]:
    """(lhs, rhs) as Exprs: float64 pattern variables, bool ones for BOOL_VARIABLES."""
    return _parse_side(rule.lhs), _parse_side(rule.rhs)


def pattern_variables(rule: Rule) -> list[str]:
    """Names of the rule's pattern variables (those of its lhs), sorted."""
    return pattern(rule)[0].var_names()


def conditions(rule: Rule) -> list[tuple[str, str]]:
    """The assumptions as (fact, variable) pairs."""
    return [_ASSUMPTION.match(a).groups() for a in rule.assume]


# --- validation --------------------------------------------------------------------------------

def problems(rule: Rule) -> list[str]:
    """What is wrong with one rule taken alone (empty when it is well formed)."""
    where = f"rule {rule.name!r}"
    out = []
    if not isinstance(rule.name, str) or not _NAME.match(rule.name):
        out.append(f"{where}: name must be kebab-case (a-z, 0-9, -)")
    if rule.group not in GROUPS:
        out.append(f"{where}: unknown group {rule.group!r}")
    if not isinstance(rule.assume, tuple):
        out.append(f"{where}: assume must be a tuple of 'fact(var)' strings")
        return out
    try:
        lhs, rhs = _parse_side(rule.lhs), _parse_side(rule.rhs)
    except (ParseError, TypeError, ValueError) as e:
        return out + [f"{where}: pattern does not parse: {e}"]
    lvars, rvars = set(lhs.var_names()), set(rhs.var_names())
    if lhs.op == "var":
        out.append(f"{where}: lhs is a bare variable and would match everything")
    if rule.both_ways and rhs.op == "var":
        out.append(f"{where}: both_ways with a bare-variable rhs would match everything")
    if not rvars <= lvars:
        out.append(f"{where}: rhs variable(s) {', '.join(sorted(rvars - lvars))} "
                   "do not appear in the lhs")
    if rule.both_ways and not lvars <= rvars:
        out.append(f"{where}: both_ways needs the same variables on both sides; "
                   f"{', '.join(sorted(lvars - rvars))} missing from the rhs")
    if (lhs.dtype == "bool") != (rhs.dtype == "bool"):
        out.append(f"{where}: one side is boolean and the other is not")
    for entry in rule.assume:
        m = _ASSUMPTION.match(entry) if isinstance(entry, str) else None
        if m is None:
            out.append(f"{where}: assumption {entry!r} is not of the form fact(var)")
            continue
        fact, name = m.groups()
        if fact not in FACTS:
            out.append(f"{where}: unknown fact {fact!r}; known: {', '.join(FACTS)}")
        if name not in lvars:
            out.append(f"{where}: assumption {entry!r} names {name!r}, not a lhs variable")
        elif name in BOOL_VARIABLES:
            out.append(f"{where}: assumption {entry!r} is about a boolean variable")
    return out


def validate(rule_list) -> None:
    """Raise ValueError listing every malformed rule and every duplicated name."""
    out, seen = [], set()
    for rule in rule_list:
        if rule.name in seen:
            out.append(f"duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        out += problems(rule)
    if out:
        raise ValueError("bad rewrite rules:\n  " + "\n  ".join(out))


validate(RULES)

__all__ = ["Rule", "GROUPS", "FACTS", "BOOL_VARIABLES", "RULES", "rules", "pattern",
           "pattern_variables", "conditions", "problems", "validate"]
