"""Blocking engine calls that Ctrl-C and a deadline can stop.

Python runs signal handlers on the main thread only, between bytecodes, so a query inside one long
native call ignores Ctrl-C until it returns (a DuckDB join ran on for 10 minutes). One way out per
kind of engine:
- `run_stoppable`: engines with a thread-safe stop (DuckDB's `interrupt()`) run in a worker thread
  while the calling thread waits for it in short steps, where Ctrl-C and the deadline reach it.
- `run_polling`: engines that poll Python's signal handlers while they work (pylance does, about
  every 100 ms, on the main thread) run on the calling thread; the deadline arrives as a simulated
  SIGINT, which they obey the same way.
"""

from __future__ import annotations

import _thread
import signal
import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")
STEP_S = 0.05  # the waiting thread wakes this often: SIGINT may land on an engine thread and not wake it
GRACE_S = 0.5  # how long a stopped engine may take to return before the caller goes on without it


class TimedOut(Exception):
    """The work ran past its deadline and was stopped; the caller says what to do in its own words."""


def run_stoppable(work: Callable[[], T], stop: Callable[[], None], timeout: float | None) -> T:
    """`work()`'s result; on Ctrl-C (KeyboardInterrupt) or after `timeout` seconds, `stop()` the engine,
    give it GRACE_S to return, and raise KeyboardInterrupt or TimedOut."""
    outcome: dict[str, object] = {}
    done = threading.Event()  # not Thread.join: a join cut short by Ctrl-C marks a running thread as finished

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed to the waiting thread, which decides what the user sees
            outcome["error"] = exc
        finally:
            done.set()

    deadline = None if timeout is None else time.monotonic() + timeout
    threading.Thread(target=target, name="forge-query", daemon=True).start()
    try:
        while not done.wait(STEP_S):
            if deadline is not None and time.monotonic() > deadline:
                stop()
                done.wait(GRACE_S)
                raise TimedOut(timeout)
    except KeyboardInterrupt:
        stop()
        done.wait(GRACE_S)
        raise
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def run_polling(work: Callable[[], T], timeout: float | None) -> T:
    """`work()`'s result, for an engine that polls Python's signal handlers: KeyboardInterrupt on Ctrl-C,
    TimedOut after `timeout` seconds, whatever error the engine turned the stop into. Off the main thread
    no signal reaches it: the caller gets control back at the deadline and the engine runs out alone."""
    if threading.current_thread() is not threading.main_thread():
        return run_stoppable(work, lambda: None, timeout)
    state = {"interrupted": False, "timed_out": False, "running": True}
    lock = threading.Lock()

    def on_sigint(signum: int, frame: object) -> None:
        state["interrupted"] = True
        raise TimedOut(timeout) if state["timed_out"] else KeyboardInterrupt

    def on_deadline() -> None:
        with lock:
            if state["running"]:
                state["timed_out"] = True
                _thread.interrupt_main()

    previous = signal.signal(signal.SIGINT, on_sigint)
    timer = threading.Timer(timeout, on_deadline) if timeout is not None else None
    try:
        if timer is not None:
            timer.start()
        return work()
    except BaseException:  # the engine reports a stop as its own error (pylance: "External error: KeyboardInterrupt")
        if state["timed_out"]:
            raise TimedOut(timeout) from None
        if state["interrupted"]:
            raise KeyboardInterrupt from None
        raise
    finally:
        try:
            with lock:
                state["running"] = False
            if timer is not None:
                timer.cancel()
        finally:  # even when a deadline that raced the end of the work is handled right here
            signal.signal(signal.SIGINT, previous)
