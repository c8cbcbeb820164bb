"""Host envs (purejaxdqn/envs/host.py): same-step semantics in every autoreset mode, checked
exactly against single gymnasium envs stepped by hand; the refused ids; the ALE vector env."""

from __future__ import annotations

import sys

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from purejaxdqn.envs import host  # noqa: E402

MODES = ("SameStep", "NextStep", "Disabled")
COUNTDOWN = "PurejaxdqnCountdown-v0"


class Countdown(gymnasium.Env):
    """Terminates after a length drawn at reset from 3..8: with a time limit of 5 the episodes
    end terminated (3, 4), truncated (6..8) and both at once (5: terminated wins)."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.length = 0, int(self.np_random.integers(3, 9))
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), float(action) + 0.5 * self.t, self.t >= self.length, False, {}

    def _obs(self):
        return np.array([self.t, self.length, self.np_random.random()], np.float32)


if COUNTDOWN not in gymnasium.registry:
    gymnasium.register(COUNTDOWN, entry_point=Countdown)


def reference_run(gym_id, num_envs, time_limit, seed, actions):
    """(first obs, [HostStep], how many ends were terminated and truncated at once) of
    `num_envs` single envs seeded seed + i, reset by hand after each end."""
    envs = [gymnasium.make(gym_id, max_episode_steps=time_limit) for _ in range(num_envs)]
    first = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    steps, both = [], 0
    for row in actions:
        fields = []
        for env, a in zip(envs, row):
            next_obs, reward, terminated, truncated, _ = env.step(int(a))
            both += terminated and truncated
            obs = env.reset()[0] if terminated or truncated else next_obs
            fields.append((obs, reward, next_obs, terminated, truncated and not terminated))
        obs, reward, next_obs, terminated, truncated = (np.array(f) for f in zip(*fields))
        steps.append(host.HostStep(obs.astype(np.float32), reward.astype(np.float32),
                                   next_obs.astype(np.float32), terminated, truncated))  # fmt: skip
    for env in envs:
        env.close()
    return first, steps, both


def host_run(env_id, num_envs, time_limit, seed, actions, mode):
    with host.make_host_env(env_id, num_envs, time_limit, autoreset_mode=mode) as env:
        assert env.autoreset_mode == gymnasium.vector.AutoresetMode(mode)
        return env.reset(seed), [env.step(a) for a in actions]


CASES = {  # gym id: (num_envs, time_limit, steps)
    "CartPole-v1": (3, 20, 80),
    COUNTDOWN: (3, 5, 40),
}


@pytest.fixture(scope="module")
def references():
    out = {}
    for gym_id, (num_envs, time_limit, steps) in CASES.items():
        actions = np.random.default_rng(1).integers(0, 2, (steps, num_envs))
        out[gym_id] = actions, reference_run(gym_id, num_envs, time_limit, 7, actions)
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("gym_id", list(CASES))
def test_every_autoreset_mode_steps_exactly_as_single_envs_reset_by_hand(references, gym_id, mode):
    num_envs, time_limit, _ = CASES[gym_id]
    actions, (first, expected, _) = references[gym_id]
    obs, steps = host_run(host.HOST_PREFIX + gym_id, num_envs, time_limit, 7, actions, mode)
    assert obs.dtype == np.float32
    np.testing.assert_array_equal(obs, first)
    for t, (got, want) in enumerate(zip(steps, expected)):
        for name, g, w in zip(host.HostStep._fields, got, want):
            assert g.dtype == w.dtype and g.shape == w.shape, (t, name)
            np.testing.assert_array_equal(g, w, err_msg=f"step {t} {name}")


def test_the_reference_runs_end_in_every_way(references):
    """The comparisons above cover terminations, truncations, and both on one step."""
    for gym_id, (_, (_, steps, both)) in references.items():
        assert any(s.terminated.any() for s in steps), gym_id
        assert any(s.truncated.any() for s in steps), gym_id
        assert not any((s.terminated & s.truncated).any() for s in steps), gym_id
    assert references[COUNTDOWN][1][2] > 0  # terminated and truncated at once: terminated won


def pseudo_transitions(first, actions, steps, reference) -> int:
    """How many (obs, action -> next_obs) of `steps` are not transitions of the reference run,
    plus the ends after which `obs` is not the reference's new first observation."""
    ref_first, ref_steps, _ = reference
    real, prev = {}, ref_first
    for row, s in zip(actions, ref_steps):
        for i, a in enumerate(row):
            real[prev[i].tobytes(), int(a)] = s.next_obs[i].tobytes()
        prev = s.obs
    bad, prev = 0, first
    for row, s, ref in zip(actions, steps, ref_steps):
        for i, a in enumerate(row):
            bad += real.get((prev[i].tobytes(), int(a))) != s.next_obs[i].tobytes()
            ended = ref.terminated[i] or ref.truncated[i]
            bad += bool(ended and not np.array_equal(s.obs[i], ref.obs[i]))
        prev = s.obs
    return bad


@pytest.mark.parametrize("mode", MODES)
def test_no_reset_pseudo_transition_reaches_the_caller(references, mode):
    num_envs, time_limit, _ = CASES["CartPole-v1"]
    actions, reference = references["CartPole-v1"]
    first, steps = host_run("gymnasium:CartPole-v1", num_envs, time_limit, 7, actions, mode)
    assert pseudo_transitions(first, actions, steps, reference) == 0


def test_the_pseudo_transition_check_catches_a_raw_next_step_vector_env(references):
    """gymnasium's own NextStep vector env, read naively, does hand out reset steps."""
    num_envs, time_limit, _ = CASES["CartPole-v1"]
    actions, reference = references["CartPole-v1"]
    vec = gymnasium.make_vec("CartPole-v1", num_envs, vectorization_mode="sync", max_episode_steps=time_limit)
    first, _ = vec.reset(seed=7)
    steps = []
    for a in actions:
        obs, reward, terminated, truncated, _ = vec.step(a)
        steps.append(host.HostStep(obs, reward, obs, terminated, truncated))
    vec.close()
    assert pseudo_transitions(first, actions, steps, reference) > 0


def test_spec_and_seeding():
    with host.make_host_env("gymnasium:Acrobot-v1", 2, seed_offset=10) as env:
        assert env.spec == host.EnvSpec(num_actions=3, obs_shape=(6,), obs_dtype=np.float32, max_episode_steps=500)
        obs = env.reset(0)
    single = gymnasium.make("Acrobot-v1")
    np.testing.assert_array_equal(obs[1], single.reset(seed=11)[0])
    with host.make_host_env("gymnasium:CartPole-v1", 1, time_limit=33) as env:
        assert env.spec.max_episode_steps == 33
    assert host.is_host_id("gymnasium:CartPole-v1") and not host.is_host_id("CartPole-v1")


@pytest.mark.parametrize(
    "env_id, words",
    [
        ("gymnasium:CartPol-v1", ["registers no env", "gymnasium:CartPole-v1"]),
        ("gymnasium:Pendulum-v1", ["Pendulum-v1", "DQN needs discrete actions"]),
        ("gymnasium:FrozenLake-v1", ["FrozenLake-v1", "not a Box"]),
        (f"gymnasium:{COUNTDOWN}", ["no time limit"]),
    ],
)
def test_a_bad_id_is_refused_in_one_line_naming_the_problem(env_id, words):
    with pytest.raises(ValueError) as error:
        host.check_host_id(env_id)
    message = str(error.value)
    assert "\n" not in message and all(w in message for w in words), message
    host.check_host_id(f"gymnasium:{COUNTDOWN}", time_limit=5)  # with a limit it is fine


@pytest.mark.parametrize("package, env_id, extra", [
    ("gymnasium", "gymnasium:CartPole-v1", '".[gymnasium]"'),
    ("ale_py", "gymnasium:ALE/Breakout-v5", '".[atari]"'),
])  # fmt: skip
def test_an_id_whose_package_is_missing_is_refused_naming_its_extra(monkeypatch, package, env_id, extra):
    real = host.importlib.util.find_spec
    monkeypatch.setattr(host.importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    monkeypatch.setitem(sys.modules, package, None)  # and importing it fails
    with pytest.raises(ValueError, match="pip install -e") as error:
        host.check_host_id(env_id)
    assert extra in str(error.value) and "\n" not in str(error.value)


def atari_run(mode, steps=600, time_limit=130):
    rng = np.random.default_rng(0)
    with host.make_host_env("gymnasium:ALE/Breakout-v5", 2, time_limit, autoreset_mode=mode) as env:
        first = env.reset(3)
        return first, [env.step(rng.integers(0, env.spec.num_actions, 2)) for _ in range(steps)]


def test_atari_vector_env_keeps_same_step_semantics():
    pytest.importorskip("ale_py")
    with host.make_host_env("gymnasium:ALE/Breakout-v5", 1) as env:
        assert env.spec == host.EnvSpec(4, (4, 84, 84), np.uint8, 27_000)
    with pytest.raises(ValueError, match="Disabled"):
        host.make_host_env("gymnasium:ALE/Breakout-v5", 2, autoreset_mode="Disabled")
    first, steps = atari_run("SameStep")
    prev, length, ends = first, np.zeros(2, int), {"terminated": 0, "truncated": 0}
    for s in steps:
        length += 1
        assert s.obs.dtype == np.uint8 and s.obs.shape == (2, 4, 84, 84)
        np.testing.assert_array_equal(s.next_obs[:, :3], prev[:, 1:])  # a real step: the stack shifts
        for i in range(2):
            if s.terminated[i] or s.truncated[i]:
                assert not s.obs[i, :3].any() and s.obs[i, 3].any()  # a fresh stack: one frame
                assert not np.array_equal(s.obs[i], s.next_obs[i])
                assert not s.truncated[i] or length[i] == 130
                ends["terminated" if s.terminated[i] else "truncated"] += 1
                length[i] = 0
            else:
                assert s.obs[i] is s.next_obs[i] or np.array_equal(s.obs[i], s.next_obs[i])
        prev = s.obs
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends
    # NextStep with partial resets gives the very same run (reset_mask clears the pending reset)
    first_next, steps_next = atari_run("NextStep")
    np.testing.assert_array_equal(first_next, first)
    for a, b in zip(steps, steps_next):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_atari_rewards_are_the_game_score_not_clipped():
    pytest.importorskip("ale_py")
    rng = np.random.default_rng(0)
    with host.make_host_env("gymnasium:ALE/SpaceInvaders-v5", 2) as env:
        env.reset(0)
        rewards = np.concatenate([env.step(rng.integers(0, env.spec.num_actions, 2)).reward for _ in range(300)])
    assert rewards.dtype == np.float32 and rewards.max() > 1  # aliens are worth 5 to 30 points
