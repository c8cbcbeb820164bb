"""A greedy episode of a trained policy as an animated GIF, drawn from its observations.

A family with a renderer of its own (Craftax, XLand-MiniGrid: the adapter's `frame`) draws
each state itself. gymnax's own visualizer needs pygame (classic control) or seaborn (MinAtar),
so for it and Jumanji frames are drawn here with Pillow, offline and headless: image
observations (MinAtar's 10x10xC planes) as colored cells, CartPole as a cart and pole, any
other vector observation as bars.

    from purejaxdqn import load_policy, render_episode, save_gif
    frames, episode_return = render_episode(load_policy("runs/cartpole"))
    save_gif(frames, "cartpole.gif")
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp

import numpy as np

from purejaxdqn.algorithm import acting
from purejaxdqn.envs import env_from_config
from purejaxdqn.host import run_directory

CELL = 16  # pixels per MinAtar cell
WIDTH, HEIGHT = 320, 180  # vector-observation frames


def render_episode(policy, seed: int = 0, max_frames: int = 1000) -> tuple[list[np.ndarray], float]:
    """RGB frames (uint8 [H, W, 3]) of one greedy episode of `policy` (a `load_policy` result),
    cut at the episode's end or at `max_frames`; and the episode's return (up to there)."""
    venv = env_from_config(policy.config, 1)
    play = jax.jit(partial(_play, policy.network, venv, max_frames))
    obs, states, rewards, ends = jax.device_get(play(policy.params, jax.random.key(seed)))
    length = int(np.argmax(ends)) + 1 if ends.any() else max_frames
    returns = np.cumsum(rewards[:length])
    own = lambda t: venv.adapter.frame(jax.tree.map(lambda x: x[t, 0], states))  # noqa: E731
    frames = [draw(policy.config.env_id, obs[t], t, float(returns[t]), own(t)) for t in range(length)]
    return frames, float(returns[-1])


def _play(network, venv, steps: int, params, key):
    """`steps` greedy env steps from a reset: observations and states acted on (the states
    without sticky actions' wrapper), rewards, episode ends."""
    key, reset_key = jax.random.split(key)
    obs, env_state = venv.reset(reset_key, 1)

    def step(carry, _):
        obs, env_state, key = carry
        key, step_key = jax.random.split(key)
        action = acting.greedy(network.apply(params, obs), venv.action_mask(obs))
        result = venv.step(step_key, env_state, action)
        ended = jnp.logical_or(result.terminated, result.truncated)
        inner = env_state.inner if venv.sticky_actions > 0 else env_state
        return (result.obs, result.env_state, key), (obs[0], inner, result.reward[0], ended[0])

    _, trajectory = jax.lax.scan(step, (obs, env_state, key), None, length=steps)
    return trajectory


def draw(env_id: str, obs: np.ndarray, t: int, episode_return: float, picture: np.ndarray | None = None) -> np.ndarray:
    """One frame for observation `obs` at step `t` (or the family's own `picture` of it),
    captioned with the step and return so far."""
    from PIL import Image, ImageDraw

    obs = np.asarray(obs, np.float32)
    if picture is not None:
        image = Image.fromarray(np.asarray(picture, np.uint8))
    elif obs.ndim == 3:
        image = Image.fromarray(planes_to_rgb(obs)).resize((obs.shape[1] * CELL, obs.shape[0] * CELL), Image.Resampling.NEAREST)
    else:
        image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        (_draw_cartpole if env_id == "CartPole-v1" else _draw_bars)(ImageDraw.Draw(image), obs.ravel())
    canvas = Image.new("RGB", (image.width, image.height + 14), "black")
    canvas.paste(image, (0, 14))
    ImageDraw.Draw(canvas).text((2, 1), f"step {t + 1}  return {episode_return:g}", fill="white")
    return np.asarray(canvas)


def planes_to_rgb(obs: np.ndarray) -> np.ndarray:
    """[H, W, C] 0/1 planes -> [H, W, 3] uint8: each cell takes the color of its highest set
    channel (as gymnax's MinAtar visualizer does), black where none is set."""
    from matplotlib import colormaps

    channels = obs.shape[-1]
    palette = np.concatenate([[[0, 0, 0]], np.asarray(colormaps["tab10"].resampled(max(channels, 2))(range(channels)))[:, :3] * 255])
    index = np.where(obs.any(-1), np.argmax(obs * np.arange(1, channels + 1), -1) + 1, 0)
    return palette[index].astype(np.uint8)


def _draw_cartpole(canvas, obs) -> None:
    """CartPole's state [x, x_dot, theta, theta_dot]: the track spans x in [-2.4, 2.4]."""
    x, theta = float(obs[0]), float(obs[2])
    ground = HEIGHT - 40
    cart_x = WIDTH / 2 + x / 2.4 * (WIDTH / 2 - 30)
    canvas.line([(0, ground + 10), (WIDTH, ground + 10)], fill="black")
    canvas.rectangle([cart_x - 22, ground - 6, cart_x + 22, ground + 10], fill=(60, 60, 60))
    pole = 100
    tip = (cart_x + pole * np.sin(theta), ground - 6 - pole * np.cos(theta))
    canvas.line([(cart_x, ground - 6), tip], fill=(200, 120, 60), width=6)


def _draw_bars(canvas, obs) -> None:
    """Any vector observation: one bar per component, squashed to [-1, 1] with tanh."""
    mid, width = HEIGHT / 2, WIDTH / max(len(obs), 1)
    gap = 2 if width > 6 else 0  # long vectors (Jumanji's boards, flattened): bars touch
    canvas.line([(0, mid), (WIDTH, mid)], fill="gray")
    for i, value in enumerate(np.tanh(obs)):
        top = mid - value * (mid - 10)
        canvas.rectangle([i * width + gap, min(mid, top), (i + 1) * width - gap, max(mid, top)], fill=(70, 110, 200))


def save_gif(frames: list[np.ndarray], path, fps: int = 20) -> Path:
    """Write `frames` as a looping GIF at `fps` frames per second, atomically: a failed write
    (full disk, ...) raises run_directory.WriteError and leaves no partial file (nor the old
    one changed)."""
    from PIL import Image

    path = Path(path)
    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    run_directory.write_atomically(path, lambda tmp: images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0))  # fmt: skip
    return path
