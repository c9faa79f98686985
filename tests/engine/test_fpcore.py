"""The FPCore reader: FPBench text -> Expr, checked by evaluating against NumPy."""
import math
from fractions import Fraction

import numpy as np
import pytest

from exprforge.engine.evaluate import evaluate
from exprforge.engine.fpcore import (FPCore, FPCoreError, load_fpcore_file, read_fpcore,
                                     read_fpcores, read_fpcores_lenient)
from exprforge.engine.parse import ParseError

RNG = np.random.default_rng(0)
X = RNG.uniform(0.1, 3.0, 64)
Y = RNG.uniform(-2.0, 2.0, 64)


def run(text, **env):
    core = read_fpcore(text)
    return evaluate(core.expr, env)


# --- arithmetic and functions against numpy ----------------------------------------------

CASES = [
    ("(+ x y)", lambda x, y: x + y),
    ("(- x y)", lambda x, y: x - y),
    ("(- x)", lambda x, y: -x),
    ("(* x y)", lambda x, y: x * y),
    ("(/ x y)", lambda x, y: x / y),
    ("(fabs y)", lambda x, y: np.abs(y)),
    ("(sqrt x)", np.sqrt),
    ("(cbrt y)", lambda x, y: np.cbrt(y)),
    ("(pow x y)", np.power),
    ("(exp y)", lambda x, y: np.exp(y)),
    ("(expm1 y)", lambda x, y: np.expm1(y)),
    ("(log x)", np.log),
    ("(log1p x)", np.log1p),
    ("(log2 x)", np.log2),
    ("(log10 x)", np.log10),
    ("(sin y)", lambda x, y: np.sin(y)),
    ("(cos y)", lambda x, y: np.cos(y)),
    ("(tan y)", lambda x, y: np.tan(y)),
    ("(atan y)", lambda x, y: np.arctan(y)),
    ("(atan2 y x)", lambda x, y: np.arctan2(y, x)),
    ("(tanh y)", lambda x, y: np.tanh(y)),
    ("(fmin x y)", np.fmin),
    ("(fmax x y)", np.fmax),
    ("(hypot x y)", np.hypot),
    ("(fmod y x)", lambda x, y: np.fmod(y, x)),
    ("(copysign x y)", np.copysign),
    ("(floor y)", lambda x, y: np.floor(y)),
    ("(nearbyint (* 4 y))", lambda x, y: np.rint(4 * y)),
    ("(- (sqrt (+ x 1)) (sqrt x))", lambda x, y: np.sqrt(x + 1) - np.sqrt(x)),
    ("(/ (- (exp y) 1) (+ (* x x) 1/2))", lambda x, y: (np.exp(y) - 1) / (x * x + 0.5)),
]


@pytest.mark.parametrize("body, ref", CASES, ids=[c[0] for c in CASES])
def test_ops_match_numpy(body, ref):
    got = run(f"(FPCore (x y) {body})", x=X, y=Y)
    np.testing.assert_allclose(got, ref(X, Y), rtol=1e-15, atol=0)
    assert got.dtype == np.float64


def test_fma_is_fused():
    a, b, c = 1 + 2.0 ** -30, 1 - 2.0 ** -30, -1.0
    got = run("(FPCore (a b c) (fma a b c))", a=np.array(a), b=np.array(b), c=np.array(c))
    assert got == -(2.0 ** -60)  # a*b+c with one rounding; unfused gives 0
    assert a * b + c == 0


def test_let_is_parallel_let_star_sequential():
    let = run("(FPCore (x) (let ([x (+ x 1)] [y x]) (* x y)))", x=np.array(3.0))
    star = run("(FPCore (x) (let* ([x (+ x 1)] [y x]) (* x y)))", x=np.array(3.0))
    assert let == 12.0  # y sees the argument x = 3
    assert star == 16.0  # y sees the new x = 4


def test_let_shadowing_is_scoped_and_duplicates_refused():
    got = run("(FPCore (x) (+ (let ([x 10]) x) x))", x=np.array(1.0))
    assert got == 11.0
    with pytest.raises(FPCoreError, match="bound twice"):
        read_fpcore("(FPCore (x) (let ([y 1] [y 2]) y))")
    assert run("(FPCore (x) (let* ([y 1] [y (+ y 1)]) y))", x=np.array(0.0)) == 2.0


def test_if_selects():
    got = run("(FPCore (y) (if (< y 0) (- y) (* 2 y)))", y=Y)
    np.testing.assert_array_equal(got, np.where(Y < 0, -Y, 2 * Y))


def test_nary_comparisons_chain_and_ne_is_pairwise():
    a = np.array([1.0, 1.0, 1.0, 3.0])
    b = np.array([2.0, 2.0, 0.0, 2.0])
    c = np.array([3.0, 1.0, 2.0, 1.0])
    lt = run("(FPCore (a b c) (< a b c))", a=a, b=b, c=c)
    np.testing.assert_array_equal(lt, (a < b) & (b < c))
    ge = run("(FPCore (a b c) (>= a b c))", a=a, b=b, c=c)
    np.testing.assert_array_equal(ge, (a >= b) & (b >= c))
    ne = run("(FPCore (a b c) (!= a b c))", a=a, b=b, c=c)
    np.testing.assert_array_equal(ne, [True, False, True, True])  # a == c in column 2
    both = run("(FPCore (a b c) (and (< a b) (< b c) (< a c)))", a=a, b=b, c=c)
    np.testing.assert_array_equal(both, [True, False, False, False])
    either = run("(FPCore (a b c) (or (> a 2) (> b c) (> c 2.5)))", a=a, b=b, c=c)
    np.testing.assert_array_equal(either, [True, True, False, True])  # col 0: third only


# --- :pre and the domain ---------------------------------------------------------------

def test_domain_from_chained_and_one_sided_bounds():
    core = read_fpcore("""(FPCore (x y z w v)
        :pre (and (<= 0 x 1) (>= y 2) (< z 3) (> 5 w) (and (== v 4)))
        (+ x y))""")
    assert core.domain == {"x": (0.0, 1.0), "y": (2.0, math.inf), "z": (-math.inf, 3.0),
                           "w": (-math.inf, 5.0), "v": (4.0, 4.0)}
    assert core.pre.dtype == "bool"


def test_domain_from_strict_chain_rationals_and_constant_expressions():
    core = read_fpcore("(FPCore (a x b t) :pre (and (< 1/100 x 1/2) (<= (- PI) t PI)) x)")
    assert core.domain["x"] == (0.01, 0.5)
    assert core.domain["t"] == (-math.pi, math.pi)
    assert core.domain["a"] == core.domain["b"] == (-math.inf, math.inf)


def test_domain_intersects_repeated_bounds():
    core = read_fpcore("(FPCore (x) :pre (and (<= -5 x 5) (<= 0 x) (< x 10)) x)")
    assert core.domain == {"x": (0.0, 5.0)}


def test_non_bound_conjuncts_stay_only_in_pre():
    core = read_fpcore("""(FPCore (x y z)
        :pre (and (<= 0 x 1) (< x y) (!= z 0) (or (< z -1) (> z 1)))
        (+ (+ x y) z))""")
    assert core.domain == {"x": (0.0, 1.0), "y": (-math.inf, math.inf),
                           "z": (-math.inf, math.inf)}
    pre = lambda x, y, z: evaluate(core.pre, {"x": np.array(x), "y": np.array(y),
                                              "z": np.array(z)})
    assert pre(0.5, 0.75, 2.0)
    assert not pre(0.5, 0.25, 2.0)   # x < y fails
    assert not pre(0.5, 0.75, 0.5)   # the or fails
    assert not pre(1.5, 2.0, 2.0)    # the bound fails


def test_no_pre_means_unbounded_and_pre_must_be_boolean():
    core = read_fpcore("(FPCore (x) x)")
    assert core.pre is None and core.domain == {"x": (-math.inf, math.inf)}
    with pytest.raises(FPCoreError, match="boolean"):
        read_fpcore("(FPCore (x) :pre (+ x 1) x)")


# --- precision ---------------------------------------------------------------------------

def test_binary32_gives_float32_vars_and_results():
    core = read_fpcore("(FPCore (x) :precision binary32 :pre (<= 0 x 0.1) (+ (* x 0.1) 1/3))")
    assert core.dtype == "float32"
    assert all(v.dtype == "float32" for v in core.expr.variables())
    x32 = X.astype(np.float32)
    got = evaluate(core.expr, {"x": x32})
    assert got.dtype == np.float32
    want = x32 * np.float32(0.1) + np.float32(1) / np.float32(3)
    np.testing.assert_array_equal(got, want)
    assert core.domain["x"] == (0.0, float(np.float32(0.1)))  # as binary32 rounds 0.1


def test_precision_binary64_and_default():
    assert read_fpcore("(FPCore (x) :precision binary64 x)").dtype == "float64"
    core = read_fpcore("(FPCore (x) x)")
    assert core.dtype == "float64" and core.expr.dtype == "float64"


def test_annotations_that_keep_the_precision_are_accepted():
    core = read_fpcore("(FPCore (x) :precision binary32 (! :precision binary32 (+ x 1)))")
    assert core.expr.dtype == "float32"
    core = read_fpcore("(FPCore (x) (! :round nearestEven (* x 2)))")
    assert evaluate(core.expr, {"x": np.array(1.5)}) == 3.0
    core = read_fpcore("(FPCore (x) (+ (! :precision binary64 x) (! :note 3 1)))")
    assert evaluate(core.expr, {"x": np.array(1.5)}) == 2.5


# --- literals and constants ----------------------------------------------------------------

def test_literals_are_exact():
    c = read_fpcore("(FPCore () 3969/625)").expr
    assert c.op == "const" and c.value == Fraction(3969, 625)
    assert read_fpcore("(FPCore () 0x1.8p3)").expr.value == 12
    assert read_fpcore("(FPCore () -0x.8p-1)").expr.value == Fraction(-1, 4)
    assert read_fpcore("(FPCore () 0x10)").expr.value == 16
    assert read_fpcore("(FPCore () (digits 15 -1 10))").expr.value == Fraction(3, 2)
    assert read_fpcore("(FPCore () (digits -3 4 2))").expr.value == -48
    assert read_fpcore("(FPCore () 1.25e-2)").expr.value == Fraction(1, 80)
    assert read_fpcore("(FPCore () 0.1)").expr.value == Fraction(1, 10)  # not the double


def test_non_decimal_rationals_round_correctly_per_dtype():
    third = read_fpcore("(FPCore () 1/3)").expr
    assert evaluate(third) == 1 / 3
    assert evaluate(third, dtype="float32") == np.float32(1) / np.float32(3)
    assert evaluate(read_fpcore("(FPCore () (digits 1 -1 3))").expr) == 1 / 3


def test_special_literals():
    neg0 = evaluate(read_fpcore("(FPCore () -0.0)").expr)
    assert neg0 == 0 and np.signbit(neg0)
    assert evaluate(read_fpcore("(FPCore () 1e400)").expr) == np.inf
    assert evaluate(read_fpcore("(FPCore () INFINITY)").expr) == np.inf
    assert np.isnan(evaluate(read_fpcore("(FPCore () NAN)").expr))
    assert evaluate(read_fpcore("(FPCore () (if TRUE 1 2))").expr) == 1
    assert evaluate(read_fpcore("(FPCore () (if FALSE 1 2))").expr) == 2


@pytest.mark.parametrize("name, value", [("PI", math.pi), ("E", math.e), ("LN2", math.log(2)),
                                         ("PI_2", math.pi / 2), ("PI_4", math.pi / 4)])
def test_constants(name, value):
    c = read_fpcore(f"(FPCore () {name})")
    assert evaluate(c.expr) == value
    c32 = read_fpcore(f"(FPCore () :precision binary32 {name})")
    assert evaluate(c32.expr).dtype == np.float32
    assert evaluate(c32.expr) == np.float32(value)


# --- names and properties ------------------------------------------------------------------

def test_argument_names_are_mapped_to_valid_ir_names():
    core = read_fpcore("(FPCore (e x.1 x-y exp lambda x_1)"
                       " (+ (+ (+ e x.1) (* 10 x-y)) (+ (* 100 exp) (- lambda x_1))))")
    assert core.arg_names == ("e", "x.1", "x-y", "exp", "lambda", "x_1")
    assert core.args == ("e_", "x_1_", "x_y", "exp_", "lambda_", "x_1")
    assert core.name_map["x.1"] == "x_1_" and core.name_map["x_1"] == "x_1"
    env = dict(zip(core.args, map(np.array, [1.0, 2.0, 3.0, 4.0, 7.0, 5.0])))
    assert evaluate(core.expr, env) == 1 + 2 + 30 + 400 + 2


def test_names_and_properties():
    text = '''; a comment (with parens
    (FPCore named-core (x)
      :name "say \\"hi\\""   ; trailing comment
      :cite (hamming-1987 herbie-2015)
      :fpbench-domain textbook
      :example ([x 1.5])
      (+ x 1))
    (FPCore my-ident (x) x)
    (FPCore (x) [* x x])'''
    a, b, c = read_fpcores(text)
    assert a.name == 'say "hi"'
    assert a.properties == {"cite": "(hamming-1987 herbie-2015)",
                            "fpbench-domain": "textbook", "example": "([x 1.5])"}
    assert b.name == "my-ident" and c.name is None
    assert isinstance(c, FPCore) and evaluate(c.expr, {"x": np.array(3.0)}) == 9.0


def test_load_file(tmp_path):
    path = tmp_path / "two.fpcore"
    path.write_text("(FPCore (x) (sqrt x))\n(FPCore (y) :name \"neg\" (- y))\n")
    cores = load_fpcore_file(path)
    assert [c.name for c in cores] == [None, "neg"]
    assert evaluate(cores[1].expr, {"y": np.array(2.0)}) == -2.0


# --- unsupported constructs name the construct and the core -------------------------------

UNSUPPORTED = [
    ("while", "(while (< x 1) ([x x (+ x 1)]) x)"),
    ("while*", "(while* (< x 1) ([x x (+ x 1)]) x)"),
    ("for", "(for ([i 10]) ([s 0 (+ s i)]) s)"),
    ("for*", "(for* ([i 10]) ([s 0 (+ s i)]) s)"),
    ("tensor", "(tensor ([i 3]) i)"),
    ("tensor*", "(tensor* ([i 3]) ([s 0 (+ s i)]) s)"),
    ("array", "(array x x)"),
    ("ref", "(ref x 0)"),
    ("dim", "(dim x)"),
    ("size", "(size x 0)"),
    ("cast", "(cast x)"),
    ("tgamma", "(tgamma x)"),
    ("lgamma", "(lgamma x)"),
    ("remainder", "(remainder x 2)"),
    ("fdim", "(fdim x 2)"),
    ("isinf", "(if (isinf x) 0 x)"),
    ("isnan", "(if (isnan x) 0 x)"),
    ("round", "(round x)"),
    ("SQRT2", "(* x SQRT2)"),
    ("M_1_PI", "(* x M_1_PI)"),
    ("LOG2E", "LOG2E"),
]


@pytest.mark.parametrize("construct, body", UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_unsupported_constructs_are_named(construct, body):
    with pytest.raises(FPCoreError) as err:
        read_fpcore(f'(FPCore (x) :name "core-{construct}" {body})')
    assert f"'{construct}'" in str(err.value)
    assert f"core 'core-{construct}'" in str(err.value)
    assert err.value.pos is not None


@pytest.mark.parametrize("text, construct", [
    ("(FPCore sized ((x 3)) x)", "dimension"),
    ("(FPCore annotated ((! :precision binary32 x)) x)", "!"),
    ("(FPCore wide (x) :precision binary80 x)", ":precision binary80"),
    ("(FPCore fixed (x) :precision (float 8 16) x)", ":precision (float 8 16)"),
    ("(FPCore mixed (x) (! :precision binary32 (+ x 1)))", "!"),
    ("(FPCore rounding (x) (! :round toZero (+ x 1)))", "!"),
])
def test_unsupported_arguments_precisions_and_annotations(text, construct):
    with pytest.raises(FPCoreError) as err:
        read_fpcore(text)
    assert f"'{construct}'" in str(err.value)
    assert f"core '{text.split()[1]}'" in str(err.value)


def test_error_names_unnamed_core_by_index():
    with pytest.raises(FPCoreError, match=r"'while' in core #1"):
        read_fpcores("(FPCore (x) x) (FPCore (x) (while TRUE ([x x x]) x))")


# --- malformed input -------------------------------------------------------------------------

@pytest.mark.parametrize("text, message, pos", [
    ("(FPCore (x) (+ x 1)", "never closed", 0),
    ("(FPCore (x) x))", "unexpected ')'", 14),
    ("(FPCore (x) [+ x 1))", "closed by ')'", 18),
    ("(FPCore (x) (+ x 1.2.3))", "bad number '1.2.3'", 17),
    ("(FPCore (x) (+ x 1/0))", "bad number '1/0'", 17),
    ("(FPCore (x) (+ x 1e))", "bad number '1e'", 17),
    ("(FPCore (x) (+ x))", "'+' takes 2 argument", 12),
    ("(FPCore (x) (sqrt x x))", "'sqrt' takes 1 argument", 12),
    ("(FPCore (x) (if (< x 1) x))", "'if' takes 3 argument", 12),
    ("(FPCore (x) (- x 1 2))", "'-' takes 1 or 2 argument", 12),
    ('(FPCore (x) :name "oops x)', "unterminated string", 18),
    ("(FPCore (x) (+ x y))", "unbound variable 'y'", 17),
    ("(FPCore (x) (+ TRUE 1))", "type error", 12),
    ("(FPCore (x) (sqrt (< x 1)))", "type error", 12),
    ("(FPCore (x) (if x 1 2))", "type error", 12),
    ("(FPCore (x x) x)", "appears twice", 11),
    ("(FPCore (x) (let (x 1) x))", "binding", 18),
    ("(FPCore (x) ())", "expected (operator", 12),
    ("(FPCore (x) \"text\")", "string is not an expression", 12),
    ("(FPCore (x))", "exactly one body", 0),
    ("(FPCore (x) x x)", "exactly one body", 0),
    ("(FPCore (x) :name)", "exactly one body", 0),
    ("(FPCore x)", "argument list", 0),
    ("(Core (x) x)", "expected (FPCore", 0),
    ("(FPCore (x) (+ x :pre))", "property :pre", 17),
    ("(FPCore () (digits 1.5 2 10))", "digits takes three integers", 11),
])
def test_malformed_input_reports_position(text, message, pos):
    with pytest.raises(FPCoreError) as err:
        read_fpcores(text)
    assert message in str(err.value)
    assert err.value.pos == pos
    assert isinstance(err.value, ParseError)


def test_read_fpcore_wants_exactly_one():
    with pytest.raises(FPCoreError, match="found 0"):
        read_fpcore("; only a comment\n")
    with pytest.raises(FPCoreError, match="found 2"):
        read_fpcore("(FPCore (x) x) (FPCore (y) y)")
    with pytest.raises(FPCoreError):
        read_fpcores(b"(FPCore (x) x)")


def test_deep_nesting():
    depth = 150
    text = "(FPCore (x) " + "(+ 1 " * depth + "x" + ")" * depth + ")"
    assert evaluate(read_fpcore(text).expr, {"x": np.array(0.0)}) == depth
    depth = 20000
    text = "(FPCore (x) " + "(- " * depth + "x" + ")" * depth + ")"
    with pytest.raises(FPCoreError, match="nested too deeply"):
        read_fpcore(text)


# --- the lenient reader ------------------------------------------------------------------------

def test_lenient_reader_collects_errors_and_keeps_going():
    text = """
    (FPCore (x) :name "good one" (+ x 1))
    (FPCore (x) :name "loop" (while (< x 1) ([x x (+ x 1)]) x))
    (FPCore (x) (tgamma x))
    (FPCore (x) :name "good two" (* x 2))
    (FPCore (x) (+ x 1)
    """
    cores, errors = read_fpcores_lenient(text)
    assert [c.name for c in cores] == ["good one", "good two"]
    assert [e[0] for e in errors] == ["loop", 2, 4]
    assert "'while'" in errors[0][1] and "'tgamma'" in errors[1][1]
    assert "never closed" in errors[2][1]
    with pytest.raises(FPCoreError, match="never closed"):  # strict: the text first
        read_fpcores(text)
    with pytest.raises(FPCoreError, match="'while' in core 'loop'"):
        read_fpcores(text.rsplit("(FPCore", 1)[0])


def test_lenient_reader_on_clean_text_has_no_errors():
    cores, errors = read_fpcores_lenient("(FPCore (a) a) (FPCore (b) (- b))")
    assert len(cores) == 2 and errors == []
