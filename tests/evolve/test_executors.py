"""Fitness executors: serial, process pool and Dask give the same results in the same
order, dedup and caching call fn once per key, errors keep their type, and the caller's
random stream is untouched. One LocalCluster and one pool serve the whole module."""
import logging
import os
import random
import subprocess
import sys
import time

import numpy as np
import pytest

from exprforge.evolve.executors import (
    DaskExecutor, FitnessCache, ProcessExecutor, SerialExecutor, derive_seed,
    evaluate_unique, make_executor, preserve_random_state, split_batches,
)

RUN_SEED = 20240611
KINDS = ["serial", "process", "dask"]


# --- top-level callables: workers import this module to unpickle them ---------------

def noisy_fitness(item):
    """A fitness needing randomness: seeded from (run seed, key), as the docs require."""
    key, x = item
    rng = np.random.default_rng(derive_seed(RUN_SEED, key))
    return float(x * rng.standard_normal() + rng.uniform())


class Scale:
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, x):
        return self.factor * x


class Counter:
    """Records every call (meaningful in-process, i.e. with the serial executor)."""

    def __init__(self):
        self.calls = []

    def __call__(self, x):
        self.calls.append(x)
        return x * 10


class FitnessBoom(Exception):
    pass


def boom_on_7(x):
    if x == 7:
        raise FitnessBoom(f"bad candidate {x}")
    return x


def draws_global_random(x):
    return random.random() + x   # a misbehaving fn: uses the global stream


def pid(_):
    return os.getpid()


def exits_abruptly(_):
    os._exit(3)      # a worker dying, as a crashing compiled kernel would


# --- fixtures ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.CRITICAL,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as c:
        yield c


@pytest.fixture(scope="module")
def pools(cluster):
    """One executor of each kind; Dask joins the module's cluster by its address."""
    with ProcessExecutor(2) as proc, DaskExecutor(scheduler=cluster.scheduler_address) as dask:
        yield {"serial": SerialExecutor(), "process": proc, "dask": dask}


@pytest.fixture(params=KINDS)
def ex(request, pools):
    return pools[request.param]


# --- same results, same order ----------------------------------------------------------

def test_same_results_in_order_for_every_executor(ex):
    items = [(f"expr{i}", i * 0.5) for i in range(50)]
    expected = [noisy_fitness(it) for it in items]
    assert ex.map(noisy_fitness, items) == expected
    assert ex.map(Scale(3), range(50)) == [3 * i for i in range(50)]   # callable instance


@pytest.mark.parametrize("n", [0, 1, 3, 9])
def test_few_or_no_items(ex, n):
    assert ex.map(Scale(2), range(n)) == [2 * i for i in range(n)]


@pytest.mark.parametrize("n", range(14))
@pytest.mark.parametrize("n_batches", [1, 2, 5, 8])
def test_split_batches(n, n_batches):
    items = list(range(n))
    batches = split_batches(items, n_batches)
    assert [x for b in batches for x in b] == items
    assert len(batches) == min(n, n_batches)
    sizes = [len(b) for b in batches]
    assert all(s >= 1 for s in sizes) and (not sizes or max(sizes) - min(sizes) <= 1)


def test_process_pool_is_reused(pools):
    proc = pools["process"]
    seen = set(proc.map(pid, range(20))) | set(proc.map(pid, range(20)))
    assert len(seen) <= proc.workers and os.getpid() not in seen


# --- errors ------------------------------------------------------------------------------

def test_exception_in_fn_keeps_its_type(ex):
    with pytest.raises(FitnessBoom, match="bad candidate 7"):
        ex.map(boom_on_7, range(20))
    assert ex.map(boom_on_7, range(5)) == list(range(5))    # still usable afterwards


def test_closed_process_executor_refuses_work():
    proc = ProcessExecutor(1)
    proc.close()
    with pytest.raises(RuntimeError, match="closed"):
        proc.map(Scale(1), [1])


def test_process_pool_recovers_after_a_worker_dies():
    from concurrent.futures.process import BrokenProcessPool
    with ProcessExecutor(1) as proc:
        with pytest.raises(BrokenProcessPool):
            proc.map(exits_abruptly, [1])
        assert proc.map(Scale(2), [1, 2]) == [2, 4]


# --- dedup and cache -------------------------------------------------------------------

def test_dedup_calls_fn_once_per_distinct_key():
    counter = Counter()
    items = [3, 1, 3, 2, 1, 3]
    out = evaluate_unique(SerialExecutor(), counter, items, keys=[str(i) for i in items])
    assert out == [30, 10, 30, 20, 10, 30]
    assert counter.calls == [3, 1, 2]


def test_dedup_hit_counts(ex):
    items = [(f"k{i % 7}", i % 7) for i in range(40)]
    cache = FitnessCache()
    out = evaluate_unique(ex, noisy_fitness, items, keys=[k for k, _ in items], cache=cache)
    assert out == [noisy_fitness(it) for it in items]
    assert (cache.misses, cache.hits) == (7, 33)


def test_cache_carries_across_calls(ex):
    cache = FitnessCache()
    first = evaluate_unique(ex, Scale(2), [1, 2, 3], keys=["a", "b", "c"], cache=cache)
    second = evaluate_unique(ex, Scale(2), [3, 4, 1], keys=["c", "d", "a"], cache=cache)
    assert (first, second) == ([2, 4, 6], [6, 8, 2])
    assert (cache.misses, cache.hits) == (4, 2)

    counter = Counter()                                   # serial: count the real calls
    evaluate_unique(SerialExecutor(), counter, [1, 2], keys=["x", "y"], cache=cache)
    evaluate_unique(SerialExecutor(), counter, [2, 5, 1], keys=["y", "z", "x"], cache=cache)
    assert counter.calls == [1, 2, 5]


def test_keys_must_align_with_items():
    with pytest.raises(ValueError, match="2 items but 1 keys"):
        evaluate_unique(SerialExecutor(), Scale(1), [1, 2], keys=["a"])


# --- determinism -----------------------------------------------------------------------

def test_caller_random_stream_unaffected(ex):
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    ex.map(Scale(1.5), range(200))          # batches over 10 items: Dask samples them
    ex.map(draws_global_random, range(30))
    assert (random.random(), np.random.random()) == expected


def test_preserve_random_state_restores():
    random.seed(1)
    before = random.getstate()
    with preserve_random_state():
        random.random()
        np.random.random()
    assert random.getstate() == before


def test_derive_seed_is_stable_across_processes():
    code = ("from exprforge.evolve.executors import derive_seed;"
            "print(derive_seed(5, 'x*x', 2.5, (1, b'a')))")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={**os.environ, "PYTHONHASHSEED": s}).stdout
            for s in ("1", "2")}
    assert outs == {f"{derive_seed(5, 'x*x', 2.5, (1, b'a'))}\n"}


def test_derive_seed_values():
    s = derive_seed(RUN_SEED, "x+1")
    assert 0 <= s < 2**64
    assert s != derive_seed(RUN_SEED, "x+2") and s != derive_seed(RUN_SEED + 1, "x+1")
    assert derive_seed(1, "2") != derive_seed(1, 2)          # types are part of the seed
    assert derive_seed(np.int64(3), "e") == derive_seed(3, "e")
    with pytest.raises(TypeError, match="object"):
        derive_seed(object())


# --- Dask: joining, owning, unreachable ------------------------------------------------

def test_dask_joins_existing_cluster(cluster, pools):
    with DaskExecutor(scheduler=cluster.scheduler_address) as joined:
        assert joined.workers == 2
        assert joined.map(Scale(4), range(5)) == [0, 4, 8, 12, 16]
    assert pools["dask"].map(Scale(1), [9]) == [9]      # leaving did not stop the cluster


def test_dask_owns_and_closes_its_local_cluster():
    with make_executor(workers=1, kind="dask") as ex:
        assert isinstance(ex, DaskExecutor) and ex.workers == 1
        assert ex.map(noisy_fitness, [("a", 1.0)]) == [noisy_fitness(("a", 1.0))]
        owned = ex._cluster
    assert owned.status.name == "closed"


def test_unreachable_scheduler_fails_clearly():
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=r"tcp://127\.0\.0\.1:1 within"):
        DaskExecutor(scheduler="tcp://127.0.0.1:1", timeout=1)
    assert time.monotonic() - start < 30      # an error, not a hang


# --- make_executor and argument checking -----------------------------------------------

def test_make_executor_picks_the_kind(cluster):
    assert isinstance(make_executor(), SerialExecutor)
    assert isinstance(make_executor(workers=1), SerialExecutor)
    for kwargs in ({"workers": 2}, {"kind": "process", "workers": 1}):
        with make_executor(**kwargs) as ex:
            assert isinstance(ex, ProcessExecutor)
    with make_executor(scheduler=cluster.scheduler_address) as ex:
        assert isinstance(ex, DaskExecutor) and ex._cluster is None


@pytest.mark.parametrize("kwargs", [
    {"workers": 0}, {"workers": -2}, {"workers": 1.5}, {"workers": True},
    {"kind": "threads"}, {"kind": "serial", "workers": 3},
    {"scheduler": "tcp://127.0.0.1:8786", "kind": "process"},
    {"scheduler": "localhost"}, {"scheduler": "tcp://"}, {"scheduler": "tcp://127.0.0.1"},
    {"scheduler": "http://127.0.0.1:8786"}, {"scheduler": "tcp://127.0.0.1:port"},
    {"scheduler": 8786},
])
def test_bad_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError) as err:
        make_executor(**kwargs)
    assert "\n" not in str(err.value)


def test_import_exprforge_does_not_import_dask():
    code = ("import sys, exprforge, exprforge.evolve.executors;"
            "assert not {'dask', 'distributed'} & set(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)

