"""purejaxdqn: DQN trained entirely on the accelerator.

gymnax environments and the replay buffer live on the device, and the whole
collect -> store -> sample -> update -> target-update cycle is one jitted `lax.scan`.

    from purejaxdqn import Config, make_train
    train = jax.jit(make_train(Config()))
    state = train(jax.random.key(0))
"""

from purejaxdqn.config import PRESETS, Config, ConfigError, HParams, from_preset, validate
from purejaxdqn.loop import TrainState, Trainer, make_train, make_trainer
from purejaxdqn.policy import Policy, RunDirError, load_policy

__all__ = [
    "Config", "ConfigError", "HParams", "PRESETS", "from_preset", "validate",
    "TrainState", "Trainer", "make_train", "make_trainer", "Policy", "RunDirError", "load_policy",
]  # fmt: skip
__version__ = "0.1.0"
