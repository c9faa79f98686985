"""Where fitness is evaluated: one `map(fn, items)` in front of a serial loop, a local
process pool or a Dask cluster, so a search never knows which one runs it.

    with make_executor(workers=4) as ex:            # or scheduler="tcp://host:8786"
        cache = FitnessCache()
        scores = evaluate_unique(ex, fitness, exprs, keys=exprs,  # Exprs are hash-consed
                                 cache=cache)

- `fn` must pickle (a top-level function, or an instance of a top-level class with
  __call__); Dask workers joined by address must be able to import its module. Workers
  are spawned, so a script needs the `if __name__ == "__main__":` guard.
- Results come back in input order; an exception raised by `fn` reaches the caller with
  its own type, whatever the executor.
- Pools and Dask ship about 4*workers batches, one task each: task overhead is paid per
  batch, not per candidate, and uneven batches still balance.
- Same seed, same result: a fitness function that needs randomness must seed it with
  `derive_seed(run_seed, key)`, never draw from a global generator; then its value does
  not depend on which process ran it, or in which order. Every `map` also leaves the
  caller's `random` and numpy's legacy global stream as it found them (Dask draws on
  `random` in the client process), so the search's own stream is the same with any
  executor.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import numbers
import os
import random
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import urlsplit

import numpy as np

KINDS = ("serial", "process", "dask")
_SCHEMES = ("tcp", "tls", "ws", "wss")


def derive_seed(*parts) -> int:
    """A 64-bit seed from parts (ints, floats, strs, bytes, bools, None, tuples of them),
    identical in every process and every Python run: blake2b, because hash() is salted
    per process. Objects whose repr holds an address would not be stable, so they are
    refused."""
    text = repr(tuple(_canonical(p) for p in parts)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


def _canonical(part):
    if part is None or isinstance(part, (str, bytes, bool)):
        return part
    if isinstance(part, numbers.Integral):      # np.int64(3) and 3 give the same seed
        return int(part)
    if isinstance(part, numbers.Real):
        return float(part)
    if isinstance(part, (tuple, list)):
        return tuple(_canonical(p) for p in part)
    raise TypeError(f"derive_seed takes numbers, strs, bytes, tuples, not {type(part).__name__}")


@contextlib.contextmanager
def preserve_random_state():
    """Restore Python's `random` and numpy's legacy global state on exit."""
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def split_batches(items: list, n_batches: int) -> list[list]:
    """Contiguous batches, at most n_batches, none empty, sizes differing by at most 1."""
    n = min(len(items), n_batches)
    if n == 0:
        return []
    size, extra = divmod(len(items), n)
    bounds = [i * size + min(i, extra) for i in range(n + 1)]
    return [items[a:b] for a, b in zip(bounds, bounds[1:])]


def _run_batch(fn, batch):
    """One task: fn over a batch (top level, so it pickles by reference)."""
    return [fn(item) for item in batch]


class Executor:
    """Base: `map` in input order, `close`, and use as a context manager."""

    workers: int = 1

    def map(self, fn, items) -> list:
        # Restored around every executor, serial too: otherwise a fn drawing from the
        # global stream would move the caller's stream only when it ran in-process.
        with preserve_random_state():
            return self._map(fn, list(items))

    def _map(self, fn, items: list) -> list:
        batches = split_batches(items, 4 * self.workers)
        done = self._run_batches(partial(_run_batch, fn), batches) if batches else []
        return [result for batch in done for result in batch]

    def _run_batches(self, task, batches: list[list]) -> list[list]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class SerialExecutor(Executor):
    """A plain loop in this process."""

    def _map(self, fn, items):
        return [fn(item) for item in items]


class ProcessExecutor(Executor):
    """A local process pool, started once and reused by every map."""

    def __init__(self, workers: int):
        self.workers = _check_workers(workers)
        self._pool = self._new_pool()

    def _new_pool(self):
        # spawn, not fork: forking a parent that runs LLVM/numba/torch threads can
        # deadlock the child. forkserver measured no faster for the one pool we start
        # (~1 s either way: workers importing numpy/numba/exprforge), and Windows lacks it.
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))

    def _run_batches(self, task, batches):
        if self._pool is None:
            raise RuntimeError("ProcessExecutor is closed")
        try:
            return list(self._pool.map(task, batches))
        except BrokenProcessPool:
            # a worker died (e.g. a crashing kernel): the next map gets a fresh pool
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            raise

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(Executor):
    """Dask: join a running scheduler by address, or start (and own) a LocalCluster of
    single-threaded worker processes. `workers` with an address only sets the batching
    width (default: the cluster's thread count when joined)."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 timeout: float = 10.0):
        if workers is not None:
            _check_workers(workers)
        if scheduler is not None:
            _check_address(scheduler)
        from distributed import Client, LocalCluster  # lazy: importing exprforge stays light
        self._cluster = self._client = None
        with preserve_random_state():
            if scheduler is None:
                # CRITICAL: a failing fn reaches the caller as its exception, so workers
                # logging it too is noise. The scheduler's HTTP server (health routes)
                # runs even without a dashboard: a free localhost port, not 8787.
                self._cluster = LocalCluster(
                    n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                    processes=True, dashboard_address=None, silence_logs=logging.CRITICAL,
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
                scheduler = self._cluster.scheduler_address
            try:   # set_as_default=False: later dask.compute calls don't use it
                self._client = Client(scheduler, timeout=timeout, set_as_default=False)
            except BaseException as err:
                self.close()
                if isinstance(err, OSError):   # distributed's "Timed out trying to connect"
                    raise ConnectionError(f"cannot reach the Dask scheduler at {scheduler} "
                                          f"within {timeout:g} s") from err
                raise
        self.workers = workers or max(1, sum(self._client.nthreads().values()))

    def _run_batches(self, task, batches):
        # pure=False: each call gets fresh keys, so an identical batch sent again in a
        # later generation is recomputed, never confused with the earlier one
        futures = self._client.map(task, batches, pure=False)
        try:
            return self._client.gather(futures)
        except BaseException:
            self._client.cancel(futures)
            raise

    def close(self):
        with preserve_random_state():
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:       # only a cluster this executor started
                self._cluster.close()
        self._client = self._cluster = None


def make_executor(workers: int | None = None, scheduler: str | None = None,
                  kind: str | None = None) -> Executor:
    """scheduler -> Dask joining it; kind="dask" -> a LocalCluster; kind="process" or
    workers > 1 -> a process pool; otherwise serial."""
    if workers is not None:
        _check_workers(workers)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown executor kind {kind!r}; expected one of {', '.join(KINDS)}")
    if scheduler is not None and kind not in (None, "dask"):
        raise ValueError(f"a scheduler address needs kind='dask', not kind={kind!r}")
    if kind == "serial" and workers not in (None, 1):
        raise ValueError(f"kind='serial' runs one worker, not workers={workers}")
    if scheduler is not None or kind == "dask":
        return DaskExecutor(workers, scheduler)
    if kind == "process" or (workers or 1) > 1:
        return ProcessExecutor(workers or os.cpu_count() or 1)
    return SerialExecutor()


def _check_workers(workers) -> int:
    if isinstance(workers, bool) or not isinstance(workers, numbers.Integral) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return int(workers)


def _check_address(address) -> None:
    parts = urlsplit(address) if isinstance(address, str) else None
    try:
        ok = (parts is not None and parts.scheme in _SCHEMES and bool(parts.hostname)
              and parts.port is not None and parts.path in ("", "/"))
    except ValueError:                           # a port that is not a number
        ok = False
    if not ok:
        raise ValueError(f"bad Dask scheduler address {address!r}; expected tcp://HOST:PORT")


@dataclass
class FitnessCache:
    """Results by key, kept across generations; hits are items served without a call."""

    results: dict = field(default_factory=dict)
    hits: int = 0
    misses: int = 0


def evaluate_unique(executor: Executor, fn, items, keys, cache: FitnessCache | None = None):
    """fn over items, aligned with them, calling fn once per key not yet in the cache
    (equal keys must mean equal fitness, e.g. a hash-consed Expr)."""
    items, keys = list(items), list(keys)
    if len(items) != len(keys):
        raise ValueError(f"{len(items)} items but {len(keys)} keys")
    cache = FitnessCache() if cache is None else cache
    todo = {}                                    # key -> its first item, in input order
    for item, key in zip(items, keys):
        if key not in cache.results and key not in todo:
            todo[key] = item
    cache.results.update(zip(todo, executor.map(fn, list(todo.values()))))
    cache.misses += len(todo)
    cache.hits += len(items) - len(todo)
    return [cache.results[key] for key in keys]
