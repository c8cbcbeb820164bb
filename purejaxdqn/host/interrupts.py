"""SIGINT (Ctrl-C) and SIGTERM as one exception, so a stopped run ends like any other error:
pending checkpoint saves finish, and the command line prints one line and how to resume."""

from __future__ import annotations

import contextlib
import signal
import threading


class Interrupted(BaseException):
    """The process got SIGINT or SIGTERM. A BaseException, like KeyboardInterrupt, so that
    `except Exception` blocks do not swallow it."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


_deferring = {"depth": 0, "pending": None}


@contextlib.contextmanager
def interruptible(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, the given signals raise Interrupted in the main thread (outside the
    main thread, where Python cannot install handlers, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _deferring["depth"]:
            _deferring["pending"] = signum
            return
        raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred():
    """A signal that arrives within the block raises Interrupted only when the block ends, so
    work that must not be cut in the middle (starting or finishing a checkpoint save) completes."""
    _deferring["depth"] += 1
    try:
        yield
    finally:
        _deferring["depth"] -= 1
        signum = _deferring["pending"]
        if not _deferring["depth"] and signum is not None:
            _deferring["pending"] = None
            raise Interrupted(signum)
