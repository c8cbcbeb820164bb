"""What the training command says on stderr while it works, built on rich: a status line from
process start (importing, compiling N runs, compiled in X s), then a bar with env steps,
steps/s, the latest eval return and the time left. When stderr is not a terminal (a log file,
a cluster job) and --progress is not given: a plain line per chunk instead of the bar (and no
status lines).

`WALL`, the process's wall clock: where the training command's own wall time goes (imports,
JAX's start, planning, compile, run, saves, summary and plot), for summary.json's
"wall_split_s".

Only the standard library is imported at module level: `train.py` uses `early_status` and
`WALL` before JAX is imported.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from typing import TextIO


def process_age_s() -> float | None:
    """Seconds since this process was created (fork), from /proc/self/stat's start time (in
    clock ticks, 10 ms, since boot) against CLOCK_BOOTTIME; None where there is no /proc.
    This counts the interpreter's own start-up, before any Python line of ours runs."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()  # the name in (...) may hold spaces
        start_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start_s)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class WallClock:
    """Named spans of the process's wall time (perf_counter seconds), each with the CPU seconds
    the process spent meanwhile (all its threads; a busy machine stretches wall time, far less
    CPU time). `start` at the entry point's first line; `phase(name)` times a span (a name used
    again adds up); `split` gives every span, `interpreter` (process creation to `start`, from
    /proc) and `other` (the rest), summing to the wall time so far. Unstarted (a library call,
    a notebook): empty."""

    def __init__(self) -> None:
        self.t0: float | None = None
        self.interpreter_s = 0.0
        self.spans: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def start(self, interpreter_s: float | None = None) -> None:
        self.t0, self.spans = time.perf_counter(), {}
        self.interpreter_s = interpreter_s or 0.0
        self.cpu = {"interpreter": time.process_time()}

    @property
    def started(self) -> bool:
        return self.t0 is not None

    def add(self, name: str, seconds: float, cpu_seconds: float | None = None) -> None:
        if self.started:
            self.spans[name] = self.spans.get(name, 0.0) + max(seconds, 0.0)
            if cpu_seconds is not None:
                self.cpu[name] = self.cpu.get(name, 0.0) + max(cpu_seconds, 0.0)

    @contextlib.contextmanager
    def phase(self, name: str):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0, time.process_time() - c0)

    def wall_s(self) -> float:
        return self.interpreter_s + time.perf_counter() - self.t0 if self.started else 0.0

    def split(self, **spans: float) -> tuple[float, dict[str, float]]:
        """(wall seconds so far, {span: seconds}) with `spans` (measured elsewhere, e.g. compile
        and run) added to the clock's own; "other" is what no span covers. ({} unstarted.)"""
        if not self.started:
            return 0.0, {}
        wall = self.wall_s()
        parts = {"interpreter": self.interpreter_s, **self.spans}
        for name, seconds in spans.items():
            parts[name] = parts.get(name, 0.0) + max(seconds, 0.0)
        parts["other"] = max(wall - sum(parts.values()), 0.0)
        return wall, parts

    def cpu_split(self) -> dict[str, float]:
        """CPU seconds of the clock's own spans, and "total" so far."""
        return {**self.cpu, "total": time.process_time()} if self.started else {}


WALL = WallClock()  # the process's own; started by train.py


def mute_stderr() -> None:
    """After a command's last line (its one error line): nothing more reaches the user. A failed
    checkpoint restore leaves tensorstore reads in flight that can fail seconds later on a busy
    machine, each printing a traceback while the process exits."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    sys.stderr = open(devnull, "w", closefd=False)


def format_duration(seconds: float | None) -> str:
    """7 -> '0:07', 3723 -> '1:02:03'; unknown (None, inf, NaN) -> '?'."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(max(seconds, 0.0))), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_seconds(steps: int, total: int, steps_per_s: float, runs: int = 1) -> float | None:
    """Seconds left at the latest chunk's speed (None before any speed is known). `steps` and
    `total` count one run's env steps; `steps_per_s` is summed over all `runs` (every device
    and process), as the bar shows it: the runs advance together, each at steps_per_s / runs."""
    if steps_per_s <= 0 or not math.isfinite(steps_per_s):
        return None
    return max(total - steps, 0) * max(runs, 1) / steps_per_s


def describe(steps: int, total: int, steps_per_s: float, eval_return: float | None, runs: int = 1) -> str:
    """The text beside the bar: '60,000/200,000 steps | 41,000 steps/s | eval 212.4 | ETA 0:03'
    (steps of each run; steps/s of all runs together)."""
    eval_text = "-" if eval_return is None else f"{eval_return:.1f}"
    eta = format_duration(eta_seconds(steps, total, steps_per_s, runs))
    return f"{steps:,}/{total:,} steps | {steps_per_s:,.0f} steps/s | eval {eval_text} | ETA {eta}"


def count(n: int, noun: str) -> str:
    """1 -> '1 run', 4 -> '4 runs' ('process' -> 'processes')."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}{'es' if noun.endswith('s') else 's'}"


def runs_text(num_runs: int) -> str:
    return count(num_runs, "run")


def shown(enabled: bool | None, stream: TextIO) -> bool:
    """`enabled` None (no --progress/--no-progress): on exactly when `stream` is a terminal."""
    return stream.isatty() if enabled is None else enabled


def early_status(argv: list[str], text: str = "importing JAX ...") -> None:
    """A first status line at process start, before the slow imports (the CLI's own choice of
    --progress/--no-progress applies, read from `argv` directly)."""
    enabled = True if "--progress" in argv else False if "--no-progress" in argv else None
    if shown(enabled, sys.stderr) and not {"-h", "--help", "--version"} & set(argv):
        sys.stderr.write(f"purejaxdqn: {text}\n")
        sys.stderr.flush()


class ProgressBar:
    """Status lines, then one bar redrawn on `stream` (stderr), for `runs` runs trained together.

    `enabled=None`: the bar on a terminal; on any other stream (a log file) a plain line per
    chunk instead, so `tail -f` shows the run (no status lines: a command that fails still
    ends in its one error line). `enabled=False`: nothing.
    """

    def __init__(self, total_steps: int, enabled: bool | None = None, stream: TextIO | None = None, runs: int = 1):
        self.stream = stream or sys.stderr
        self.enabled = shown(enabled, self.stream)
        self.lines = enabled is None and not self.enabled
        self.total, self.runs = total_steps, runs
        self._console = self._spinner = self._bar = self._task = None

    def _rich_console(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    def status(self, text: str) -> None:
        """A transient line with a spinner while something slow runs (e.g. 'compiling 4 runs ...')."""
        if not self.enabled:
            return
        self._stop_spinner()
        self._spinner = self._rich_console().status(f"purejaxdqn: {text}")
        self._spinner.start()

    def note(self, text: str) -> None:
        """A permanent line (e.g. 'compiled 4 runs in 3.2 s'); ends the spinner."""
        if not self.enabled:
            return
        self._stop_spinner()
        self._rich_console().print(f"purejaxdqn: {text}", markup=False)

    def update(self, steps: int, steps_per_s: float, eval_return: float | None) -> None:
        text = describe(steps, self.total, steps_per_s, eval_return, self.runs)
        if self.lines:
            self._line(text)
        if not self.enabled:
            return
        self._stop_spinner()
        if self._bar is None:
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(BarColumn(bar_width=24), TextColumn("{task.description}"), console=self._rich_console())
            self._task = self._bar.add_task("", total=self.total)
            self._bar.start()
        self._bar.update(self._task, completed=steps, description=text)

    def _line(self, text: str) -> None:
        self.stream.write(f"purejaxdqn: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        self._stop_spinner()
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _stop_spinner(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
            self._spinner = None
