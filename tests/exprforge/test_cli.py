"""The exprforge command: results on stdout (text or --json), user errors as one line on
stderr with exit status 2."""
import json
import subprocess
import sys

import numpy as np
import pytest

from exprforge.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_prints_the_value(capsys):
    code, out, err = run(capsys, "eval", "x*y + 1", "x=2", "y=3")
    assert code == 0 and err == ""
    assert "value    7" in out


def test_eval_json_and_arrays(capsys):
    code, out, _ = run(capsys, "eval", "x*2", "x=1,2,3", "--json")
    data = json.loads(out)
    assert code == 0 and data["value"] == [2.0, 4.0, 6.0] and data["dtype"] == "float64"


def test_check_reports_ulp_error(capsys):
    _, out, _ = run(capsys, "eval", "exp(x) - 1", "x=1e-5", "--dtype", "float32", "--check",
                    "--json")
    assert json.loads(out)["ulp_error"] > 1000
    _, out, _ = run(capsys, "eval", "expm1(x)", "x=1e-5", "--dtype", "float32", "--check",
                    "--json")
    assert json.loads(out)["correctly_rounded"] is True


def test_inputs_round_correctly_from_text(capsys):
    _, out, _ = run(capsys, "eval", "x", "x=0.1", "--dtype", "float32", "--json")
    assert np.float32(json.loads(out)["value"]) == np.float32(0.1)
    _, out, _ = run(capsys, "eval", "x", "x=0x1.8p1", "--json")
    assert json.loads(out)["value"] == 3.0


@pytest.mark.parametrize("argv", [
    ["eval", "foo(x)", "x=1"],
    ["eval", "x +", "x=1"],
    ["eval", "x + y", "x=1"],
    ["eval", "x", "x=1", "z=2"],
    ["eval", "x", "x"],
    ["eval", "x", "x=abc"],
    ["eval", "x < 1", "x=0", "--check"],
    ["bogus"],
    ["eval", "__import__('os').system('touch pwned')"],
    ["simplify", "x + 1", "--assume", "bigger:x"],
    ["simplify", "x +"],
])
def test_user_errors_are_one_line_and_exit_2(capsys, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exprforge: error:")
    assert "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_no_command_prints_help_and_exits_2(capsys):
    code, out, err = run(capsys)
    assert code == 2 and "usage" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "exprforge 0.1.0" in capsys.readouterr().out


def test_simplify_command(capsys):
    code, out, _ = run(capsys, "simplify", "(x + 0) * 1", "--json")
    data = json.loads(out)
    assert code == 0 and data["result"] == "x"
    assert data["result_cost"] <= data["input_cost"]
    assert data["stop_reason"] in ("saturated", "time_limit", "node_limit", "iteration_limit")


def test_console_script_runs_in_a_fresh_process():
    proc = subprocess.run([sys.executable, "-m", "exprforge.cli", "eval", "sqrt(x)", "x=4",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["value"] == 2.0
