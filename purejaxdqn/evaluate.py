"""`python -m purejaxdqn.evaluate RUN_DIR --episodes N`: evaluation of a saved run.

Loads the policy from the run's newest checkpoint (or `--step N`; parameters only) and plays N
whole episodes (epsilon-greedy at the run's --eval-epsilon unless --epsilon) on the run's gymnax environment, vectorized and jitted; prints mean/std
return. `--gif PATH` also draws one greedy episode as an animated GIF, `--video PATH` as an MP4 or a
GIF by its extension (purejaxdqn/host/video.py); given both, the same episode goes to both.
"""

from __future__ import annotations

import sys

from purejaxdqn.cli.parsers import EVALUATE_PROG as PROG


def main(argv: list[str] | None = None) -> int:
    """The evaluate command; returns the exit status (0, 2 for bad input or a run it cannot
    read, 1 for a video that could not be written). As a process's command line (`argv` None)
    nothing follows its error line."""
    status = _main(argv)
    if status and argv is None:
        from purejaxdqn.host.progress import mute_stderr

        mute_stderr()
    return status


def _main(argv: list[str] | None) -> int:
    from purejaxdqn.cli.parsers import UsageError

    try:
        args = _parse(argv)
    except UsageError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    return _evaluate(args)


def _parse(argv: list[str] | None):
    """The options, checked (UsageError naming the option)."""
    from purejaxdqn.cli.parsers import UsageError, evaluate_parser
    from purejaxdqn.config import INT32_LIMIT, SEED_LIMIT

    args = evaluate_parser(__doc__.splitlines()[0]).parse_args(argv)
    if not 0 < args.episodes < INT32_LIMIT:
        raise UsageError(f"--episodes: must be a positive integer below 2**31, got {args.episodes}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UsageError(f"--seed: must be an integer in [0, 2**32), got {args.seed}")
    if args.step is not None and args.step < 1:
        raise UsageError(f"--step: must be a positive checkpoint number, got {args.step}")
    if args.epsilon is not None and not 0 <= args.epsilon <= 1:  # NaN fails too
        raise UsageError(f"--epsilon: must be in [0, 1], got {args.epsilon}")
    if not 0 < args.max_frames <= 100_000:
        raise UsageError(f"--max-frames: must be in [1, 100000], got {args.max_frames}")
    for option, path in _videos(args):
        _check_video_path(option, path)
    return args


def _videos(args) -> list[tuple[str, object]]:
    """(option, path) of each video asked for: --gif, --video."""
    return [(option, path) for option, path in (("--gif", args.gif), ("--video", args.video)) if path is not None]


def _check_video_path(option: str, path) -> None:
    """`path` names a file of the option's formats (--gif: .gif; --video: video.FORMATS), new or
    one to replace, in a directory this process can write; an .mp4 needs its writer installed."""
    import os

    from purejaxdqn.cli.parsers import UsageError
    from purejaxdqn.host import video

    formats = (".gif",) if option == "--gif" else video.FORMATS
    suffix = path.suffix.lower()
    if suffix not in formats or not path.parent.is_dir():
        raise UsageError(f"{option}: {path} must be a {' or '.join(formats)} file in an existing directory")
    if path.is_dir():
        raise UsageError(f"{option}: {path} is a directory, not a file")
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"{option}: {path} cannot be written (no write permission in {path.parent})")
    if suffix == ".mp4" and (missing := video.mp4_writer_missing()):
        raise UsageError(f"{option}: {missing}")


def _evaluate(args) -> int:
    """Load the policy, play the episodes, print the returns (and draw the GIF)."""
    import numpy as np

    from purejaxdqn.host import runner
    from purejaxdqn.host.checkpointing import CheckpointError, quiet_logs
    from purejaxdqn.host.policy import describe_run, load_policy
    from purejaxdqn.host.run_directory import RunDirError

    quiet_logs()
    try:
        policy = load_policy(args.run_dir, run=args.run, step=args.step, best=args.best)
    except (RunDirError, CheckpointError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    from purejaxdqn.envs import is_host_id
    from purejaxdqn.host import memory

    host = is_host_id(policy.config.env_id)
    if host and _videos(args):
        print(f"{PROG}: error: {_videos(args)[0][0]}: not drawn for a host env ({policy.config.env_id}) yet", file=sys.stderr)
        return 2
    try:  # the episodes all run at once: refuse what cannot fit instead of crashing in XLA
        if not host:  # (a host env's episodes are stepped on the host)
            memory.check(runner.eval_working_bytes(policy.config.replace(num_eval_envs=args.episodes)), 1)
    except memory.OutOfMemoryError as err:
        print(f"{PROG}: error: --episodes {args.episodes}: {err}", file=sys.stderr)
        return 2
    epsilon = policy.config.eval_epsilon if args.epsilon is None else args.epsilon
    returns = policy.play(args.episodes, args.seed, epsilon)
    run = describe_run(policy.run)
    which = f"checkpoint after chunk {policy.step}, {run}"
    if policy.best_eval is not None:
        which = f"best evaluation up to chunk {policy.step}: env step {policy.best_eval[0]:,}, return {policy.best_eval[1]:.1f}; {run}"
    played = f"epsilon-greedy episodes (epsilon {epsilon:g})" if epsilon > 0 else "greedy episodes"
    print(
        f"{policy.config.env_id}: {args.episodes} {played} ({which}): mean return {returns.mean():.2f} "
        f"+- {returns.std():.2f} (standard error {returns.std() / np.sqrt(len(returns)):.2f}; "
        f"min {returns.min():.1f}, max {returns.max():.1f})"
    )
    return _write_videos(args, policy)


def _write_videos(args, policy) -> int:
    """Draw one greedy episode into each video asked for (0; 1 for one that could not be written)."""
    videos = _videos(args)
    if not videos:
        return 0
    from purejaxdqn.host.video import render_episode, save_video

    frames, episode_return = render_episode(policy, seed=args.seed, max_frames=args.max_frames)
    cut = " (stopped at --max-frames)" if len(frames) == args.max_frames else ""
    for option, path in videos:
        try:
            save_video(frames, path)
        except OSError as err:  # a full disk, ...: the evaluation above stands, no partial file is left
            print(f"{PROG}: error: {option}: {err}", file=sys.stderr)
            return 1
        print(f"{path}: one greedy episode, {len(frames)} frames{cut}, return {episode_return:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
