"""The env families behind the protocol (purejaxdqn/envs): the id lists, a missing extra, and
each adapter's episode ends replayed against a plain-Python reference built on the family's
own API (terminated only on real ends, truncated only at the time limit, the true final
observation as next_obs, the next episode's first observation after an end)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from purejaxdqn import envs
from purejaxdqn.config import Config, ConfigError, validate
from purejaxdqn.envs import craftax_adapter, jumanji_adapter, xminigrid_adapter
from purejaxdqn.envs.protocol import Timed


def test_every_id_belongs_to_one_family_and_the_packages_offer_them():
    import jumanji
    import xminigrid

    assert len(set(envs.SUPPORTED_ENV_IDS)) == len(envs.SUPPORTED_ENV_IDS)
    assert set(xminigrid_adapter.IDS) <= set(xminigrid.registered_environments())
    assert set(jumanji_adapter.IDS) <= set(jumanji.registered_environments())
    for env_id in envs.SUPPORTED_ENV_IDS:
        assert env_id in envs.family_of(env_id).ids


@pytest.mark.parametrize("family", ["xminigrid", "jumanji", "craftax"])
def test_every_id_of_a_family_makes_with_a_consistent_spec(family):
    """Each id makes; image_observations (what --torso conv accepts) matches the shape; a masked
    family's mask is the observation's last num_actions entries."""
    for env_id in next(f for f in envs.FAMILIES if f.name == family).ids:
        venv = envs.make_vec_env(env_id, 2)
        obs, _ = jax.eval_shape(venv.reset, jax.random.key(0))
        assert obs.shape == (2, *venv.obs_shape) and venv.max_episode_steps > 0, env_id
        assert (len(venv.obs_shape) == 3) == envs.image_observations(env_id), env_id
        if venv.spec.masked:
            assert venv.obs_shape[0] > venv.num_actions, env_id


def test_an_id_of_a_family_not_installed_is_refused_naming_its_extra(monkeypatch):
    real = envs.importlib.util.find_spec
    monkeypatch.setattr(envs.importlib.util, "find_spec", lambda name: None if name == "craftax" else real(name))
    with pytest.raises(ConfigError) as err:
        validate(Config(env_id="Craftax-Classic-Symbolic-v1"))
    assert err.value.option == "--env-id" and 'purejaxdqn[craftax]' in str(err.value)
    validate(Config(env_id="Snake-v1"))  # the other families are untouched


def test_help_lists_every_id_by_family(capsys):
    from purejaxdqn import cli

    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())  # ids whole: lines wrap at spaces only
    for family in envs.FAMILIES:
        assert all(env_id in text for env_id in family.ids)
    assert "craftax (extra craftax):" in text


def record(adapter, steps: int, seed: int, policy, step=None):
    """An unbatched adapter's steps under `policy(key, obs) -> action`."""
    step = step or jax.jit(adapter.step)
    obs, state = adapter.reset(jax.random.key(seed))
    key = jax.random.key(seed + 1)
    out = []
    for _ in range(steps):
        key, action_key, step_key = jax.random.split(key, 3)
        action = policy(action_key, obs)
        res = step(step_key, state, action)
        out.append((state, action, step_key, res))
        obs, state = res.obs, res.env_state
    return out


def uniform(num_actions):
    return lambda key, obs: jax.random.randint(key, (), 0, num_actions)


def check_against(trajectory, reference_step, reference_reset):
    """Every recorded step equals the reference: the family's own step, and where it ended (a
    real end, or the limit the reference counts) the family's reset with the reset key."""
    kinds = set()
    for state, action, key, res in trajectory:
        step_key, reset_key = jax.random.split(key)
        next_obs, reward, real_end, at_limit = reference_step(step_key, state, action)
        np.testing.assert_array_equal(np.asarray(res.next_obs), np.asarray(next_obs))
        assert float(res.reward) == pytest.approx(float(reward))
        assert bool(res.terminated) == real_end
        assert bool(res.truncated) == (at_limit and not real_end)
        if real_end or at_limit:
            np.testing.assert_array_equal(np.asarray(res.obs), np.asarray(reference_reset(reset_key)))
            kinds.add("terminated" if real_end else "truncated")
        else:
            np.testing.assert_array_equal(np.asarray(res.obs), np.asarray(next_obs))
    return kinds


def test_xminigrid_ends_real_at_the_goal_and_truncates_at_max_steps():
    """Empty-5x5 with a 12-step limit: random walks reach the goal (discount 0) and run out of
    time (discount 1); the adapter's one-hot observation is the package's view, encoded."""
    from xminigrid.core.constants import NUM_COLORS, NUM_TILES

    adapter = xminigrid_adapter.make("MiniGrid-Empty-5x5")
    adapter = adapter._replace(params=adapter.params.replace(max_steps=12), spec=adapter.spec._replace(max_episode_steps=12))
    env, params = adapter.env, adapter.params
    encode = jax.jit(lambda view: xminigrid_adapter.one_hot_view(view, NUM_TILES, NUM_COLORS))
    env_step, env_reset = jax.jit(env.step), jax.jit(env.reset)

    def reference_step(key, timestep, action):
        nxt = env_step(params, timestep, action)
        real = bool(nxt.step_type == 2) and float(nxt.discount) == 0.0
        return encode(nxt.observation), nxt.reward, real, int(nxt.state.step_num) >= 12

    kinds, step = set(), jax.jit(adapter.step)
    for seed in range(6):
        kinds |= check_against(record(adapter, 60, seed, uniform(3), step), reference_step, lambda k: encode(env_reset(params, k).observation))
    assert kinds == {"terminated", "truncated"}
    view = np.asarray(env_reset(params, jax.random.key(0)).observation)
    planes = np.asarray(encode(view))
    assert planes.sum(-1).max() == 2 and (planes[..., :NUM_TILES].argmax(-1) == view[..., 0]).all()


@pytest.mark.parametrize("env_id,limit", [("RubiksCube-partly-scrambled-v0", 20), ("Snake-v1", 40)])
def test_jumanji_time_limits_bootstrap_even_where_jumanji_calls_them_terminal(env_id, limit):
    """The adapter counts the limit itself and makes the env with one it never reaches: only
    Jumanji's real ends (solved, Snake's collisions) terminate, and every limit truncates."""
    import jumanji

    adapter = jumanji_adapter.make(env_id)._replace(time_limit=limit)
    adapter = adapter._replace(spec=adapter.spec._replace(max_episode_steps=limit))
    real_env = jumanji.make(env_id, time_limit=10**9)
    real_step, real_reset = jax.jit(real_env.step), jax.jit(real_env.reset)
    flat = jax.jit(jumanji_adapter.observation_vector)

    def reference_step(key, state, action):
        if adapter.action_shape:
            action = jnp.asarray(np.unravel_index(int(action), adapter.action_shape), jnp.int32)
        _, timestep = real_step(state.inner, action)
        return flat(timestep.observation), timestep.reward, bool(timestep.last()), int(state.t) + 1 >= limit

    policy = uniform(adapter.spec.num_actions)  # disallowed actions too: Snake then collides
    kinds, step = set(), jax.jit(adapter.step)
    for seed in range(3):
        kinds |= check_against(record(adapter, 3 * limit, seed, policy, step), reference_step, lambda k: flat(real_reset(k)[1].observation))
    assert "truncated" in kinds
    if env_id == "Snake-v1":
        assert "terminated" in kinds
    assert all(isinstance(s, Timed) for s, *_ in record(adapter, 2, 0, policy, step))


def test_jumanji_rubiks_cube_marks_its_own_time_limit_as_a_terminal():
    """Why the adapter counts the limit: Jumanji's own RubiksCube ends an unsolved episode at
    its limit with discount 0, which a DQN target would read as a real end."""
    import jumanji

    env = jumanji.make("RubiksCube-partly-scrambled-v0")
    state, timestep = env.reset(jax.random.key(0))
    step = jax.jit(env.step)
    for _ in range(env.time_limit):
        state, timestep = step(state, jnp.zeros(3, jnp.int32))
    assert bool(timestep.last()) and float(timestep.discount) == 0.0 and float(timestep.reward) == 0.0


def test_craftax_splits_death_from_the_time_limit():
    """Craftax's `done` joins death and the 10,000-step limit; the adapter terminates a death
    (even on the limit's step) and truncates the limit alone."""
    adapter = craftax_adapter.make("Craftax-Classic-Symbolic-v1")
    step = jax.jit(adapter.step)
    _, state = jax.jit(adapter.reset)(jax.random.key(0))
    last = jnp.asarray(adapter.params.max_timesteps - 1, state.timestep.dtype)
    dead = state.replace(player_health=jnp.asarray(-5, state.player_health.dtype))
    cases = {"alive": (state, False, False), "dead": (dead, True, False),
             "at the limit": (state.replace(timestep=last), False, True), "dead at the limit": (dead.replace(timestep=last), True, False)}  # fmt: skip
    for name, (s, terminated, truncated) in cases.items():
        res = step(jax.random.key(1), s, jnp.int32(0))
        assert (bool(res.terminated), bool(res.truncated)) == (terminated, truncated), name
        _, _, _, done, _ = adapter.env.step_env(jax.random.split(jax.random.key(1))[0], s, 0, adapter.params)
        assert bool(done) == (terminated or truncated), name  # craftax's own verdict: an end
        if terminated or truncated:
            assert int(res.env_state.timestep) == 0  # the next episode, reset


def test_every_jumanji_id_draws_its_own_picture_of_a_state():
    """Jumanji's own viewers draw the state (not the flat vector as bars), each figure closed."""
    import matplotlib.pyplot as plt

    from purejaxdqn.envs import make_vec_env
    from purejaxdqn.envs.jumanji_adapter import IDS

    for env_id in IDS:
        venv = make_vec_env(env_id, 1)
        _, state = venv.reset(jax.random.key(0))
        image = venv.adapter.frame(jax.tree.map(lambda x: x[0], jax.device_get(state)))
        assert image.shape == (480, 480, 3) and image.dtype == np.uint8, env_id
        assert len(np.unique(image.reshape(-1, 3), axis=0)) > 2, env_id  # a drawing, not a blank canvas
        assert not plt.get_fignums(), env_id
