"""A one-line progress bar over chunks: steps, steps/s and the latest greedy eval return."""

from __future__ import annotations

import sys
from typing import TextIO


class ProgressBar:
    """Redraws one line on `stream` (stderr) with carriage returns. Disabled: prints nothing.

    `enabled=None` turns it on only when the stream is a terminal.
    """

    def __init__(self, total_steps: int, enabled: bool | None = None, stream: TextIO | None = None, width: int = 24):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = total_steps
        self.width = width

    def update(self, steps: int, steps_per_s: float, eval_return: float | None) -> None:
        if not self.enabled:
            return
        filled = int(self.width * steps / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        eval_text = "-" if eval_return is None else f"{eval_return:.1f}"
        self.stream.write(
            f"\r[{bar}] {steps:,}/{self.total:,} steps | {steps_per_s:,.0f} steps/s | eval {eval_text}   "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
