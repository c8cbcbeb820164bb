"""The command lines, in four parts: `parsers` (train's and evaluate's argparse, the value
types they share), `config_file` (a --config file written by hand, read as those parsers read
options), `plan` (a command line resolved and checked into one frozen `Plan`) and `program`
(the train command: start-up steps, training, exit codes, what is printed).
`python -m purejaxdqn.train` and `python -m purejaxdqn.evaluate` are the entry points.
"""

from purejaxdqn.cli.parsers import EVALUATE_PROG, TRAIN_PROG, UsageError, evaluate_parser, train_parser
from purejaxdqn.cli.plan import Plan, make_plan
from purejaxdqn.cli.program import EXIT_NONFINITE, EXIT_PEER, EXIT_USAGE, EXIT_WRITE, main
from purejaxdqn.config import ConfigError

PROG = TRAIN_PROG

__all__ = ["EVALUATE_PROG", "EXIT_NONFINITE", "EXIT_PEER", "EXIT_USAGE", "EXIT_WRITE", "PROG", "TRAIN_PROG", "ConfigError",
           "Plan", "UsageError", "evaluate_parser", "main", "make_plan", "train_parser"]  # fmt: skip
