"""What scripted policies score on gymnax's Freeway-MinAtar, under each exploration protocol.

A yardstick for the DQN presets' Freeway returns (BENCHMARKS.md): two hand-written policies,
played epsilon-greedily the way training plays (random actions drawn from the env's action
set), on gymnax's minimal 3-action set and on MinAtar's full 6-action set (where 4 of the 6
random actions are harmless no-ops, against 1 of 3):

- `up`: always press up;
- `lookahead`: press up unless that gets the chicken hit within the next few steps (it
  simulates the env's own deterministic car dynamics), else wait, else step down.

    python experiments/freeway_baselines.py                      # 32 episodes per row
    python experiments/freeway_baselines.py --episodes 4 --horizon 2 --sticky 0   # fast
"""

from __future__ import annotations

import argparse
import json

import gymnax
import jax
import jax.numpy as jnp

UP, NOOP, DOWN = 2, 0, 4  # MinAtar's full action ids ('u', 'n', 'd')


def make_episode(full_action_set: bool, policy: str, epsilon: float, sticky: float, horizon: int):
    """`episode(key) -> return` of one whole episode (the env's 2,500-step time limit)."""
    env, params = gymnax.make("Freeway-MinAtar", use_minimal_action_set=not full_action_set)
    action_set = [int(a) for a in env.action_set]
    index = {a: action_set.index(a) for a in (UP, NOOP, DOWN)}  # full id -> this env's action index

    def hit_within(state, action, key):
        """Whether taking `action`, then waiting, sends the chicken back within `horizon` steps."""

        def step(carry, k):
            s, a, hit = carry
            _, s2, reward, _, _ = env.step_env(k, s, a, params)
            return (s2, index[NOOP], hit | ((s2.pos == 9) & (s.pos != 9) & (reward == 0))), None

        keys = jax.random.split(key, horizon + 1)
        return jax.lax.scan(step, (state, action, jnp.bool_(False)), keys)[0][2]

    def scripted(state, key):
        if policy == "up":
            return jnp.int32(index[UP])
        safe = jnp.array([~hit_within(state, index[a], key) for a in (UP, NOOP, DOWN)])
        choices = jnp.array([index[UP], index[NOOP], index[DOWN]])
        return jnp.where(safe.any(), choices[jnp.argmax(safe)], index[UP])

    def episode(key):
        key, reset_key = jax.random.split(key)
        _, state = env.reset(reset_key, params)

        def body(carry, _):
            state, key, last, total, alive = carry
            key, look_key, explore_key, random_key, sticky_key, step_key = jax.random.split(key, 6)
            action = scripted(state, look_key)
            action = jnp.where(jax.random.uniform(explore_key) < epsilon,
                               jax.random.randint(random_key, (), 0, len(action_set)), action)  # fmt: skip
            action = jnp.where(jax.random.uniform(sticky_key) < sticky, last, action)
            _, state, reward, done, _ = env.step_env(step_key, state, action, params)
            return (state, key, action, total + reward * alive, alive & ~done), None

        init = (state, key, jnp.int32(index[NOOP]), jnp.float32(0), jnp.bool_(True))
        return jax.lax.scan(body, init, None, length=params.max_steps_in_episode)[0][3]

    return episode


def measure(full_action_set: bool, policy: str, epsilon: float, sticky: float, episodes: int, horizon: int,
            seed: int = 0) -> dict:  # fmt: skip
    episode = make_episode(full_action_set, policy, epsilon, sticky, horizon)
    returns = jax.jit(jax.vmap(episode))(jax.random.split(jax.random.key(seed), episodes))
    return {"actions": 6 if full_action_set else 3, "policy": policy, "epsilon": epsilon, "sticky": sticky,
            "mean": float(returns.mean()), "se": float(returns.std(ddof=1) / episodes**0.5),
            "min": float(returns.min()), "max": float(returns.max())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=4, help="lookahead: waiting steps simulated after the action")
    parser.add_argument("--sticky", type=float, default=0.1, help="sticky-action probability of the 6-action rows")
    args = parser.parse_args()
    rows = []
    print("| policy | actions | sticky | epsilon | mean return (SE) | min..max |\n|---|---|---|---|---|---|")
    for policy in ("up", "lookahead"):
        for full, sticky in ((False, 0.0), (True, 0.0), (True, args.sticky)):
            for epsilon in (0.0, 0.01, 0.1):
                r = measure(full, policy, epsilon, sticky, args.episodes, args.horizon)
                rows.append(r)
                print(f"| {policy} | {r['actions']} | {sticky:g} | {epsilon:g} | {r['mean']:.1f} ({r['se']:.1f}) "
                      f"| {r['min']:.0f}..{r['max']:.0f} |", flush=True)  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
