"""`python -m purejaxdqn.train` (or the `purejaxdqn-train` console script): train a DQN agent
from the command line (options: purejaxdqn/cli.py)."""

import sys

from purejaxdqn.progress import early_status, mute_stderr


def main() -> int:
    """The process's command line: a first status line before JAX is imported (that alone takes
    seconds on a busy machine), then the CLI."""
    early_status(sys.argv[1:])
    from purejaxdqn.cli import main as cli_main

    status = cli_main()
    if status:
        mute_stderr()
    return status


if __name__ == "__main__":
    sys.exit(main())
