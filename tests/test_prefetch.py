"""dsa_core.prefetch: one item computed ahead, in a worker thread, and nothing outliving it."""

import threading
import time

import pytest

from dsa_core.prefetch import prefetch


def test_the_next_item_is_computed_while_the_caller_handles_this_one():
    started = [threading.Event() for _ in range(4)]

    def items():
        for k in range(4):
            started[k].set()
            yield k

    out = prefetch(items(), cancel=lambda: None)
    assert next(out) == 0
    assert started[1].wait(timeout=10)  # not asked for yet, and under way
    assert not started[2].is_set()  # one ahead, no more
    assert list(out) == [1, 2, 3]


def test_closed_early_it_cancels_and_returns_while_the_item_in_progress_ends_in_the_worker():
    cancelled, second, release = threading.Event(), threading.Event(), threading.Event()
    finished = []

    def items():
        k = 0
        while not cancelled.is_set():
            if k == 1:
                second.set()
                release.wait(timeout=30)
            finished.append(k)
            yield k
            k += 1

    out = prefetch(items(), cancel=cancelled.set)
    assert next(out) == 0
    assert second.wait(timeout=10)
    out.close()  # item 1 is held up: closing must not wait for it
    assert cancelled.is_set() and finished == [0]
    release.set()
    deadline = time.monotonic() + 10
    while [t for t in threading.enumerate() if t.name.startswith("prefetch")] and time.monotonic() < deadline:
        time.sleep(0.01)
    assert finished == [0, 1]  # item 1 ended in the worker; none after it
    assert not [t for t in threading.enumerate() if t.name.startswith("prefetch")]


def test_an_error_in_the_worker_reaches_the_caller():
    def items():
        yield 0
        raise ValueError("chunk 1 failed")

    out = prefetch(items(), cancel=lambda: None)
    assert next(out) == 0
    with pytest.raises(ValueError, match="chunk 1 failed"):
        next(out)


def test_a_shared_lock_holds_the_next_stream_until_the_dropped_item_has_ended():
    lock = threading.Lock()
    held, release, second_started = threading.Event(), threading.Event(), threading.Event()

    def first():
        yield 0
        held.set()
        release.wait(timeout=30)
        yield 1

    def second():
        second_started.set()
        yield "a"

    out = prefetch(first(), cancel=lambda: None, lock=lock)
    assert next(out) == 0
    assert held.wait(timeout=10)
    out.close()  # item 1 is still being computed, holding the lock
    nxt = prefetch(second(), cancel=lambda: None, lock=lock)
    waiting = threading.Thread(target=lambda: next(nxt))
    waiting.start()
    time.sleep(0.3)
    assert not second_started.is_set()  # waits for the dropped item
    release.set()
    waiting.join(timeout=10)
    assert second_started.is_set() and not waiting.is_alive()
