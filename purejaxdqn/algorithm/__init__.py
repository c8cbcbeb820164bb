"""The algorithm: everything that runs inside `jax.jit` (envs stepped, replay, learner, loop, mesh).

Pure functions over explicit state; nothing here reads or writes files or talks to other processes.
"""
