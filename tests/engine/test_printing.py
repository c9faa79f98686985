"""Printers: text that parses back to the identical node, LaTeX, exact literals."""
from fractions import Fraction

import pytest
from hypothesis import given, settings, strategies as st

from exprforge.engine.expr import const, make, var
from exprforge.engine.parse import hex_float, parse
from exprforge.engine.printing import format_fraction, to_latex, to_text
from tests.strategies import any_exprs, declarations, float_exprs


@settings(max_examples=300, deadline=None)
@given(any_exprs(max_depth=5))
def test_text_parses_back_to_the_identical_node(e):
    assert parse(to_text(e), vars=declarations(e)) is e


@settings(max_examples=200, deadline=None)
@given(float_exprs("float32", max_depth=6))
def test_float32_programs_round_trip(e):
    assert parse(to_text(e), vars=declarations(e)) is e


def test_a_dag_prints_in_linear_size():
    e = var("x")
    for _ in range(60):
        e = e * e + 1
    text = to_text(e)
    assert len(text) < 2000 and ":=" in text
    assert parse(text) is e


def test_binding_comes_before_use_in_text_order():
    s = parse("sin(x) * y + 3")
    e = s + s * var("x")  # the shared node is first reached through the left operand
    text = to_text(e)
    assert text.index(":=") < text.index("t0 ", text.index(":=") + 3) or text.count("t0") == 2
    assert parse(text) is e
    e2 = make("add", (s * var("x"), s))  # ... and here through the right operand's parent
    assert parse(to_text(e2)) is e2


@pytest.mark.parametrize("text", [
    "-x**2", "(-x)**2", "(-0.5)**2", "2**-1", "x - (y - z)", "x - y - z", "x / (y * z)",
    "(x < y) == (y < z)", "not (x < y)", "-(x + y)", "--x", "x**y**z", "(x**y)**z",
    "where(x > 0, x, -x)", "x if x > 0 else -x", "float32(x) + 1", "sum(x*x, axis=-1)",
    "bitcast(float32(x), int32) >> 23", "ldexp(x, 3)", "1e300 * x", "x * 1e-300",
    "0x1.999999999999ap-4 * x", "-0.0 + x", "inf * x", "nan", "(t := exp(x)) / (1 + t)",
])
def test_known_texts_round_trip(text):
    e = parse(text)
    assert parse(to_text(e)) is e


def test_literal_dtype_annotation_only_where_needed():
    x32 = var("x", "float32")
    assert to_text(x32 * 0.5) == "x * 0.5"
    assert to_text(const("0.5", "float32")) == "float32(0.5)"
    assert to_text(make("add", (const(1, "float32"), const(2, "float32")))) == \
        "float32(1) + float32(2)"
    assert to_text(make("mul", (var("y", "float32"), 2))) == "y * 2"


@settings(max_examples=500, deadline=None)
@given(st.integers(-(10 ** 30), 10 ** 30), st.integers(0, 80), st.integers(0, 40))
def test_fractions_print_exactly(n, twos, fives):
    q = Fraction(n, 2 ** twos * 5 ** fives)
    text = format_fraction(q)
    back = hex_float(text) if "0x" in text else Fraction(text)
    assert back == q


def test_python_floats_print_as_their_exact_value():
    c = const(0.1)  # the double nearest one tenth, not one tenth
    assert to_text(c) == "0x1.999999999999ap-4"
    assert to_text(const("0.1")) == "0.1"


@pytest.mark.parametrize("text,latex", [
    ("sqrt(x)", r"\sqrt{x}"),
    ("x / (y + 1)", r"\frac{x}{y + 1}"),
    ("exp(-x)", "e^{-x}"),
    ("(x + 1)**2", r"\left(x + 1\right)^{2}"),
    ("theta * alpha_1", r"\theta \cdot \alpha_{1}"),
    ("sin(x) * 2.5e-20", r"\operatorname{sin}\left(x\right) \cdot 2.5 \cdot 10^{-20}"),
    ("abs(x)", r"\left|x\right|"),
    ("pi * x", r"\pi \cdot x"),
    ("x <= 1", r"x \le 1"),
])
def test_latex(text, latex):
    assert to_latex(parse(text)) == latex
