"""Videos worth watching: every family's frames are large RGB pictures of the state, GIF and MP4
files decode back frame for frame, evaluate writes both, and the trackers get the end-of-training
greedy episode (TensorBoard image summary, W&B offline media file)."""

from __future__ import annotations

import io
import json

import jax
import numpy as np
import pytest

from purejaxdqn import Config, cli, evaluate, render_episode, save_video
from purejaxdqn.envs import make_vec_env
from purejaxdqn.host import run_directory, tracking, video
from purejaxdqn.host.policy import make_policy

from tiny import TINY

FAMILIES = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Catch-bsuite", "MemoryChain-bsuite", "Breakout-MinAtar", "Pong-misc"]
CAPTION = 60  # pixels: the caption band is above this row in every frame


def picture(frame: np.ndarray) -> np.ndarray:
    """The frame below its caption."""
    return frame[CAPTION:]


def two_observations(env_id: str, steps: int = 3):
    """The first observation of an episode and the one `steps` steps (action 0) later."""
    adapter = make_vec_env(env_id, 1).adapter
    obs, state = adapter.reset(jax.random.key(0))
    first = np.asarray(obs)
    for t in range(steps):
        result = adapter.step(jax.random.key(t), state, 0)
        obs, state = result.obs, result.env_state
    return first, np.asarray(obs)


@pytest.mark.parametrize("env_id", FAMILIES)
def test_frames_are_large_pictures_of_the_state(env_id):
    """uint8 [H, W, 3], at least LONG_SIDE on the long side, sides H.264 takes; more than a
    background; another state draws another picture (below the caption, not only its text)."""
    first, later = two_observations(env_id)
    a, b = video.draw(env_id, first, 0, 0.0), video.draw(env_id, later, 0, 0.0)
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3 and a.shape == b.shape
    assert max(a.shape[:2]) >= video.LONG_SIDE and a.shape[0] % video.BLOCK == a.shape[1] % video.BLOCK == 0
    assert len(np.unique(picture(a).reshape(-1, 3), axis=0)) >= 2
    assert (picture(a) != picture(b)).any(), "a different state drew the same picture"


def test_cartpole_pole_leans_with_theta():
    """theta > 0 puts the pole's pixels right of the cart's centre, theta < 0 left of it."""
    pole = np.array([200, 120, 60])

    def pole_x(theta: float) -> float:
        frame = picture(video.draw("CartPole-v1", np.array([0.0, 0.0, theta, 0.0]), 0, 0.0))
        ys, xs = np.nonzero((frame == pole).all(-1))
        return xs.mean() - frame.shape[1] / 2

    assert pole_x(0.3) > 10 and pole_x(-0.3) < -10 and abs(pole_x(0.0)) < 3


def test_mountain_car_moves_along_the_hill():
    """The car (red) is further right, and higher, at position 0.4 than at -0.5 (the valley)."""
    car = np.array([200, 40, 40])

    def car_at(position: float) -> tuple[float, float]:
        ys, xs = np.nonzero((picture(video.draw("MountainCar-v0", np.array([position, 0.0]), 0, 0.0)) == car).all(-1))
        return xs.mean(), ys.mean()

    (x0, y0), (x1, y1) = car_at(-0.5), car_at(0.4)
    assert x1 > x0 + 100 and y1 < y0 - 50


def test_bars_are_labelled_with_names_and_values():
    """A vector without a drawn scene: its components' names where known, indices otherwise."""
    assert video.component_names("UmbrellaChain-bsuite", 3) == ("need umbrella", "has umbrella", "time left")
    assert video.component_names("MetaMaze-misc", 15)[:3] == ("0", "1", "2")
    blank = video.draw("UmbrellaChain-bsuite", np.zeros(3), 0, 0.0)
    set_ = video.draw("UmbrellaChain-bsuite", np.array([1.0, 0.0, 0.5]), 0, 0.0)
    assert (picture(blank) != picture(set_)).any()


def test_gif_and_mp4_decode_with_every_frame(tmp_path):
    """save_video by extension: both files read back (imageio) with the frames written."""
    import imageio.v3 as iio

    config = Config(env_id="CartPole-v1", widths=(8,))
    policy = make_policy(config, None)
    params = policy.network.init(jax.random.key(0), np.zeros((1, *policy.obs_shape), np.float32))
    frames, _ = render_episode(policy._replace(params=params), max_frames=12)
    assert len(frames) > 1
    for suffix in video.FORMATS:
        decoded = iio.imread(save_video(frames, tmp_path / f"episode{suffix}"))
        assert decoded.shape == (len(frames), *frames[0].shape), suffix
        assert np.abs(decoded[-1].astype(int) - frames[-1]).mean() < 8, suffix  # MP4 is lossy, GIF close to exact
    with pytest.raises(ValueError, match=".gif or .mp4"):
        save_video(frames, tmp_path / "episode.avi")


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tiny CartPole run logged to TensorBoard and W&B (offline), the video on by default."""
    root = tmp_path_factory.mktemp("video")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_DIR", str(root / "wandb-dir"))
        mp.setenv("WANDB_SILENT", "true")
        (root / "wandb-dir").mkdir()
        args = [*TINY, "--log", "tensorboard,wandb", "--wandb-mode", "offline", "--output-dir", str(root / "run")]
        assert cli.main(args) == 0
    return root


def test_evaluate_writes_the_same_episode_as_gif_and_mp4(tracked, tmp_path, capsys):
    """--gif and --video together: one episode, both files, the same frame count."""
    import imageio.v3 as iio

    gif, mp4 = tmp_path / "e.gif", tmp_path / "e.mp4"
    assert evaluate.main([str(tracked / "run"), "--episodes", "1", "--gif", str(gif), "--video", str(mp4), "--max-frames", "40"]) == 0
    out = capsys.readouterr().out
    assert f"{gif}: one greedy episode" in out and f"{mp4}: one greedy episode" in out
    assert iio.imread(gif).shape == iio.imread(mp4).shape and len(iio.imread(gif)) > 1


def test_trackers_get_the_end_of_training_video(tracked):
    """TensorBoard: a VIDEO_TAG image summary holding a GIF of several frames, at the last env
    step. W&B offline: the GIF among the run's media files."""
    from PIL import Image
    from tensorboard.backend.event_processing import event_accumulator

    summary = json.loads((tracked / "run" / run_directory.SUMMARY_FILE).read_text())
    board = next((tracked / "run" / run_directory.TENSORBOARD_DIR).iterdir())
    acc = event_accumulator.EventAccumulator(str(board), size_guidance={event_accumulator.IMAGES: 0})
    acc.Reload()
    (event,) = acc.Images(tracking.VIDEO_TAG)
    assert event.step == summary["env_steps_per_run"]
    with Image.open(io.BytesIO(event.encoded_image_string)) as gif:
        assert gif.format == "GIF" and gif.n_frames > 1 and gif.size == (event.width, event.height)
    media = list((tracked / "wandb-dir" / "wandb").glob("offline-run-*/files/media/videos/**/*.gif"))
    assert len(media) == 1 and media[0].stat().st_size > 0
