"""Ctrl-C and SIGTERM stop a command, but never in the middle of a tracking-store write.

Python raises a signal's exception wherever the main thread happens to be. Raised inside a
SQLite transaction of MLflow's store, it left that connection holding the write lock, so the
writes that end the run KILLED waited out SQLite's busy timeout and failed ("database is
locked": the run stayed RUNNING, exit 1). The handlers here raise at once, except inside
:func:`deferred` (the tracker wraps every store call in it), where the stop waits until the
call returns. A second Ctrl-C inside a deferred call still raises at once.

A stop raised where Python drops exceptions is not lost: a handler that runs inside a weakref
callback or a finaliser (the garbage collector's: SQLAlchemy's, ``WeakSet.remove``; traced in 5
of 20 SIGTERMs during set-up under load) has its exception printed as "ignored", and the run
trained on to exit 0. The stop stays *unhandled* until the tracker, the tuner or the command
handles it (:func:`handled`); :func:`check` (every store call, the Lightning loop's batches)
raises it again.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from medbench.errors import Interrupted

_depth = 0  # deferred() sections open (signal handlers run in the main thread only)
_pending: BaseException | None = None  # a stop waiting for its section to end
_unhandled: BaseException | None = None  # the last stop, until something handles it


_replaced: dict[int, Any] = {}  # signal -> the handler install() replaced


def install() -> None:
    """Handlers for SIGINT (KeyboardInterrupt, as Python's own) and SIGTERM (Interrupted)."""
    wanted = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        wanted.append(signal.SIGINT)
    for signum in wanted:
        _replaced.setdefault(signum, signal.getsignal(signum))
        signal.signal(signum, _handler)


def uninstall() -> None:
    """The handlers :func:`install` replaced, back: once a command's work is done, a stop ends
    the process as it would have before (SIGTERM's default: the process ends by the signal),
    never as an exception raised in the interpreter's exit (a traceback, exit 1)."""
    global _pending, _unhandled
    while _replaced:
        signum, handler = _replaced.popitem()
        signal.signal(signum, handler)
    _pending = _unhandled = None


def handled() -> None:
    """The stop raised is being handled (the run ends KILLED, the command says its line)."""
    global _unhandled
    _unhandled = None


def check() -> None:
    """Raises a stop that was raised before and never handled (in the main thread only)."""
    if _unhandled is not None and _depth == 0 and (
            threading.current_thread() is threading.main_thread()):
        raise _unhandled


def _handler(signum: int, _frame: object) -> None:
    global _pending, _unhandled
    stop = KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(
        signal.Signals(signum).name)
    _unhandled = stop
    if _depth == 0 or _pending is not None:  # not in a store call, or asked twice
        _pending = None
        raise stop
    _pending = stop


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section a signal does not interrupt: its stop is raised once the section ends."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield  # a signal interrupts the main thread only; a stop raised here would be lost
        return
    check()  # a stop swallowed since (its store call has not started: nothing half-written)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            stop, _pending = _pending, None
            raise stop


class Uninterrupted:
    """``target``'s methods, each called inside :func:`deferred` (an MLflow client)."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            with deferred():
                return value(*args, **kwargs)

        return call
