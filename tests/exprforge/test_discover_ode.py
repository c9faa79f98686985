"""exprforge.discover_ode: a damped oscillator recovered from noisy samples of three
trajectories with a fixed seed (generations bind, not time, so it is deterministic); the
compiled right-hand side integrates with solve_ivp and follows the true system; the
model prints, serializes and pickles; bad input is refused before any search."""
import json
import pickle

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import exprforge as xf
from exprforge.ode import ODEModel, discover_ode

SMALL = dict(population=100, generations=20, random_state=0)
TINY = dict(population=30, generations=3, random_state=0)


def oscillator(t, s):
    return [s[1], -s[0] - 0.1 * s[1]]


def samples(starts=([1.0, 0.0], [0.0, 1.5], [-1.2, 0.5]), n=201, noise=1e-3, seed=0):
    rng = np.random.default_rng(seed)
    ts, Xs = [], []
    for y0 in starts:
        t = np.linspace(0, 10, n)
        X = solve_ivp(oscillator, (0, 10), y0, t_eval=t, rtol=1e-10, atol=1e-12).y.T
        ts.append(t)
        Xs.append(X + noise * np.std(X, axis=0) * rng.standard_normal(X.shape))
    return ts, Xs


@pytest.fixture(scope="module")
def model():
    ts, Xs = samples()
    return discover_ode(ts, Xs, ["x", "y"], **SMALL)


def test_recovers_the_oscillator(model):
    assert model.names == ["x", "y"] and set(model.exprs) == {"x", "y"}
    grid = np.stack(np.meshgrid(np.linspace(-1.5, 1.5, 13), np.linspace(-1.5, 1.5, 13)))
    states = grid.reshape(2, -1)
    found = model.rhs(0.0, states)                  # vectorized: (states, points)
    true = np.array(oscillator(0.0, states))
    for i, name in enumerate(model.names):
        rel = np.sqrt(np.mean((found[i] - true[i]) ** 2) / np.mean(true[i] ** 2))
        assert rel < 0.02, (name, model.equations[name], rel)
    # the regressors agree with the compiled right-hand side
    for i, name in enumerate(model.names):
        pred = model.regressors[name].predict(states.T)
        np.testing.assert_allclose(pred, found[i], rtol=1e-12, atol=1e-12)


def test_each_regressor_gets_the_derivative_error_as_noise_std(model):
    from exprforge.evolve.tasks.ode import estimate_derivatives
    ts, Xs = samples()
    d = estimate_derivatives(ts, Xs, trim=0.05, discard=0.2)
    assert [model.regressors[n].noise_std for n in model.names] == list(d.error)
    assert all(0 < e < 0.1 for e in d.error)   # 1e-3 relative noise on states of size ~1


def test_rhs_integrates_and_follows_the_truth(model):
    y = model.rhs(0.0, np.array([0.3, -0.2]))
    assert y.shape == (2,)
    np.testing.assert_allclose(y, oscillator(0, [0.3, -0.2]), rtol=0.02, atol=2e-3)
    t = np.linspace(0, 10, 101)
    sol = solve_ivp(model.rhs, (0, 10), [1.0, 0.0], t_eval=t, rtol=1e-8)
    assert sol.success
    truth = solve_ivp(oscillator, (0, 10), [1.0, 0.0], t_eval=t, rtol=1e-10, atol=1e-12).y
    assert np.max(np.abs(sol.y - truth)) < 0.02
    sim = model.simulate(t, [1.0, 0.0])
    assert sim.shape == (101, 2) and np.max(np.abs(sim - truth.T)) < 0.02


def test_printing_and_serialization(model):
    lines = str(model).splitlines()
    assert lines[0].startswith("dx/dt = ") and lines[1].startswith("dy/dt = ")
    assert "dx/dt" in repr(model)
    d = json.loads(json.dumps(model.to_dict()))
    assert list(d) == ["x", "y"]
    assert all(set(v) == {"equation", "loss", "complexity"} for v in d.values())
    assert d["y"]["loss"] < 1e-3
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.rhs(0, [0.3, -0.2]), model.rhs(0, [0.3, -0.2]))


def test_same_seed_same_model_and_exported():
    assert xf.discover_ode is discover_ode and "discover_ode" in xf.__all__
    ts, Xs = samples(n=60)
    a = discover_ode(ts, Xs, **TINY)
    b = discover_ode(ts, Xs, **TINY)
    assert a.names == ["x0", "x1"]
    assert str(a) == str(b) and a.to_dict() == b.to_dict()


def test_labels_dataframe_and_constant_rhs():
    import pandas as pd
    t = np.linspace(0, 2, 40)
    frames = [pd.DataFrame({"a": t + c, "b": np.exp(-t) * (1 + c)}) for c in (0.0, 1.0)]
    frame = pd.concat(frames, ignore_index=True)
    labels = np.repeat([0, 1], 40)
    m = discover_ode(np.concatenate([t, t]), frame, trajectory=labels, **TINY)
    assert isinstance(m, ODEModel) and m.names == ["a", "b"]
    np.testing.assert_allclose(m.rhs(0.0, frame.to_numpy().T)[0], 1.0, atol=1e-6)  # da/dt
    m.exprs["a"], m._kernels = xf.const(1.0, "float64"), None   # a kernel returning 0-d
    y = m.rhs(0.0, [0.5, 0.7])
    assert y.shape == (2,) and y[0] == 1.0
    out = m.rhs(0.0, np.ones((2, 5)))
    assert out.shape == (2, 5) and np.all(out[0] == 1.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(names=["x"]), "1 names for 2 states"),
    (dict(names=["x", "x"]), "distinct"),
    (dict(time_budget=-1.0), "time_budget"),
    (dict(derivative="magic"), "method must be"),
    (dict(population=0), "population"),
])
def test_bad_input(kwargs, match):
    ts, Xs = samples(starts=([1.0, 0.0],), n=20)
    with pytest.raises(ValueError, match=match):
        discover_ode(ts, Xs, **{**TINY, **kwargs})


def test_bad_data():
    t = np.linspace(0, 1, 10)
    with pytest.raises(ValueError, match="2-D"):
        discover_ode(t, np.sin(t), **TINY)
    with pytest.raises(ValueError, match="NaN"):
        discover_ode(t, np.c_[t, np.full(10, np.nan)], **TINY)
    with pytest.raises(ValueError, match="at least 5"):
        discover_ode(t[:3], np.c_[t, t][:3], **TINY)
    m = discover_ode(t, np.c_[t, t ** 2], **TINY)
    with pytest.raises(ValueError, match="y has shape"):
        m.rhs(0.0, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="y0 has shape"):
        m.simulate(t, [1.0])
