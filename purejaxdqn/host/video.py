"""A greedy episode of a trained policy as a GIF or an MP4, drawn from its observations.

A family with a renderer of its own (Craftax, XLand-MiniGrid: the adapter's `frame`) draws
each state itself. gymnax's own visualizer needs pygame (classic control) or seaborn (MinAtar),
so for it and Jumanji frames are drawn here with Pillow, offline and headless: CartPole,
Acrobot and MountainCar as the envs look; image observations (MinAtar's 10x10xC planes, misc
Pong) and 2-D grids (bsuite Catch, DeepSea) as colored cells; any other vector observation as
bars labelled with its components' names (or indices) and values. Every frame is captioned
with the env id, the step and the return so far, at least `LONG_SIDE` pixels on its long
side, nearest-neighbour enlarged, and padded to a multiple of `BLOCK` pixels (what H.264 wants).

    from purejaxdqn import load_policy, render_episode, save_video
    frames, episode_return = render_episode(load_policy("runs/cartpole"))
    save_video(frames, "cartpole.mp4")  # or .gif
"""

from __future__ import annotations

import io
import math
from functools import lru_cache, partial
from pathlib import Path

import jax
import jax.numpy as jnp

import numpy as np

from purejaxdqn.algorithm import acting
from purejaxdqn.envs import env_from_config
from purejaxdqn.host import run_directory

LONG_SIDE = 480  # pixels: no frame is smaller on its long side
BLOCK = 16  # frame sides are multiples of this (H.264's macroblock; the MP4 encoder would resize otherwise)
WIDTH, HEIGHT = 640, 400  # drawn vector-observation scenes, below the caption
FONT_SIZE = 14
FPS = 20
FORMATS = (".gif", ".mp4")  # save_video's formats, by file extension
MP4_PACKAGE = "imageio-ffmpeg"  # what writes .mp4 (its own ffmpeg binary), the extra "video"

# What a vector observation's components are (gymnax's get_obs); bars of other envs show indices.
OBS_NAMES = {
    "CartPole-v1": ("x", "x_dot", "theta", "theta_dot"),
    "Acrobot-v1": ("cos1", "sin1", "cos2", "sin2", "dtheta1", "dtheta2"),
    "MountainCar-v0": ("position", "velocity"),
    "MemoryChain-bsuite": ("time left", "query", "context"),
    "UmbrellaChain-bsuite": ("need umbrella", "has umbrella", "time left"),
    "DiscountingChain-bsuite": ("context", "time"),
    "FourRooms-misc": ("pos 0", "pos 1", "goal 0", "goal 1"),
    "BernoulliBandit-misc": ("last reward", "last action 0", "last action 1", "time"),
    "GaussianBandit-misc": ("last reward", "last action 0", "last action 1", "time"),
    "FrozenLake-misc": ("tile",),
}


def render_episode(policy, seed: int = 0, max_frames: int = 1000) -> tuple[list[np.ndarray], float]:
    """RGB frames (uint8 [H, W, 3], all one size) of one greedy episode of `policy` (a
    `load_policy` result), cut at the episode's end or at `max_frames`; and the episode's
    return (up to there)."""
    venv = env_from_config(policy.config, 1, role="video")  # emulators of its own (Atari): a run in this process keeps its games
    play = jax.jit(partial(_play, policy.network, venv, max_frames))
    obs, states, rewards, ends = jax.device_get(play(policy.params, jax.random.key(seed)))
    length = int(np.argmax(ends)) + 1 if ends.any() else max_frames
    returns = np.cumsum(rewards[:length])
    if venv.spec.frame_stack > 1:  # a stack of grayscale frames (Atari): its newest, in gray
        own = lambda t: np.repeat(obs[t][..., -1:], 3, axis=-1)  # noqa: E731
    else:
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
    captioned with the env id, the step and the return so far (and a drawn scene's values)."""
    from PIL import Image, ImageDraw

    obs = np.asarray(obs, np.float32)
    caption = [f"{env_id}   step {t + 1}   return {episode_return:g}"]
    if picture is not None:
        image = _enlarge(Image.fromarray(np.asarray(picture, np.uint8)))
    elif obs.ndim == 3 or (obs.ndim == 2 and min(obs.shape) > 1):  # planes, or a 2-D grid as one plane
        image = _enlarge(Image.fromarray(planes_to_rgb(obs if obs.ndim == 3 else obs[..., None])))
    else:
        image = Image.new("RGB", (WIDTH, HEIGHT), "white")
        names = component_names(env_id, obs.size)
        scene = SCENES.get(env_id)
        if scene is None:
            _draw_bars(ImageDraw.Draw(image), obs.ravel(), names)
        else:
            scene(ImageDraw.Draw(image), obs.ravel())
            caption.append("   ".join(f"{n} {v:+.3f}" for n, v in zip(names, obs.ravel())))
    return _captioned(image, caption)


@lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=FONT_SIZE)


def _enlarge(image):
    """`image` scaled up by a whole factor (nearest neighbour: cells stay sharp) to at least
    LONG_SIDE pixels on its long side; unchanged if it is that big already."""
    from PIL import Image

    factor = math.ceil(LONG_SIDE / max(image.size))
    return image if factor <= 1 else image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)


def _captioned(image, lines: list[str]) -> np.ndarray:
    """`image` below a black band with `lines` of white text, centred on a black canvas at least
    LONG_SIDE wide (room for the caption) whose sides are BLOCK multiples."""
    from PIL import Image, ImageDraw

    line = FONT_SIZE + 4
    band = len(lines) * line + 4
    width, height = _ceil(max(image.width, LONG_SIDE), BLOCK), _ceil(image.height + band, BLOCK)
    canvas = Image.new("RGB", (width, height), "black")
    canvas.paste(image, ((width - image.width) // 2, band))
    pen = ImageDraw.Draw(canvas)
    for i, text in enumerate(lines):
        pen.text((4, 2 + i * line), text, fill="white", font=_font())
    return np.asarray(canvas)


def _ceil(n: int, block: int) -> int:
    return -(-n // block) * block


def component_names(env_id: str, size: int) -> tuple[str, ...]:
    """Names of a vector observation's `size` components: OBS_NAMES, else their indices."""
    names = OBS_NAMES.get(env_id, ())
    return names if len(names) == size else tuple(str(i) for i in range(size))


def planes_to_rgb(obs: np.ndarray) -> np.ndarray:
    """[H, W, C] planes -> [H, W, 3] uint8: each cell takes the color of its highest nonzero
    channel (as gymnax's MinAtar visualizer does), black where none is set."""
    from matplotlib import colormaps

    channels = obs.shape[-1]
    palette = np.concatenate([[[0, 0, 0]], np.asarray(colormaps["tab10"].resampled(max(channels, 2))(range(channels)))[:, :3] * 255])
    index = np.where((obs != 0).any(-1), np.argmax((obs != 0) * np.arange(1, channels + 1), -1) + 1, 0)
    return palette[index].astype(np.uint8)


def _draw_cartpole(canvas, obs) -> None:
    """CartPole's state [x, x_dot, theta, theta_dot]: the track spans x in [-2.4, 2.4]; the
    pole is 1 m (gymnax's 2 * length 0.5) at the track's scale."""
    x, theta = float(obs[0]), float(obs[2])
    metre = (WIDTH / 2 - 40) / 2.4
    ground, cart_x = HEIGHT - 80, WIDTH / 2 + x * metre
    canvas.line([(0, ground + 20), (WIDTH, ground + 20)], fill="black", width=2)
    canvas.rectangle([cart_x - 40, ground - 10, cart_x + 40, ground + 20], fill=(60, 60, 60))
    tip = (cart_x + metre * np.sin(theta), ground - 10 - metre * np.cos(theta))
    canvas.line([(cart_x, ground - 10), tip], fill=(200, 120, 60), width=10)
    canvas.ellipse([cart_x - 5, ground - 15, cart_x + 5, ground - 5], fill=(120, 120, 200))


def _draw_acrobot(canvas, obs) -> None:
    """Acrobot's [cos t1, sin t1, cos t2, sin t2, dt1, dt2]: two 1 m links hanging from the
    pivot (t1 = 0: straight down; t2 relative to link 1); the dashed line is the goal height
    (the tip 1 m above the pivot)."""
    c1, s1, c2, s2 = (float(v) for v in obs[:4])
    metre = (HEIGHT / 2 - 20) / 2
    pivot = np.array([WIDTH / 2, HEIGHT / 2])
    elbow = pivot + metre * np.array([s1, c1])  # screen y grows downwards
    tip = elbow + metre * np.array([s1 * c2 + c1 * s2, c1 * c2 - s1 * s2])  # sin, cos of t1 + t2
    for x in range(0, WIDTH, 24):
        canvas.line([(x, pivot[1] - metre), (x + 12, pivot[1] - metre)], fill="gray", width=2)
    canvas.line([tuple(pivot), tuple(elbow)], fill=(0, 100, 200), width=10)
    canvas.line([tuple(elbow), tuple(tip)], fill=(0, 160, 120), width=10)
    for point in (pivot, elbow):
        canvas.ellipse([point[0] - 6, point[1] - 6, point[0] + 6, point[1] + 6], fill=(200, 180, 0))


def _draw_mountain_car(canvas, obs) -> None:
    """MountainCar's [position, velocity]: the hill y = sin(3x) over x in [-1.2, 0.6], the car
    at `position` tilted with the slope, the flag at the goal x = 0.5."""
    low, high, goal = -1.2, 0.6, 0.5
    sx, sy, base = (WIDTH - 40) / (high - low), (HEIGHT - 120) / 2, HEIGHT - 40 - (HEIGHT - 120) / 2

    def at(x: float) -> tuple[float, float]:
        return 20 + (x - low) * sx, base - np.sin(3 * x) * sy

    canvas.line([at(x) for x in np.linspace(low, high, 200)], fill="black", width=3)
    flag_x, flag_y = at(goal)
    canvas.line([(flag_x, flag_y), (flag_x, flag_y - 50)], fill="black", width=3)
    canvas.polygon([(flag_x, flag_y - 50), (flag_x + 30, flag_y - 42), (flag_x, flag_y - 34)], fill=(230, 200, 0))
    x = float(obs[0])
    angle = np.arctan2(-3 * np.cos(3 * x) * sy, sx)  # the slope on screen (y down)
    along, up = np.array([np.cos(angle), np.sin(angle)]), np.array([np.sin(angle), -np.cos(angle)])
    centre = np.array(at(x)) + up * 14
    body = [tuple(centre + a * along * 25 + b * up * 10) for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    canvas.polygon(body, fill=(200, 40, 40))
    for a in (-0.6, 0.6):
        wheel = centre + a * along * 25 - up * 10
        canvas.ellipse([wheel[0] - 6, wheel[1] - 6, wheel[0] + 6, wheel[1] + 6], fill=(40, 40, 40))


SCENES = {"CartPole-v1": _draw_cartpole, "Acrobot-v1": _draw_acrobot, "MountainCar-v0": _draw_mountain_car}


def _draw_bars(canvas, obs, names: tuple[str, ...]) -> None:
    """Any vector observation: one bar per component, squashed to [-1, 1] with tanh, each
    labelled with its name and value where there is room (long vectors: an index every few bars)."""
    font, mid = _font(), (HEIGHT - 40) / 2
    width = WIDTH / max(len(obs), 1)
    gap = 2 if width > 6 else 0  # long vectors (Jumanji's boards, flattened): bars touch
    canvas.line([(0, mid), (WIDTH, mid)], fill="gray")
    labelled = width >= 3 * FONT_SIZE  # room for a value such as -0.123
    every = 1 if labelled else math.ceil(len(obs) / (WIDTH / (4 * FONT_SIZE)))
    for i, value in enumerate(np.tanh(obs)):
        top = mid - value * (mid - 10)
        canvas.rectangle([i * width + gap, min(mid, top), (i + 1) * width - gap, max(mid, top)], fill=(70, 110, 200))
        if i % every == 0:
            text = [names[i], f"{obs[i]:.3g}"] if labelled else [names[i]]
            for row, line in enumerate(text):
                canvas.text((i * width + gap, HEIGHT - 36 + row * (FONT_SIZE + 2)), _fit(canvas, line, font, width * every), fill="black", font=font)


def _fit(canvas, text: str, font, room: float) -> str:
    """`text`, cut short (with ~) to fit `room` pixels."""
    while len(text) > 1 and canvas.textlength(text, font=font) > room - 4:
        text = text[:-2] + "~"
    return text


def gif_bytes(frames: list[np.ndarray], fps: int = FPS) -> bytes:
    """`frames` as a looping GIF at `fps` frames per second (what the trackers get, too)."""
    from PIL import Image

    # Pillow's fast octree palette per frame: a third of the time of its default quantizer
    images = [Image.fromarray(np.asarray(f, np.uint8)).quantize(255, Image.Quantize.FASTOCTREE) for f in frames]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=max(1, round(1000 / fps)), loop=0)
    return out.getvalue()


def mp4_writer_missing() -> str | None:
    """Why .mp4 cannot be written here (None: it can): the ffmpeg that imageio-ffmpeg brings."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return f'writing .mp4 needs the {MP4_PACKAGE} package (its ffmpeg); pip install "purejaxdqn[video]"'
    return None


def _write_mp4(frames: list[np.ndarray], path: Path, fps: int) -> None:
    """H.264 MP4 (yuv420p: plays in browsers) through imageio-ffmpeg's ffmpeg. Its subprocess
    execs at once after the fork, so JAX's warning about forking a multithreaded process is moot
    (and would be a stray line on stderr)."""
    import warnings

    import imageio_ffmpeg

    height, width = frames[0].shape[:2]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
        writer = imageio_ffmpeg.write_frames(str(path), (width, height), fps=fps, codec="libx264", macro_block_size=BLOCK,
                                             output_params=["-f", "mp4", "-movflags", "+faststart"], ffmpeg_log_level="error")  # fmt: skip
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame, np.uint8))
        writer.close()


def save_video(frames: list[np.ndarray], path, fps: int = FPS) -> Path:
    """Write `frames` as a looping GIF or an MP4, as `path`'s extension says (FORMATS), at
    `fps` frames per second, atomically: a failed write (full disk, ...) raises
    run_directory.WriteError and leaves no partial file (nor the old one changed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"{path}: a video is written as {' or '.join(FORMATS)}, not {suffix or 'no extension'}")
    if suffix == ".gif":
        return save_gif(frames, path, fps)
    run_directory.write_atomically(path, lambda tmp: _write_mp4(frames, tmp, fps))
    return path


def save_gif(frames: list[np.ndarray], path, fps: int = FPS) -> Path:
    """`save_video` as a GIF whatever the extension (the older name, kept for callers)."""
    path = Path(path)
    run_directory.write_atomically(path, lambda tmp: tmp.write_bytes(gif_bytes(frames, fps)))
    return path
