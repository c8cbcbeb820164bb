"""SIGINT (Ctrl-C) and SIGTERM as one exception, so a stopped run ends like any other error:
pending checkpoint saves finish, and the command line prints one line and how to resume."""

from __future__ import annotations

import contextlib
import signal
import sys
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


_deferring = {"depth": 0, "pending": None, "holding": False}


@contextlib.contextmanager
def interruptible(signals=(signal.SIGINT, signal.SIGTERM)):
    """Within the block, the given signals raise Interrupted in the main thread (outside the
    main thread, where Python cannot install handlers, nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if _deferring["depth"]:  # a save is starting or finishing: it completes first
            _deferring["pending"] = signum
        elif _deferring["holding"] and _deferring["pending"] is None:  # the first: finish the chunk
            _deferring["pending"] = signum
            if sys.stderr.isatty():  # someone pressed Ctrl-C: say why it is not instant
                print(f"purejaxdqn: {signal.Signals(signum).name}: stopping once the chunk in flight is done and saved "
                  "(again to stop now)", file=sys.stderr, flush=True)  # fmt: skip
        else:
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
        if not _deferring["depth"] and not _deferring["holding"]:
            raise_pending()


@contextlib.contextmanager
def held_to_chunk_end():
    """Within the block, a first signal only marks the run to stop (`pending`): the chunk
    loop finishes the chunk in flight, saves it and then calls `raise_pending`, so a stopped run
    keeps its work and leaves no computation running while the process exits. A second signal
    stops at once."""
    _deferring["holding"] = True
    try:
        yield
    finally:
        _deferring["holding"] = False


def pending() -> bool:
    """Whether a signal arrived that has not raised yet."""
    return _deferring["pending"] is not None


def raise_pending() -> None:
    """Raise Interrupted for the signal that arrived (if one did) and forget it."""
    signum, _deferring["pending"] = _deferring["pending"], None
    if signum is not None:
        raise Interrupted(signum)
