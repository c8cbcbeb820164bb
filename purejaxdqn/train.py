"""`python -m purejaxdqn.train`: train a DQN agent from the command line (options: purejaxdqn/cli.py)."""

import sys

from purejaxdqn.cli import main

if __name__ == "__main__":
    sys.exit(main())
