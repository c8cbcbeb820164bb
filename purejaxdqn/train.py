"""`python -m purejaxdqn.train` (or the `purejaxdqn-train` console script): train a DQN agent
from the command line (options: purejaxdqn/cli/parsers.py)."""

import gc
import os
import sys

from purejaxdqn.host.progress import WALL, early_status, mute_stderr, process_age_s


def main() -> int:
    """The process's command line: a first status line before JAX is imported (that alone takes
    seconds on a busy machine), then the CLI. The process's wall clock starts here (the
    interpreter's own start-up before it read from /proc): summary.json's "wall_split_s"."""
    WALL.start(process_age_s())
    gc.disable()  # the imports make objects by the million and no garbage to speak of; cli.program turns it back on
    early_status(sys.argv[1:])
    with WALL.phase("imports"):
        from purejaxdqn.cli import main as cli_main

    status = cli_main()
    # Where the interpreter's shutdown runs (multi-host), it would collect every object the
    # imports made (JAX, flax, orbax, ...), over a second: frozen, they are left to the exit.
    gc.freeze()
    if status:
        # A failed or stopped run ends here, at once: the interpreter's shutdown could meet a
        # computation still in flight (a signal during the first chunk's start) and crash
        # (SIGSEGV) after the error line, and JAX's distributed shutdown waits for every process
        # and aborts on a lost one. Every file of ours is closed by now.
        mute_stderr()
    elif _joined_others():
        return status  # JAX's distributed shutdown (at exit) lets the processes leave together
    # Single-process, a finished run ends here too: its files, checkpoints, trackers and envs
    # are closed; the rest of the shutdown (JAX's and XLA's teardown, threads) took ~0.07 s.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def _joined_others() -> bool:
    """Whether this process is one of a multi-host run (never imports JAX itself)."""
    distributed = sys.modules.get("purejaxdqn.host.distributed")
    return distributed is not None and distributed.multi_host()


if __name__ == "__main__":
    sys.exit(main())
