"""Execute notebooks/quickstart.ipynb top to bottom and save it with its outputs, so a reader on
GitHub sees the results without running it. The test suite runs the same function with
`quick=True` (reduced budgets) and does not save.

    python notebooks/execute.py            # full budget, rewrites notebooks/quickstart.ipynb
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent / "quickstart.ipynb"


def execute(path: Path = NOTEBOOK, quick: bool = False, timeout_s: int = 1800):
    """The executed notebook (nbformat node); `quick` sets PUREJAXDQN_NOTEBOOK_QUICK=1 for the kernel.
    Runs in a temporary directory; no timing metadata is recorded (stable diffs)."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    env = {"PUREJAXDQN_NOTEBOOK_QUICK": "1" if quick else "0", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        with tempfile.TemporaryDirectory() as cwd:
            client = nbclient.NotebookClient(nb, timeout=timeout_s, kernel_name="python3", record_timing=False,
                                             resources={"metadata": {"path": cwd}})  # fmt: skip
            client.execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def main() -> int:
    import nbformat

    nb = execute()
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK} with its outputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
