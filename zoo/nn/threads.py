"""How many threads an inference call uses: one per op, and a pool over independent pieces of work.

PyTorch runs every op on all its intra-op threads (one per core by default), each op a parallel region
that ends at a barrier. A convolutional codec runs thousands of small ops per second of audio; for
them the barriers cost more than the parallel work saves, and when another process keeps one core
busy every op waits for a descheduled thread: on two threads the codec ran 5-20x slower than on one
(issue 22, BENCHMARKS.md "Threads"). So such models run each op on one thread (`op_threads(1)`) and
spread independent work (chunks of a long file) over a pool of Python threads (`map_threads`): torch
releases the GIL inside ops, and a pool needs no barrier per op, so a busy core slows one piece, not
every op. The split of the work never depends on the thread count, so results are identical on any
number of threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterable, Iterator, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")

# the caller's thread count while a `one_thread_per_op` block runs its ops on one thread
_POOL: ContextVar[int | None] = ContextVar("zoo_pool_threads", default=None)


@contextmanager
def op_threads(n: int) -> Iterator[None]:
    """Run torch ops on `n` intra-op threads inside the block; the previous count is restored after.

    `torch.set_num_threads` is process-wide: a caller running other torch work in parallel threads
    sees the change for the duration of the block.
    """
    previous = torch.get_num_threads()
    if n == previous:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def map_threads(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """`[fn(item) for item in items]` with each op on one thread and the items over a thread pool.

    Args:
        fn: the work on one item; it runs with the caller's autograd mode (which is thread-local).
        items: independent pieces of work; results come back in their order.
        threads: pool size; default the thread count the caller had (inside a `one_thread_per_op`
            block, the count before it switched to one thread).

    The pools live for the process (starting threads costs more than a small call); a `map_threads`
    inside a pooled item runs its items in that worker, so nested calls never oversubscribe the cores.
    """
    items = list(items)
    threads = min(threads or _POOL.get() or torch.get_num_threads(), len(items))
    grad = torch.is_grad_enabled()

    def run(item: T) -> R:
        _WORKER.active = True
        try:
            with torch.set_grad_enabled(grad):
                return fn(item)
        finally:
            _WORKER.active = False

    with op_threads(1):
        if threads <= 1 or getattr(_WORKER, "active", False):
            return [fn(item) for item in items]
        return list(_executor(threads).map(run, items))


def _executor(threads: int) -> ThreadPoolExecutor:
    with _LOCK:
        if threads not in _EXECUTORS:
            _EXECUTORS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="zoo")
        return _EXECUTORS[threads]


_EXECUTORS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()
_WORKER = threading.local()  # .active: this thread is running an item of a pool
# a forked child (a DataLoader worker) has none of the parent's pool threads: start its own pools
os.register_at_fork(after_in_child=_EXECUTORS.clear)


@contextmanager
def one_thread_per_op() -> Iterator[None]:
    """Inside the block every op runs on one thread, and `map_threads` spreads work over as many
    Python threads as the caller had (nested blocks keep the outermost caller's count)."""
    token = _POOL.set(_POOL.get() or torch.get_num_threads())
    try:
        with op_threads(1):
            yield
    finally:
        _POOL.reset(token)

