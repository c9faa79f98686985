"""Soundness of every rewrite rule: each rule's variables are sampled in its domain (the
points its assumptions allow, special values included) and both sides are evaluated with
the mpmath oracle. A rule added to rewrite/rules.py is covered here automatically.

A point passes when both sides are NaN, the same infinity, the same boolean, or agree
to relative 1e-40 at 200 bits. Where they do not, the point is evaluated again at
4000 bits: a true identity only disagrees at 200 bits through lost precision
(cancellation such as 1e-300 + (-1e300 + 1e300), which needs about 2000 bits; huge
arguments of sin or exp), which more bits restore, so it passes if the values agree
there or their difference shrank by at least 2**-1000 (a true identity whose exact
value is 0 converges to 0 without reaching it). A false rule differs by the same
amount at any precision.
"""
from __future__ import annotations

import dataclasses
import itertools
import math

import mpmath as mp
import numpy as np
import pytest

from exprforge.engine.evaluate import oracle
from exprforge.engine.expr import Expr
from exprforge.rewrite import rules as R
from exprforge.rewrite.egraph import POW_INT_MAX
from exprforge.rewrite.rules import Rule

PREC, RETRY_PREC = 200, 4000
RTOL = mp.mpf("1e-40")
POINTS = 120           # special and random points, beyond the corner grid
MAX_CORNERS = 400

SPECIAL_MAGNITUDES = (1.0, 2.0, 0.5, 3.0, math.pi, math.pi / 2, math.e, 10.0, 0.1,
                      1e-10, 1e10, 1e-300, 1e300)

# Rules whose exact cancellation no finite precision reproduces at |x| = 1e300
# (cosh(1e300)**2 has about 3e300 bits): their finite magnitudes are drawn up to this
# bound. The identities hold for every finite x; the oracle cannot show it beyond it.
MAGNITUDE_LIMIT = {"cosh-sinh-pythagoras": 300.0}


# --- sampling -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Domain:
    """The values a float pattern variable may take under a set of facts."""
    signs: tuple          # +1 and/or -1
    zero: bool
    infinite: bool
    nan: bool
    limit: float = math.inf

    @classmethod
    def of(cls, facts: set, limit: float = math.inf) -> "Domain":
        signs = (1.0,) if facts & {"positive", "nonneg"} else (1.0, -1.0)
        zero = not facts & {"positive", "nonzero"}
        return cls(signs, zero, "finite" not in facts, not facts, limit)

    def corners(self) -> list[float]:
        out = [s * m for s in self.signs for m in (1.0, 2.0, 0.5)]
        out += [0.0] if self.zero else []
        out += [s * math.inf for s in self.signs] if self.infinite else []
        return out + ([math.nan] if self.nan else [])

    def specials(self) -> list[float]:
        """Every special value allowed: the magnitudes with each sign, 0, +-inf, NaN."""
        out = [s * m for s in self.signs for m in SPECIAL_MAGNITUDES if m <= self.limit]
        out += [0.0] if self.zero else []
        out += [s * math.inf for s in self.signs] if self.infinite else []
        return out + ([math.nan] if self.nan else [])

    def draw(self, rng: np.random.Generator) -> float:
        if rng.random() < 0.3:
            m = rng.uniform(0.0, 4.0) or 1.0
        else:
            m = math.exp(rng.uniform(math.log(1e-6), math.log(1e6)))
        return min(m, self.limit) * self.signs[rng.integers(len(self.signs))]


def domains(rule: Rule) -> dict:
    facts = {n: set() for n in R.pattern_variables(rule)}
    for fact, name in R.conditions(rule):
        facts[name].add(fact)
    limit = MAGNITUDE_LIMIT.get(rule.name, math.inf)
    return {n: None if n in R.BOOL_VARIABLES else Domain.of(f, limit)
            for n, f in facts.items()}


def satisfies(value: float, fact: str) -> bool:
    """The definition of each fact (rules.py), used to check the sampler itself."""
    return {"positive": value > 0, "nonneg": value >= 0,
            "nonzero": value > 0 or value < 0, "finite": math.isfinite(value)}[fact]


def sample(rule: Rule, seed: int = 0) -> dict[str, np.ndarray]:
    """Points in the rule's domain: combinations of corner values (capped), every
    special value of each variable (paired at random), then random points: log-uniform
    magnitudes in (1e-6, 1e6) and small values in (0, 4)."""
    rng = np.random.default_rng([seed, *map(ord, rule.name)])
    doms = list(domains(rule).items())
    grid = list(itertools.product(*[[True, False] if d is None else d.corners()
                                    for _, d in doms]))
    if len(grid) > MAX_CORNERS:
        grid = [grid[i] for i in sorted(rng.choice(len(grid), MAX_CORNERS, replace=False))]
    specials = [[True, False] if d is None else d.specials() for _, d in doms]
    count = max(map(len, specials), default=0)
    spread = [[s[i] for i in rng.permutation(count) % len(s)] for s in specials]
    rows = grid + list(zip(*spread))
    rows += [tuple(bool(rng.integers(2)) if d is None else d.draw(rng) for _, d in doms)
             for _ in range(POINTS - len(rows) + len(grid))]
    cols = list(zip(*rows)) if doms else []
    return {n: np.array(c, dtype=bool if d is None else np.float64)
            for (n, d), c in zip(doms, cols)}


# --- comparing ----------------------------------------------------------------------------------

def _values(expr: Expr, env: dict, n: int, prec: int) -> list:
    out = oracle(expr, env, prec=prec)
    return list(np.broadcast_to(np.asarray(out, dtype=object), (n,)))


def _agree(a, b) -> bool:
    if isinstance(a, (bool, np.bool_)) or isinstance(b, (bool, np.bool_)):
        return isinstance(a, (bool, np.bool_)) and isinstance(b, (bool, np.bool_)) \
            and bool(a) == bool(b)
    with mp.workprec(RETRY_PREC):  # mpf() and arithmetic round to the context precision
        a, b = mp.mpf(a), mp.mpf(b)
        if mp.isnan(a) or mp.isnan(b):
            return bool(mp.isnan(a) and mp.isnan(b))
        if mp.isinf(a) or mp.isinf(b):
            return a == b
        return abs(a - b) <= RTOL * max(abs(a), abs(b))


def _converged(lo, hi) -> bool:
    """The difference of a finite pair shrank by 2**-1000 from 200 to 4000 bits."""
    if any(isinstance(v, (bool, np.bool_)) for v in (*lo, *hi)):
        return False
    with mp.workprec(RETRY_PREC):
        lo, hi = [mp.mpf(v) for v in lo], [mp.mpf(v) for v in hi]
        if not all(mp.isfinite(v) for v in lo + hi):
            return False
        return abs(hi[0] - hi[1]) <= abs(lo[0] - lo[1]) * mp.mpf(2) ** -1000


def _show(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    with mp.workprec(RETRY_PREC):
        return mp.nstr(mp.mpf(v), 20)


def check_rule(rule: Rule, seed: int = 0) -> str | None:
    """None when the rule is sound at every sampled point; else a description of the
    first point where it is not."""
    lhs, rhs = R.pattern(rule)
    env = sample(rule, seed)
    n = len(next(iter(env.values()))) if env else 1
    lo = list(zip(_values(lhs, env, n, PREC), _values(rhs, env, n, PREC)))
    bad = [i for i, (a, b) in enumerate(lo) if not _agree(a, b)]
    if not bad:
        return None
    sub = {k: v[bad] for k, v in env.items()}
    hi = list(zip(_values(lhs, sub, len(bad), RETRY_PREC),
                  _values(rhs, sub, len(bad), RETRY_PREC)))
    for i, pair in zip(bad, hi):
        if _agree(*pair) or _converged(lo[i], pair):
            continue
        point = ", ".join(f"{k}={v[i].item()!r}" for k, v in env.items())
        return (f"rule {rule.name} ({rule.lhs} -> {rule.rhs}, assuming "
                f"{', '.join(rule.assume) or 'nothing'}) fails at {point}: "
                f"lhs = {_show(pair[0])}, rhs = {_show(pair[1])}")
    return None


# --- every rule is sound ----------------------------------------------------------------------

@pytest.mark.parametrize("rule", R.rules(), ids=lambda r: r.name)
def test_rule_is_sound(rule):
    failure = check_rule(rule)
    assert failure is None, failure


@pytest.mark.parametrize("rule", R.rules(), ids=lambda r: r.name)
def test_samples_respect_the_assumptions_and_cover_special_values(rule):
    env = sample(rule)
    doms = domains(rule)
    for fact, name in R.conditions(rule):
        assert all(satisfies(v, fact) for v in env[name]), (rule.name, fact, name)
    for name, d in doms.items():
        values = env[name]
        if d is None:
            assert set(values.tolist()) == {True, False}
            continue
        assert np.isnan(values).any() == d.nan
        assert np.isinf(values).any() == d.infinite
        assert (values == 0).any() == d.zero
        assert (values < 0).any() == (-1.0 in d.signs)
        finite = np.abs(values[np.isfinite(values)])
        assert (finite >= 1e300).any() == (d.limit >= 1e300)
        assert (finite[finite > 0] <= 1e-300).any()


@pytest.mark.parametrize("n", range(3, POW_INT_MAX + 1))
def test_integer_power_expansion_is_sound(n):
    # the e-graph's pow-int family (rewrite/egraph.py): x ** n -> x ** (n - 1) * x
    rule = Rule(f"pow-int-{n}", "powers", f"x ** {n}", f"x ** {n - 1} * x")
    failure = check_rule(rule)
    assert failure is None, failure


@pytest.mark.parametrize("lhs, rhs, assume", [
    # the e-graph's coefficient family (rewrite/egraph.py), at a few literals
    ("-(2.5 * x)", "-2.5 * x", ()), ("-(0.1 * x)", "-0.1 * x", ()), ("-(-3 * x)", "3 * x", ()),
    ("2.5 * x * -y", "-2.5 * x * y", ()), ("-0.1 * x * -y", "0.1 * x * y", ()),
    ("2.5 * x - 0.5 * x", "2 * x", ("finite(x)",)), ("3 * x - 3 * x", "0 * x", ("finite(x)",)),
    ("0.5 * x - x", "-0.5 * x", ("finite(x)",)), ("x - 4 * x", "-3 * x", ("finite(x)",)),
])
def test_coefficient_rules_are_sound(lhs, rhs, assume):
    failure = check_rule(Rule("coefficient", "arithmetic", lhs, rhs, assume))
    assert failure is None, failure


# --- the checker itself finds unsound rules ---------------------------------------------------

@pytest.mark.parametrize("lhs, rhs, assume, witness", [
    ("sqrt(x * x)", "x", (), "x=-"),                     # wrong for negative x
    ("x / x", "1", (), ""),                                # 0, inf and NaN
    ("x / x", "1", ("nonzero(x)",), "inf"),                # still wrong at inf
    ("x - x", "0", (), ""),
    ("2 * x - x", "x", (), "inf"),                         # coefficients need finite(x)
    ("1 / x ** a", "x ** -a", (), "inf"),                  # no signed zero at x = -inf
    ("exp(log(x))", "x", (), "x=-"),
    ("a * (b + c)", "a * b + a * c", (), "inf"),           # distributivity at a = inf
    ("where(a < b, a, b)", "min(a, b)", (), "nan"),        # fmin ignores NaN
    ("not (a < b)", "a >= b", (), "nan"),
    ("x == x", "True", (), "nan"),
    ("x ** 0", "1", (), ""),                               # oracle: inf ** 0 is NaN
    ("(a / b) / c", "a / (b * c)", (), ""),                # no signed zero
    ("sin(x)", "x", ("finite(x)",), ""),                   # close only near 0
    ("cosh(x) ** 2 - sinh(x) ** 2", "1", (), "inf"),
    ("tanh(x)", "sinh(x) / cosh(x)", (), "inf"),
    ("(x ** a) ** b", "x ** (a * b)", ("positive(x)",), ""),
    ("log(x ** a)", "a * log(x)", (), "x=-"),             # log((-1) ** 2) = 0
    ("not (not p)", "not p", (), ""),
])
def test_checker_reports_unsound_rules(lhs, rhs, assume, witness):
    bad = Rule("wrong-rule", "arithmetic", lhs, rhs, assume)
    assert not R.problems(bad)
    failure = check_rule(bad)
    assert failure is not None, f"{lhs} -> {rhs} passed the soundness check"
    assert "wrong-rule" in failure and witness in failure


def test_checker_accepts_identities_that_need_more_than_200_bits():
    # exact cancellation (sin(1e300 + -1e300) = 0), tiny arguments of expm1/log1p, and
    # tan(atan(1e300)), which needs about 1000 bits to come back to 1e300
    for lhs, rhs, assume in [("sin(a + b)", "sin(a) * cos(b) + cos(a) * sin(b)", ()),
                             ("log(1 + a)", "log1p(a)", ()),
                             ("tan(atan(x))", "x", ("finite(x)",))]:
        assert check_rule(Rule("true-rule", "trig", lhs, rhs, assume)) is None


def test_checker_is_deterministic_and_seeds_differ():
    rule = R.rules("powers")[0]
    a, b = sample(rule, seed=0), sample(rule, seed=0)
    assert all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)
    c = sample(rule, seed=1)
    assert not all(np.array_equal(a[k], c[k], equal_nan=True) for k in a)


# --- the table: validation, filtering, patterns ------------------------------------------------

def test_rule_table_is_valid_and_sized():
    R.validate(R.RULES)
    assert 60 <= len(R.RULES) <= 150
    assert {r.group for r in R.RULES} == set(R.GROUPS)
    assert len({r.name for r in R.RULES}) == len(R.RULES)


def _errors(*rule_list) -> str:
    with pytest.raises(ValueError) as info:
        R.validate(rule_list)
    return str(info.value)


def test_validation_rejects_a_duplicate_name():
    rule = Rule("x-plus-zero", "arithmetic", "x + 0", "x")
    assert "duplicate rule name 'x-plus-zero'" in _errors(rule, dataclasses.replace(rule))


def test_validation_rejects_an_rhs_variable_not_in_the_lhs():
    assert "y do not appear in the lhs" in _errors(Rule("bad", "arithmetic", "x * 0", "y"))


def test_validation_rejects_unknown_facts_and_bad_assumptions():
    text = _errors(Rule("bad-fact", "powers", "sqrt(x) ** 2", "x", ("real(x)",)),
                   Rule("bad-var", "powers", "sqrt(x) ** 2", "x", ("nonneg(y)",)),
                   Rule("bad-form", "powers", "sqrt(x) ** 2", "x", ("x >= 0",)),
                   Rule("bool-fact", "compare", "where(p, a, a)", "a", ("finite(p)",)))
    assert "unknown fact 'real'" in text
    assert "names 'y', not a lhs variable" in text
    assert "'x >= 0' is not of the form fact(var)" in text
    assert "about a boolean variable" in text


def test_validation_rejects_other_malformed_rules():
    text = _errors(Rule("Bad_Name", "arithmetic", "x + 0", "x"),
                   Rule("no-group", "algebra", "x + 0", "x"),
                   Rule("no-parse", "arithmetic", "x +", "x"),
                   Rule("bare-lhs", "arithmetic", "x", "x + 0"),
                   Rule("bare-rhs-both-ways", "arithmetic", "x + 0", "x", both_ways=True),
                   Rule("lost-var-both-ways", "arithmetic", "x * 0", "0", ("finite(x)",),
                        both_ways=True),
                   Rule("kinds", "compare", "x < x", "0"))
    for fragment in ("'Bad_Name': name must be kebab-case", "unknown group 'algebra'",
                     "'no-parse': pattern does not parse", "'bare-lhs': lhs is a bare",
                     "'bare-rhs-both-ways': both_ways with a bare-variable rhs",
                     "'lost-var-both-ways': both_ways needs the same variables",
                     "'kinds': one side is boolean"):
        assert fragment in text


def test_rules_filters_by_group():
    assert R.rules() == R.RULES
    trig = R.rules(["trig"])
    assert trig and all(r.group == "trig" for r in trig)
    assert R.rules("trig") == trig
    both = R.rules(("trig", "hyperbolic"))
    assert len(both) == len(trig) + len(R.rules(["hyperbolic"]))
    assert [r for r in R.RULES if r in both] == list(both)  # table order kept
    assert R.rules([]) == ()
    with pytest.raises(ValueError, match="unknown rule group"):
        R.rules(["trig", "calculus"])


def test_pattern_returns_exprs_with_typed_variables():
    for rule in R.RULES:
        lhs, rhs = R.pattern(rule)
        assert isinstance(lhs, Expr) and isinstance(rhs, Expr)
        assert not lhs.is_weak and not rhs.is_weak
        for v in lhs.variables() + rhs.variables():
            assert v.dtype == ("bool" if v.name in R.BOOL_VARIABLES else "float64")
        assert set(rhs.var_names()) <= set(R.pattern_variables(rule))
    rule = next(r for r in R.RULES if r.name == "exp-log")
    lhs, rhs = R.pattern(rule)
    assert (lhs.op, lhs.args[0].op, rhs.op) == ("exp", "log", "var")
    assert R.pattern_variables(rule) == ["x"]
    assert R.conditions(rule) == [("nonneg", "x")]


def test_rules_the_brief_asks_for_are_present_with_the_right_conditions():
    by_name = {r.name: r for r in R.RULES}
    assert by_name["sqrt-of-sqr"].assume == ()
    assert by_name["log-exp"].assume == ()
    assert set(by_name["div-self"].assume) == {"nonzero(x)", "finite(x)"}
    assert not any(r.lhs == "sqrt(x * x)" and r.rhs == "x" for r in R.RULES)
