"""purejaxdqn: DQN trained entirely on the accelerator.

gymnax environments and the replay buffer live on the device, and the whole
collect -> store -> sample -> update -> target-update cycle is one jitted `lax.scan`.

    from purejaxdqn import from_preset, make_train
    config = from_preset("cartpole")  # what the bare command trains; Config() is the plain defaults
    train = jax.jit(make_train(config))
    state = train(jax.random.key(0))

A host env (`gymnasium:ID`) steps outside the compiled program: `train_on_host(config)` runs the
actor-learner (host/actor_learner.py) and returns its result.

The names below are imported on first use, so `python -m purejaxdqn.train` can say something
before JAX is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config", "ConfigError": "config", "HParams": "config", "PRESETS": "config",
    "from_preset": "config", "validate": "config",
    "TrainState": "algorithm.loop", "Trainer": "algorithm.loop", "make_train": "algorithm.loop", "make_trainer": "algorithm.loop",
    "Policy": "host.policy", "RunDirError": "host.run_directory", "load_policy": "host.policy",
    "save_gif": "host.video", "save_video": "host.video", "render_episode": "host.video",
    "RunOptions": "host.run_options", "train_on_host": "host.actor_learner",
}  # fmt: skip
__all__ = list(_EXPORTS)

if TYPE_CHECKING:
    from purejaxdqn.config import PRESETS, Config, ConfigError, HParams, from_preset, validate
    from purejaxdqn.algorithm.loop import TrainState, Trainer, make_train, make_trainer
    from purejaxdqn.host.actor_learner import train_on_host
    from purejaxdqn.host.policy import Policy, load_policy
    from purejaxdqn.host.run_directory import RunDirError
    from purejaxdqn.host.run_options import RunOptions
    from purejaxdqn.host.video import render_episode, save_gif, save_video


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'purejaxdqn' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"purejaxdqn.{_EXPORTS[name]}"), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
