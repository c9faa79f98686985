"""exprforge regress and exprforge discover-ode: CSV in, a formula and a run directory out;
bad data is one line on stderr and exit status 2."""
import json

import numpy as np
import pandas as pd
import pytest

import exprforge as xf
from tests.exprforge.test_cli import assert_user_error, run, run_json

SMALL = ("--population", "16", "--generations", "4", "--ops", "add,sub,mul")


@pytest.fixture(autouse=True)
def fresh_store(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPRFORGE_CACHE_DIR", str(tmp_path / "store"))


def write_csv(path, **columns):
    pd.DataFrame(columns).to_csv(path, index=False)
    return str(path)


@pytest.fixture
def line_csv(tmp_path):
    x = np.linspace(-2, 3, 30)
    return write_csv(tmp_path / "line.csv", x=x, y=2 * x + 1)


def test_regress_finds_the_line_and_writes_its_run_directory(capsys, tmp_path, line_csv):
    out = tmp_path / "run"
    r = run_json(capsys, "regress", line_csv, "--target", "y", *SMALL, "--out", str(out))
    data = pd.read_csv(line_csv)
    predicted = xf.evaluate(xf.parse(r["expr"], dtype="float64"), {"x": data["x"].to_numpy()})
    y = data["y"].to_numpy()
    assert 1 - np.sum((predicted - y) ** 2) / np.sum((y - y.mean()) ** 2) > 0.999
    assert r["r2"] > 0.999 and r["features"] == ["x"] and r["target"] == "y"
    assert r["run_dir"] == str(out)
    for name in ("hall_of_fame.csv", "pareto.png", "checkpoint.pkl", "config.json",
                 "model.json"):
        assert (out / name).is_file(), name
    front = pd.read_csv(out / "hall_of_fame.csv")
    assert list(front.columns) == ["complexity", "loss", "equation", "score", "sympy"]
    assert len(front) == len(r["front"]) and front["complexity"].is_monotonic_increasing
    model = json.loads((out / "model.json").read_text())
    assert model["equation"] == r["equation"] and model["loss"] == r["loss"]
    assert {"complexity", "r2", "stopped", "seconds", "evaluations"} <= set(model)
    config = json.loads((out / "config.json").read_text())
    assert config["target"] == "y" and config["population"] == 16 and config["seed"] == 0
    assert config["noise_std"] is None


def test_regress_text_output_and_default_run_directory(capsys, tmp_path, line_csv):
    code, out, err = run(capsys, "regress", line_csv, "--target", "y", *SMALL)
    assert code == 0 and err == ""
    assert out.startswith("y = ") and "R^2" in out and "Pareto front" in out
    run_dir = out.strip().splitlines()[-1].removeprefix("run directory: ")
    assert run_dir.startswith(str(tmp_path / "store" / "runs" / "regress-line-"))


def test_resumed_regression_equals_an_uninterrupted_one(capsys, tmp_path):
    x = np.linspace(0, 2, 30)
    data = write_csv(tmp_path / "exp.csv", x=x, y=np.exp(x))   # no exact polynomial
    args = ("regress", data, "--target", "y", "--population", "12", "--ops", "add,mul")
    whole = run_json(capsys, *args, "--generations", "4", "--out", str(tmp_path / "a"))
    first = run_json(capsys, *args, "--generations", "2", "--out", str(tmp_path / "b"))
    assert first["generation"] == 2 and first["resumed_from"] is None
    rest = run_json(capsys, *args, "--generations", "4", "--out", str(tmp_path / "b"),
                    "--resume")
    assert rest["resumed_from"] == 3 and rest["generation"] == 4
    assert rest["front"] == whole["front"] and rest["equation"] == whole["equation"]
    line = assert_user_error(capsys, *args, "--generations", "5", "--out",
                             str(tmp_path / "b"), "--resume", "--seed", "1")
    assert "seed" in line
    assert "no checkpoint" in assert_user_error(capsys, *args, "--out", str(tmp_path / "c"),
                                                "--resume")
    assert "--out" in assert_user_error(capsys, *args, "--resume")


def test_resume_refuses_unreadable_or_unchecked_state(capsys, tmp_path, line_csv):
    args = ("regress", line_csv, "--target", "y", *SMALL)
    out = tmp_path / "run"
    run_json(capsys, *args, "--out", str(out))
    (out / "config.json").unlink()
    assert "config.json" in assert_user_error(capsys, *args, "--out", str(out), "--resume")
    run_json(capsys, *args, "--out", str(out))            # a new run: a fresh checkpoint
    (out / "checkpoint.pkl").write_bytes(b"not a pickle")
    assert "cannot be read" in assert_user_error(capsys, *args, "--out", str(out), "--resume")
    run_json(capsys, *args, "--out", str(out))            # a new run replaces a bad one
    assert run_json(capsys, *args, "--out", str(out), "--resume", "--generations", "5")


def test_warnings_are_one_line_each(capsys, tmp_path):
    x = np.linspace(-2, 3, 30)
    data = write_csv(tmp_path / "w.csv", x=x, c=np.ones(30), label=["a"] * 30, y=2 * x + 1)
    code, out, err = run(capsys, "regress", data, "--target", "y", *SMALL, "--json",
                         "--out", str(tmp_path / "run"))
    assert code == 0
    assert json.loads(out)["features"] == ["x", "c"]
    lines = err.splitlines()
    assert len(lines) == 2 and all(s.startswith("exprforge: warning:") for s in lines)
    assert "'label' is not numeric" in err and "'c' is constant" in err


@pytest.mark.parametrize("columns, argv, mentions", [
    (None, ("--target", "y"), "no such file"),
    (dict(x=[1.0] * 8, y=[2.0] * 8), ("--target", "z"), "columns: x, y"),
    (dict(x=[1, 2, 3, np.nan, 5, 6], y=[1, 2, 3, 4, 5, 6.0]), ("--target", "y"), "NaN"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], y=[1, 2, np.inf, 4, 5, 6.0]), ("--target", "y"), "NaN"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], s=list("abcdef"), y=[1, 2, 3, 4, 5, 6.0]),
     ("--target", "y", "--features", "x,s"), "not numeric"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], y=list("abcdef")), ("--target", "y"), "not numeric"),
    (dict(s=list("abcdef"), y=[1, 2, 3, 4, 5, 6.0]), ("--target", "y"), "no numeric"),
    (dict(x=[1, 2, 3.0], y=[1, 2, 3.0]), ("--target", "y"), "at least"),
    (dict(x=[1.0] * 8, y=[1, 2, 3, 4, 5, 6, 7, 8.0]), ("--target", "y"), "constant"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], y=[1, 2, 3, 4, 5, 6.0]),
     ("--target", "y", "--features", "x,w"), "'w'"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], y=[1, 2, 3, 4, 5, 6.0]),
     ("--target", "y", "--features", "x,y"), "also be a feature"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], y=[1, 2, 3, 4, 5, 6.0]),
     ("--target", "y", "--ops", "add,frobnicate"), "frobnicate"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], y=[1, 2, 3, 4, 5, 6.0]),
     ("--target", "y", "--workers", "0"), "--workers"),
    (dict(x=[1, 2, 3, 4, 5, 6.0], y=[1, 2, 3, 4, 5, 6.0]),
     ("--target", "y", "--noise-std", "-1"), "noise_std"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, columns, argv, mentions):
    path = tmp_path / "data.csv"
    if columns is not None:
        write_csv(path, **columns)
    line = assert_user_error(capsys, "regress", str(path), *argv, "--out",
                             str(tmp_path / "run"))
    assert mentions in line, line
    assert not (tmp_path / "run").exists()   # nothing ran: no run directory left


@pytest.mark.parametrize("text, mentions", [
    ("", "empty"), ("x,y\n", "no rows"), ('x,y\n1,2\n3,"4\n', "cannot read")])
def test_empty_and_broken_csv_files(capsys, tmp_path, text, mentions):
    path = tmp_path / "data.csv"
    path.write_text(text)
    assert mentions in assert_user_error(capsys, "regress", str(path), "--target", "y")


def test_a_directory_is_not_a_csv(capsys, tmp_path):
    assert_user_error(capsys, "regress", str(tmp_path), "--target", "y")


# --- discover-ode ---------------------------------------------------------------------------

@pytest.fixture
def decay_csv(tmp_path):
    t = np.linspace(0, 4, 41)
    rows = [pd.DataFrame({"t": t, "x": x0 * np.exp(-0.5 * t), "run": k})
            for k, x0 in enumerate((1.0, 2.0))]
    path = tmp_path / "decay.csv"
    pd.concat(rows).to_csv(path, index=False)
    return str(path)


def test_discover_ode_finds_exponential_decay(capsys, tmp_path, decay_csv):
    out = tmp_path / "ode"
    r = run_json(capsys, "discover-ode", decay_csv, "--time", "t", "--trajectory", "run",
                 *SMALL, "--out", str(out))
    assert r["states"] == ["x"]                 # t and run are not states
    rhs = xf.parse(r["fits"]["x"]["expr"], dtype="float64")
    x = np.linspace(0.2, 2, 7)
    assert np.allclose(xf.evaluate(rhs, {"x": x}), -0.5 * x, rtol=1e-3)
    assert json.loads((out / "equations.json").read_text())["x"]["equation"] == \
        r["equations"]["x"]
    for name in ("hall_of_fame_x.csv", "pareto_x.png", "config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["trajectory"] == "run"


@pytest.mark.parametrize("argv, mentions", [
    (("--time", "time"), "columns: t, x, run"),
    (("--time", "t", "--trajectory", "batch"), "'batch'"),
    (("--time", "t", "--states", "x,t"), "cannot be a state"),
])
def test_discover_ode_bad_columns(capsys, decay_csv, argv, mentions):
    assert mentions in assert_user_error(capsys, "discover-ode", decay_csv, *argv)


def test_workers_and_a_dask_scheduler_give_the_serial_result(capsys, tmp_path):
    x = np.linspace(0, 2, 30)
    data = write_csv(tmp_path / "exp.csv", x=x, y=np.exp(x))
    args = ("regress", data, "--target", "y", "--population", "12", "--generations", "2",
            "--ops", "add,mul")
    serial = run_json(capsys, *args, "--out", str(tmp_path / "serial"))
    pool = run_json(capsys, *args, "--workers", "2", "--out", str(tmp_path / "pool"))
    assert pool["front"] == serial["front"]
    import logging

    from distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                      dashboard_address=None, silence_logs=logging.CRITICAL) as cluster:
        dask = run_json(capsys, *args, "--scheduler", cluster.scheduler_address,
                        "--out", str(tmp_path / "dask"))
    assert dask["front"] == serial["front"]
    assert "tcp://" in assert_user_error(capsys, *args, "--scheduler", "nowhere")


def test_discover_ode_data_errors_leave_no_run_directory(capsys, tmp_path, decay_csv):
    out = tmp_path / "ode"
    line = assert_user_error(capsys, "discover-ode", decay_csv, "--time", "t", "--states", "x",
                             *SMALL, "--out", str(out))   # two trajectories, no --trajectory
    assert "increase" in line and not out.exists()


def test_an_out_path_that_is_a_file(capsys, tmp_path, line_csv):
    (tmp_path / "taken").write_text("")
    assert "run directory" in assert_user_error(capsys, "regress", line_csv, "--target", "y",
                                                "--out", str(tmp_path / "taken"))
