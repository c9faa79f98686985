"""Derivative estimation for ODE discovery (evolve/tasks/ode.py): accuracy on sin(t)
with and without noise for each method, trajectories never mixed across a boundary,
row order and trimming, and every bad input refused with a ValueError naming it."""
import numpy as np
import pytest

from exprforge.evolve.tasks.ode import estimate_derivatives, split_trajectories


def sine(n=400, noise=0.0, seed=0, t0=0.0, t1=10.0):
    t = np.linspace(t0, t1, n)
    x = np.sin(t) + noise * np.random.default_rng(seed).standard_normal(n) / np.sqrt(2)
    return t, x.reshape(-1, 1)


def rms_rel(d, t, cut=0):
    err = d.dX[:, 0] - np.cos(d.t)
    sl = slice(cut, len(err) - cut)
    return np.sqrt(np.mean(err[sl] ** 2) / np.mean(np.cos(d.t) ** 2))


@pytest.mark.parametrize("method, bounds", [
    ("savgol", (1e-5, 5e-3, 2e-2)), ("spline", (1e-2, 1.5e-2, 4e-2)),
    ("finite", (1e-3, 0.2, 2.0))])
def test_accuracy_on_noisy_sine(method, bounds):
    for noise, bound in zip((0.0, 1e-3, 1e-2), bounds):
        t, X = sine(noise=noise)
        d = estimate_derivatives(t, X, method)
        assert d.method == method
        assert rms_rel(d, t) < bound, (method, noise, rms_rel(d, t))


def test_smoothing_beats_differences_under_noise_and_smooths_states():
    t, X = sine(noise=1e-2)
    smooth = estimate_derivatives(t, X, "savgol")
    assert rms_rel(smooth, t) < 0.1 * rms_rel(estimate_derivatives(t, X, "finite"), t)
    clean = np.sin(t)
    assert np.std(smooth.X[:, 0] - clean) < 0.5 * np.std(X[:, 0] - clean)


def test_auto_picks_savgol_on_uniform_and_spline_on_nonuniform_times():
    t, X = sine(noise=1e-3)
    assert estimate_derivatives(t, X).method == "savgol"
    tn = np.sort(np.random.default_rng(1).uniform(0, 10, 400))
    d = estimate_derivatives(tn, np.sin(tn).reshape(-1, 1))
    assert d.method == "spline"
    assert rms_rel(d, tn, cut=20) < 1e-3
    with pytest.raises(ValueError, match="uniformly spaced"):
        estimate_derivatives(tn, np.sin(tn).reshape(-1, 1), "savgol")


def test_fixed_window():
    t, X = sine(noise=1e-3)
    assert rms_rel(estimate_derivatives(t, X, "savgol", window=41), t) < 1e-2
    with pytest.raises(ValueError, match="window"):
        estimate_derivatives(t, X, "savgol", window=40)


def test_trajectories_are_not_mixed():
    # two pieces whose join is a jump: a derivative across it would be huge
    t1, X1 = sine(200)
    t2, X2 = sine(200, t0=0.0, t1=10.0)
    X2 = X2 + 5.0
    for method in ("savgol", "spline", "finite"):
        d = estimate_derivatives([t1, t2], [X1, X2], method)
        assert d.X.shape == (400, 1) and list(np.bincount(d.trajectory)) == [200, 200]
        assert np.max(np.abs(d.dX[:, 0] - np.cos(d.t))) < 0.05, method
        # the same data as rows with labels, interleaved at random: same derivatives
        pos = np.random.default_rng(0).permutation(400)
        a, b = np.sort(pos[:200]), np.sort(pos[200:])
        T, XX, labels = np.empty(400), np.empty((400, 1)), np.empty(400, int)
        T[a], T[b], XX[a], XX[b], labels[a], labels[b] = t1, t2, X1, X2, 7, 3
        lab = estimate_derivatives(T, XX, method, trajectory=labels)
        np.testing.assert_array_equal(lab.t, T)
        np.testing.assert_allclose(lab.dX[a], d.dX[:200], atol=1e-12)
        np.testing.assert_allclose(lab.dX[b], d.dX[200:], atol=1e-12)


def test_labels_in_row_order():
    t, X = sine(100)
    labels = np.tile([0, 1], 100)        # two interleaved trajectories of the same sine
    T, XX = np.repeat(t, 2), np.repeat(X, 2, axis=0)
    d = estimate_derivatives(T, XX, "savgol", trajectory=labels)
    np.testing.assert_array_equal(d.t, T)
    np.testing.assert_array_equal(d.trajectory, labels)
    np.testing.assert_allclose(d.dX[0::2], d.dX[1::2])


def test_trim():
    t, X = sine(100)
    d = estimate_derivatives([t, t], [X, X], "savgol", trim=5)
    assert len(d.t) == 180 and d.t[0] == t[5] and d.t[89] == t[94]
    assert len(estimate_derivatives(t, X, trim=0.1).t) == 80


@pytest.mark.parametrize("times", ["uniform", "nonuniform"])
def test_discard_drops_the_rows_where_a_second_estimator_disagrees(times):
    # a front (tanh) too sharp for the sampling next to a slow state: the derivative is
    # wrong near the front only, and those rows are the ones dropped
    t = np.linspace(0, 10, 100) if times == "uniform" else \
        np.sort(np.random.default_rng(1).uniform(0, 10, 100))
    X = np.column_stack([np.tanh(6 * (t - 5)), np.sin(t)])
    truth = np.column_stack([6 / np.cosh(6 * (t - 5)) ** 2, np.cos(t)])
    every = estimate_derivatives(t, X, trim=3)
    kept = estimate_derivatives(t, X, trim=3, discard=0.25)
    assert len(kept.t) == len(every.t) - int(0.25 * len(every.t))
    assert np.all(np.diff(kept.t) > 0) and set(kept.t) <= set(every.t)

    def errors(d):
        rows = np.searchsorted(t, d.t)
        return np.max(np.abs(d.dX - truth[rows]) / np.sqrt(np.mean(truth ** 2, axis=0)), axis=1)
    assert errors(kept).max() < errors(every).max() / 10
    assert not set(every.t[np.argsort(errors(every))[-5:]]) & set(kept.t)  # the worst went
    # the gap between the estimators on the kept rows bounds the error left (it is the
    # less accurate estimator's error, mostly), and it is small where both are good
    assert every.error is None and kept.error.shape == (2,)
    actual = np.sqrt(np.mean((kept.dX - truth[np.searchsorted(t, kept.t)]) ** 2, axis=0))
    assert np.all(actual < 3 * kept.error) and np.all(kept.error < 1e-2 * np.abs(truth).max(0))


@pytest.mark.parametrize("args, kwargs, match", [
    ((np.arange(10.0), np.zeros((9, 1))), {}, "10 times but X has 9"),
    ((np.arange(10.0), np.zeros(10)), {}, "2-D"),
    ((np.arange(4.0), np.zeros((4, 1))), {}, "at least 5"),
    ((np.array([0, 1, 2, 2, 3.0]), np.zeros((5, 1))), {}, "duplicate time"),
    ((np.array([0, 1, 3, 2, 4.0]), np.zeros((5, 1))), {}, "decreasing time"),
    ((np.arange(6.0), np.array([[0], [1], [np.nan], [3], [4], [5.0]])), {}, "NaN"),
    ((np.array([0, 1, np.inf, 3, 4, 5.0]), np.zeros((6, 1))), {}, "NaN or infinite"),
    ((np.arange(6.0), np.zeros((6, 1))), {"trajectory": [0, 0, 0, 1, 1, 1]}, "label 0"),
    ((np.arange(6.0), np.zeros((6, 1))), {"trajectory": [0, 1]}, "one label per row"),
    (([np.arange(6.0)], [np.zeros((6, 1)), np.zeros((6, 1))]), {}, "1 time arrays"),
    (([np.arange(6.0), np.arange(6.0)], [np.zeros((6, 1)), np.zeros((6, 2))]), {},
     "different numbers of states"),
    ((np.arange(6.0), np.zeros((6, 1))), {"method": "magic"}, "method must be"),
    ((np.arange(6.0), np.zeros((6, 1))), {"trim": 3}, "drops them all"),
    ((np.arange(6.0), np.zeros((6, 1))), {"trim": -1}, "trim must be"),
    ((np.arange(6.0), np.zeros((6, 1))), {"discard": 1.0}, "discard must be"),
])
def test_bad_input(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        estimate_derivatives(*args, **kwargs)


def test_second_trajectory_named_in_errors():
    t = np.arange(6.0)
    with pytest.raises(ValueError, match="trajectory 1"):
        split_trajectories([t, t[::-1]], [np.zeros((6, 1))] * 2)
