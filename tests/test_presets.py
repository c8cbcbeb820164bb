"""Presets as data, the settings sweep=True marks, and check_sweep: the documentation generated
from the records is the documentation shipped, and each fact has one source."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import pytest

from purejaxdqn.config import (
    DEFAULT_PRESETS,
    HPARAM_DTYPES,
    PRESETS,
    RECORDS,
    SWEEPABLE,
    Config,
    ConfigError,
    HParams,
    check_sweep,
    from_preset,
    preset_names,
    validate,
)
from purejaxdqn.envs import atari_adapter
from purejaxdqn.config import presets

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_preset_table() -> str:
    text = README.read_text()
    section = text[text.index("### Presets\n") :]
    start = section.index("| preset | what |")
    return section[start : section.index("\n\n", start) + 1]


def test_readme_preset_table_is_generated_from_the_records():
    assert readme_preset_table() == presets.markdown_table(), (
        "README.md's preset table differs from the records: paste purejaxdqn.config.presets.markdown_table()"
    )


def test_help_text_names_every_preset_and_how_they_combine():
    text = presets.help_text()
    for p in RECORDS:
        assert f"'{p.name}'" in text and p.summary in text, p.name
    assert "'none' = plain defaults" in text and "--env-id Breakout-MinAtar --preset rainbow" in text
    assert "%" not in text  # argparse would read it as a format


def test_records_are_plain_one_line_text_for_help_and_markdown():
    for p in RECORDS:
        assert p.summary and p.notes, p.name
        for text in (p.summary, p.notes):
            assert "\n" not in text and "|" not in text, p.name
        assert "`" not in p.summary and "*" not in p.summary, p.name  # --help shows it as it is


def test_presets_mapping_and_defaults_come_from_the_records():
    assert PRESETS == {p.name: p.overrides for p in RECORDS} and list(PRESETS) == [p.name for p in RECORDS]
    assert DEFAULT_PRESETS == {
        "CartPole-v1": "cartpole", "Acrobot-v1": "acrobot", "MountainCar-v0": "mountaincar",
        "Breakout-MinAtar": "breakout", "Freeway-MinAtar": "freeway", "Asterix-MinAtar": "asterix",
        "SpaceInvaders-MinAtar": "space-invaders", "Seaquest-MinAtar": "seaquest", "MiniGrid-Empty-8x8": "minigrid-empty",
        "MiniGrid-DoorKey-5x5": "minigrid-doorkey", "Snake-v1": "snake", "Craftax-Classic-Symbolic-v1": "craftax-classic",
        "gymnasium:CartPole-v1": "gymnasium-cartpole", **{game: "atari" for game in atari_adapter.IDS},
    }  # fmt: skip
    for env_id, name in DEFAULT_PRESETS.items():
        assert preset_names(None, env_id) == [name]
        assert preset_names("rainbow", env_id) == [name, "rainbow"]
    assert preset_names("none,rainbow") == ["rainbow"] and preset_names("reference") == ["reference"]


def test_every_preset_is_a_valid_config_and_names_only_config_settings():
    names = {f.name for f in dataclasses.fields(Config)}
    for p in RECORDS:
        assert set(p.overrides) <= names, p.name
        base = p.name if p.env_id else f"breakout,{p.name}"
        validate(from_preset(base))
    with pytest.raises(ConfigError, match="unknown preset 'nope'; choose from reference, cartpole"):
        preset_names("nope")
    with pytest.raises(ConfigError, match="'acrobot' is made for Acrobot-v1 and contradicts --env-id CartPole-v1"):
        from_preset("acrobot", env_id="CartPole-v1")


def test_sweepable_settings_are_the_sweep_markers():
    marked = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("sweep"))
    assert SWEEPABLE == marked == HParams._fields and set(HPARAM_DTYPES) == set(SWEEPABLE)
    hp = from_preset("breakout,rainbow").hparams()
    assert isinstance(hp, tuple) and hp._fields == SWEEPABLE
    for f in dataclasses.fields(Config):
        if f.name in SWEEPABLE:
            value = getattr(hp, f.name)
            assert value.shape == () and value.dtype == (jnp.int32 if type(f.default) is int else jnp.float32), f.name
            assert value == jnp.asarray(getattr(from_preset("breakout,rainbow"), f.name), value.dtype), f.name
            assert f.name in HParams.__doc__


def test_check_sweep_compiles_clipping_in_and_names_the_bad_value():
    config = from_preset("cartpole")  # clipping off
    assert config.max_grad_norm == 0
    assert check_sweep(config, {"max_grad_norm": [5.0, 1.0], "lr": [1e-3]}).max_grad_norm == 5.0
    assert check_sweep(config, {"lr": [1e-3, 3e-4]}) == config
    with pytest.raises(ConfigError) as err:
        check_sweep(config, {"lr": [1e-3], "max_grad_norm": [1.0, 0.0]})
    assert str(err.value) == "--sweep max_grad_norm: 0 (no clipping) changes the program; sweep positive values only"
    with pytest.raises(ConfigError) as err:
        check_sweep(config, {"lr": [1e-3, -1.0]})
    assert str(err.value) == "--sweep lr=-1.0: learning rate must be positive, got -1.0"
    with pytest.raises(ConfigError) as err:  # a config compiled as it is: clipping must already be on
        check_sweep(config, {"max_grad_norm": [1.0]}, compile_in=False)
    assert err.value.option == "max_grad_norm" and "clipping is off in this config" in err.value.message
    clipped = config.replace(max_grad_norm=10.0)
    assert check_sweep(clipped, {"max_grad_norm": [1.0, 2.0]}, compile_in=False) == clipped


def test_network_defaults_are_the_config_defaults():
    from purejaxdqn.algorithm.networks import QNetwork

    net = QNetwork(num_actions=2)
    assert (net.widths, net.dueling, net.torso, net.v_min, net.v_max) == (
        Config.widths, Config.dueling, Config.torso, Config.v_min, Config.v_max
    )


def test_readme_lists_exactly_the_sweepable_settings():
    """The README names the sweepable (traced) settings twice; both lists are SWEEPABLE's."""
    import re
    from pathlib import Path

    readme = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    passages = [
        readme.split("does not change array shapes: ")[1].split(". All settings")[0],
        readme.split("pytree of *traced* hyperparameters (")[1].split("; `config.hparams()`")[0],
    ]
    for passage in passages:
        assert re.findall(r"`(\w+)`", passage) == list(SWEEPABLE), passage
