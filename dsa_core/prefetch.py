"""One item ahead: the next chunk is computed while the caller shows this one."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def prefetch(items: Iterable[T], cancel: Callable[[], None], lock: threading.Lock | None = None) -> Iterator[T]:
    """The items of `items`, each next one computed in a worker thread while the caller handles
    the one it was given (the app's caller, Gradio, probes and remuxes each streamed segment in
    subprocesses, about as long as a chunk takes on a CPU).  At most one item is computed
    ahead, one at a time.  Closed early, it calls `cancel` (a generation then stops before its
    next chunk) and returns at once: the item in progress ends in the worker and is dropped.
    Gradio closes a stopped stream from its event loop, which waiting for a chunk would stall
    for every user.

    `lock`, shared by several streams, is held for each item: a stream started after another
    was closed computes its first item only once the dropped one has ended, so that two chunks
    never share the device (twice the activations of a large model on one GPU)."""
    end = object()
    it = iter(items)
    guard = lock if lock is not None else contextlib.nullcontext()

    def compute() -> T | object:
        with guard:
            return next(it, end)

    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch")
    try:
        pending = worker.submit(compute)
        while (item := pending.result()) is not end:
            pending = worker.submit(compute)
            yield item
    finally:
        cancel()
        worker.shutdown(wait=False)
