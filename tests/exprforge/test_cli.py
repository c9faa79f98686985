"""The exprforge command: results on stdout (text, or JSON with --json), a user error as one
line on stderr with exit status 2 and never a traceback. Called in-process through
main(argv), and once as the installed console script in a fresh process."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import exprforge as xf
from exprforge.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv) -> dict:
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0 and err == "", err
    return json.loads(out, parse_constant=_no_bare_constants)


def _no_bare_constants(name):
    raise AssertionError(f"--json wrote {name}, which is not JSON")


def assert_user_error(capsys, *argv) -> str:
    """Exit status 2, nothing on stdout, one line on stderr: returns that line."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (argv, code, out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("exprforge: error:"), err
    return lines[0]


# --- eval: values -----------------------------------------------------------------------

def test_eval_prints_the_value(capsys):
    code, out, err = run(capsys, "eval", "x*y + 1", "x=2", "y=3")
    assert code == 0 and err == ""
    assert "value    7" in out.splitlines()


def test_eval_json_fields(capsys):
    data = run_json(capsys, "eval", "x*y + 1", "x=2", "y=3")
    assert {"expr", "dtype", "inputs", "value"} <= set(data)
    assert data["expr"] == "x * y + 1"
    assert data["dtype"] == "float64"
    assert data["inputs"] == {"x": 2.0, "y": 3.0}
    assert data["value"] == 7.0


def test_comma_lists_give_arrays(capsys):
    data = run_json(capsys, "eval", "x*y + 1", "x=1,2,3", "y=10")
    assert data["inputs"] == {"x": [1.0, 2.0, 3.0], "y": 10.0}
    assert data["value"] == [11.0, 21.0, 31.0]
    data = run_json(capsys, "eval", "x*2", "x=1,2,3")
    assert data["value"] == [2.0, 4.0, 6.0] and data["dtype"] == "float64"


def test_check_finds_the_cancellation_in_exp_minus_one(capsys):
    data = run_json(capsys, "eval", "--dtype", "float32", "--check", "exp(x) - 1", "x=1e-5")
    assert data["dtype"] == "float32"
    assert data["ulp_error"] > 1000
    assert data["correctly_rounded"] is False
    assert data["value"] != data["exact_rounded"]


def test_check_expm1_is_correctly_rounded(capsys):
    data = run_json(capsys, "eval", "--dtype", "float32", "--check", "expm1(x)", "x=1e-5")
    assert data["correctly_rounded"] is True
    assert data["ulp_error"] <= 0.5
    assert data["value"] == data["exact_rounded"]
    code, out, _ = run(capsys, "eval", "--dtype", "float32", "--check", "expm1(x)", "x=1e-5")
    assert code == 0 and "correctly rounded" in out


def test_check_on_a_list(capsys):
    data = run_json(capsys, "eval", "--check", "x / 3", "x=1,2")
    assert data["correctly_rounded"] == [True, True]
    assert len(data["ulp_error"]) == 2


def test_decimal_inputs_are_rounded_correctly(capsys):
    data = run_json(capsys, "eval", "--dtype", "float32", "x", "x=0.1")
    assert data["inputs"]["x"] == float(np.float32(0.1))
    assert np.float32(data["value"]) == np.float32(0.1)
    # just above the midpoint of 1 and the next float32: straight to float32 rounds up,
    # through float64 first (the midpoint itself) ties to even, down to 1
    data = run_json(capsys, "eval", "--dtype", "float32", "x", "x=1.00000005960464477539062500001")
    assert data["inputs"]["x"] == 1 + 2 ** -23


def test_hex_float_inputs(capsys):
    assert run_json(capsys, "eval", "x", "x=0x1.8p1")["value"] == 3.0
    assert run_json(capsys, "eval", "x", "x=-0x1p-1")["value"] == -0.5
    assert run_json(capsys, "eval", "x", "x=0x1.8p1,0x1p0")["value"] == [3.0, 1.0]


def test_non_finite_results_are_json_strings(capsys):
    data = run_json(capsys, "eval", "1 / x", "x=0,-0,1")
    assert data["value"] == ["inf", "-inf", 1.0]
    assert run_json(capsys, "eval", "sqrt(x)", "x=-1")["value"] == "nan"


def test_integer_dtype(capsys):
    data = run_json(capsys, "eval", "--dtype", "int32", "n * 3", "n=7")
    assert data["dtype"] == "int32" and data["value"] == 21


# --- user errors --------------------------------------------------------------------------

@pytest.mark.parametrize("argv, mentions", [
    (["eval", "foo(x)", "x=1"], "foo"),                               # unknown function
    (["eval", "x +", "x=1"], "syntax"),                               # syntax error
    (["eval", "", "x=1"], "empty"),
    (["eval", "x + y", "x=1"], "y"),                                  # missing value
    (["eval", "x", "x=1", "z=2"], "z"),                               # not a variable
    (["eval", "x", "x1"], "NAME=VALUE"),                              # malformed pair
    (["eval", "x", "=1"], "NAME=VALUE"),
    (["eval", "x", "x=abc"], "abc"),                                  # bad value text
    (["eval", "x", "x=1,,2"], "x"),
    (["eval", "x", "x=1/0"], "x"),
    (["eval", "x", "x="], "x"),
    (["eval", "--dtype", "int32", "x", "x=99999999999"], "x"),       # out of range
    (["eval", "--check", "x < 1", "x=2"], "--check"),                 # bool-valued
    (["eval", "--dtype", "int32", "--check", "x", "x=1"], "--check"),  # int-valued
    (["frobnicate", "x"], "frobnicate"),                              # unknown subcommand
    (["eval", "--dtype", "float16", "x", "x=1"], "float16"),
    (["eval", "--prec", "many", "--check", "x", "x=1"], "many"),
    (["eval"], "expr"),
    (["simplify", "x + 1", "--assume", "bigger:x"], "bigger"),
    (["simplify", "x +"], "syntax"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, argv, mentions):
    line = assert_user_error(capsys, *argv)
    assert mentions in line


@pytest.mark.parametrize("payload", [
    "__import__('os').system('touch {f}')",
    "eval(\"__import__('os').system('touch {f}')\")",
    "().__class__.__base__.__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__()]",
    "open('{f}', 'w')",
])
def test_code_injection_is_refused(capsys, payload, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "PWNED"
    assert_user_error(capsys, "eval", payload.format(f=target))
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_reduction_of_a_scalar_is_a_user_error(capsys):
    """BUG: sum over the last axis of a scalar input raises numpy's AxisError out of main
    (a traceback, exit status 1) instead of a one-line user error."""
    assert_user_error(capsys, "eval", "sum(x)", "x=1")


# --- the parser itself ---------------------------------------------------------------------

def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code in (0, None)
    out, err = capsys.readouterr()
    assert out.strip() == f"exprforge {xf.__version__}"
    assert err == ""


def test_no_command_prints_help_to_stderr_and_exits_2(capsys):
    code, out, err = run(capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: exprforge") and "eval" in err


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        main(["eval", "--help"])
    assert info.value.code in (0, None)
    assert "NAME=VALUE" in capsys.readouterr().out


# --- simplify ------------------------------------------------------------------------------

def test_simplify_command(capsys):
    code, out, _ = run(capsys, "simplify", "(x + 0) * 1", "--json")
    data = json.loads(out)
    assert code == 0 and data["result"] == "x"
    assert data["result_cost"] <= data["input_cost"]
    assert data["stop_reason"] in ("saturated", "time_limit", "node_limit", "iteration_limit")


# --- the installed console script ----------------------------------------------------------

def test_console_script_in_a_fresh_process(tmp_path):
    script = Path(sys.executable).parent / "exprforge"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "exprforge.cli"]
    ok = subprocess.run(cmd + ["eval", "--json", "x*y + 1", "x=2", "y=3"], cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["value"] == 7.0
    assert ok.stderr == ""
    bad = subprocess.run(cmd + ["eval", "foo(x)", "x=1"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("exprforge: error:") and len(bad.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written into the current directory


def test_fractional_value_for_an_integer_variable_is_a_user_error(capsys):
    code = main(["eval", "x", "x=1.5", "--dtype", "int32"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "must be integers" in err


def test_astronomical_exponents_do_not_hang(capsys):
    code = main(["eval", "x", "x=1e99999999999", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["value"] == "inf"


def test_options_between_positionals(capsys):
    r = run_json(capsys, "eval", "x + y", "--dtype", "float32", "x=1", "y=2")
    assert r["dtype"] == "float32" and r["value"] == 3


def test_a_variable_given_twice_and_a_tiny_precision_are_user_errors(capsys):
    assert "given twice" in assert_user_error(capsys, "eval", "x + 1", "x=1", "x=2")
    assert "--prec" in assert_user_error(capsys, "eval", "x + 1", "x=1", "--check",
                                         "--prec", "0")


def test_interrupt_is_one_line_and_status_130(capsys, monkeypatch):
    import exprforge.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt
    table = dict(cli.commands())
    add, _, show, help_text = table["eval"]
    monkeypatch.setattr(cli, "commands", lambda: {**table, "eval": (add, interrupted, show,
                                                                     help_text)})
    code, out, err = run(capsys, "eval", "x + 1", "x=1")
    assert code == 130 and out == "" and err == "exprforge: interrupted\n"
