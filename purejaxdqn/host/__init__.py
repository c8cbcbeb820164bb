"""The host side: what drives the compiled program and keeps its results (the run directory,
the runner, checkpoints, tracking, progress, processes of a multi-host run, saved policies)."""
