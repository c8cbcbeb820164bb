"""The static schedule of a chunk: which vectorized env steps are followed by update rounds,
and which by an evaluation, fixed before anything is traced.

Which env steps cross an update boundary (`update_every`) or an eval boundary (`eval_every`)
depends only on static settings, so the compiled chunk can be laid out as straight-line scans
instead of a branch inside every env step (on a GPU a `lax.cond` or a loop with a traced trip
count costs a host round trip each time it runs). The one traced part, `learning_starts`, only
masks update rounds (see loop.py).

A chunk is cut into *segments*: `steps` env steps, then `rounds` update rounds after the last
of them (a segment ends at every env step that crosses an update or eval boundary). The
segments between two evaluations form an *eval block*. Both lists are run-length compressed
into repeated patterns, so the compiled program holds each distinct segment of a pattern once:

    chunk    = ((repeats, (eval block, ...)), ...)        eval after each eval block
    block    = ((repeats, (Segment, ...)), ...), has_eval

This layout is the same for every chunk only when a chunk's env steps are a whole number of
update rounds, and either a whole number of eval intervals or a whole fraction of one. In the
second case every eval boundary falls on a chunk's end: the chunk holds no evaluation, and one
branch after it (`eval_at_end`, once per chunk, not per env step) evaluates where its last env
step crossed a boundary or ended the run. `static_schedule` returns None otherwise (the run then
needs the branching step).
"""

from __future__ import annotations

from typing import NamedTuple

# The most distinct segments the compiled chunk may hold (each one is a copy of the env step
# and of the update in the program): beyond this the compile would grow for no speed.
MAX_SEGMENTS = 16


class Segment(NamedTuple):
    steps: int  # vectorized env steps, scanned
    rounds: int  # update rounds after the last of them (each `gradient_steps` updates)


class EvalBlock(NamedTuple):
    runs: tuple  # ((repeats, (Segment, ...)), ...)
    has_eval: bool  # evaluate after the block (every block of a chunk but perhaps a last one)


class Schedule(NamedTuple):
    runs: tuple  # ((repeats, (EvalBlock, ...)), ...): the whole chunk
    eval_at_end: bool = False  # chunks shorter than an eval interval: evaluate after the chunk where due

    @property
    def num_segments(self) -> int:
        """Distinct segments in the compiled program (what its size grows with)."""
        return sum(len(run) for _, blocks in self.runs for block in blocks for _, run in block.runs)


def rounds_crossed(before: int, after: int, every: int) -> int:
    """Multiples of `every` in (before, after]: the boundaries one vectorized step crosses."""
    return after // every - before // every


def compress(seq: list) -> tuple:
    """Run-length encode `seq` as ((repeats, pattern), ...): at each position the pattern of at
    most MAX_SEGMENTS items that repeats the most times (the shortest of equals), so the
    program holds few items and loops over many."""
    out, i = [], 0
    while i < len(seq):
        best = (0, ())
        for p in range(1, min(MAX_SEGMENTS, len(seq) - i) + 1):
            pattern, n = seq[i : i + p], 1
            while seq[i + n * p : i + (n + 1) * p] == pattern:
                n += 1
            if n > best[0]:
                best = (n, tuple(pattern))
        out.append(best)
        i += best[0] * len(best[1])
    return tuple(out)


def chunk_events(num_envs: int, iterations: int, update_every: int, eval_every: int) -> list[tuple[int, bool]]:
    """(update rounds crossed, eval boundary crossed) of each env step of the first chunk."""
    return [(rounds_crossed(i * num_envs, (i + 1) * num_envs, update_every),
             rounds_crossed(i * num_envs, (i + 1) * num_envs, eval_every) > 0) for i in range(iterations)]  # fmt: skip


def static_schedule(num_envs: int, iterations_per_chunk: int, update_every: int, eval_every: int) -> Schedule | None:
    """The chunk's schedule, or None where chunks differ (their env steps are not a whole number
    of update rounds, or neither a whole number nor a whole fraction of an eval interval) or the
    program would hold over MAX_SEGMENTS segments."""
    chunk_steps = num_envs * iterations_per_chunk
    if not chunk_steps_alike(chunk_steps, update_every, eval_every):
        return None
    blocks, segments, steps = [], [], 0
    for rounds, evaluates in chunk_events(num_envs, iterations_per_chunk, update_every, eval_every):
        steps += 1
        if rounds or evaluates:
            segments.append(Segment(steps, rounds))
            steps = 0
        if evaluates:
            blocks.append(EvalBlock(compress(segments), True))
            segments = []
    if steps:  # not reached: a chunk ends on an update round
        segments.append(Segment(steps, 0))
    if segments:
        blocks.append(EvalBlock(compress(segments), False))
    schedule = Schedule(compress(blocks), eval_at_end=chunk_steps % eval_every != 0)
    return schedule if schedule.num_segments <= MAX_SEGMENTS else None


def chunk_steps_alike(chunk_steps: int, update_every: int, eval_every: int) -> bool:
    """Whether every chunk of `chunk_steps` env steps has the first one's update rounds and
    evaluations at the same places (the evaluations possibly only after some chunks' ends)."""
    return chunk_steps % update_every == 0 and (chunk_steps % eval_every == 0 or eval_every % chunk_steps == 0)


def chunk_schedule(config) -> Schedule | None:
    """The static schedule of `config`'s chunks, or None where they need the branching step."""
    return static_schedule(config.num_envs, config.iterations_per_chunk, config.update_every, config.eval_every)


def uses_static_loop(config) -> bool:
    """Whether `config` compiles the static chunk (its `loop` setting, 'auto' resolved)."""
    return config.loop == "static" or (config.loop == "auto" and chunk_schedule(config) is not None)


def why_not_static(config) -> str:
    """One line on why `config`'s chunks have no static schedule."""
    chunk_steps = config.num_envs * config.iterations_per_chunk
    if not chunk_steps_alike(chunk_steps, config.update_every, config.eval_every):
        return (f"a static chunk needs each chunk's {chunk_steps} env steps (--total-steps over --num-chunks, whole "
                f"vectorized steps of --num-envs) to be a whole number of update rounds (--update-every "
                f"{config.update_every}) and a whole number or a whole fraction of an eval interval (--eval-every "
                f"{config.eval_every})")  # fmt: skip
    return f"the static chunk would hold more than {MAX_SEGMENTS} distinct segments of env steps and updates"
