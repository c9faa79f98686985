"""Memory for kernels' large results: blocks kept and reused once nothing refers to the
array on them (see _Blocks)."""
from __future__ import annotations

import ctypes
import math
import threading
import weakref

import numpy as np

from exprforge.engine.dtypes import DTYPES

_DTYPES = {d: np.dtype(d) for d in DTYPES}   # dtype name -> NumPy dtype


class _Blocks:
    """Memory for large results, kept for the next result of its size once nothing
    refers to it any more (the array, its views, a tensor on it). Freed to the C library
    instead, it may go back to the system and every page of the next result fault in
    fresh (about 1 us a 4 KB page here: a layer step on 2 MB arrays lost 1.2 ms to it,
    or not, depending on the allocator's history)."""
    SMALLEST = 1 << 18    # bytes; smaller arrays come from NumPy
    KEPT = 1 << 28        # bytes kept free at most
    ALIGN = 64            # each array starts on such a boundary

    def __init__(self):
        # re-entrant: a collection while the lock is held may free a kept array, whose
        # finalizer gives its block back on the same thread
        self.free, self.kept, self.lock = {}, 0, threading.RLock()

    def empty(self, shape, dtype):
        dtype = _DTYPES.get(dtype) or np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < self.SMALLEST:
            return np.empty(shape, dtype)
        size = nbytes + self.ALIGN   # room to start on a 64-byte boundary (vector stores)
        with self.lock:
            blocks = self.free.get(size)
            block = blocks.pop() if blocks else None
            if block is not None:
                self.kept -= size
        if block is None:   # NumPy's memory: it asks for huge pages from 4 MB on
            block = np.empty(size, np.uint8)
        view = (ctypes.c_char * size).from_buffer(block)   # lives as long as the array
        weakref.finalize(view, self._give_back, block, size).atexit = False
        start = -ctypes.addressof(view) % self.ALIGN
        return np.frombuffer(view, dtype, math.prod(shape), start).reshape(shape)

    def _give_back(self, block, size: int):
        with self.lock:
            if self.kept + size <= self.KEPT:
                self.free.setdefault(size, []).append(block)
                self.kept += size


empty = _Blocks().empty
