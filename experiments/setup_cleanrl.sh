#!/usr/bin/env bash
# Prepare CleanRL's dqn_jax.py (CartPole) and dqn_atari_jax.py (Breakout) for side-by-side speed
# comparisons (experiments/vs_cleanrl.py), outside every repo, the way
# ../shared/peers/setup_purejaxrl.sh prepares PureJaxRL's dqn.py.
#   experiments/setup_cleanrl.sh CLEANRL_GIT_DIR [SCRATCH]
# CLEANRL_GIT_DIR: a git directory (clone or bare mirror) of the public repository
# vwxyzjn/cleanrl. SCRATCH (default ${TMPDIR:-/tmp}/peers/cleanrl) receives from HEAD
# cleanrl/dqn_jax.py, cleanrl/dqn_atari_jax.py, cleanrl_utils/buffers.py (their replay buffer: a
# torch-based copy of stable-baselines3's, which CleanRL vendors since July 2025) and
# cleanrl_utils/atari_wrappers.py (stable-baselines3's Atari wrappers, vendored the same way),
# the two scripts patched only where gymnasium 1.3 / ale-py 0.12 break them, plus a venv with
# purejaxdqn's jax stack and what they import (tyro, torch CPU for the replay buffer's tensors
# and torch.utils.tensorboard.SummaryWriter, tensorboard; for Atari ale-py, which ships the ROMs,
# and opencv for gymnasium's ResizeObservation). The algorithms and their default
# hyperparameters are untouched. A few minutes (torch is ~200 MB). Rerunning it re-extracts the
# files and installs only what the venv lacks. Never copy anything from SCRATCH into the project.
set -euo pipefail
mirror=${1:?usage: setup_cleanrl.sh CLEANRL_GIT_DIR [SCRATCH]}
scratch=${2:-${TMPDIR:-/tmp}/peers/cleanrl}
mkdir -p "$scratch"
git -C "$mirror" archive HEAD cleanrl/dqn_jax.py cleanrl/dqn_atari_jax.py cleanrl_utils/__init__.py \
  cleanrl_utils/buffers.py cleanrl_utils/atari_wrappers.py | tar -x -C "$scratch"
git -C "$mirror" rev-parse HEAD >"$scratch/COMMIT"
python3 - "$scratch/cleanrl" <<'PY'
import sys
from pathlib import Path

# Edits both scripts need, dqn_jax.py and dqn_atari_jax.py having the same env loop.
common = [
    # gymnasium 1.x: vector envs default to NEXT_STEP autoreset (the step after an episode's end
    # only resets, ignoring the action, and gives no final observation). Both scripts were written
    # for 0.29's behaviour, which 1.x names SAME_STEP: reset within the ending step, the last
    # observation in the infos. Asking for it keeps the algorithm (every step is a real one).
    ("for i in range(args.num_envs)]\n    )",
     "for i in range(args.num_envs)],\n        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,\n    )"),
    # gymnasium 1.x: infos["final_info"] is one dict of per-env arrays (with an "_episode" mask),
    # no longer a list of per-env dicts; same prints and TensorBoard scalars as before.
    ('        if "final_info" in infos:\n'
     '            for info in infos["final_info"]:\n'
     '                if info and "episode" in info:\n'
     '''                    print(f"global_step={global_step}, episodic_return={info['episode']['r']}")\n'''
     '                    writer.add_scalar("charts/episodic_return", info["episode"]["r"], global_step)\n'
     '                    writer.add_scalar("charts/episodic_length", info["episode"]["l"], global_step)\n',
     '        if "final_info" in infos and "episode" in infos["final_info"]:\n'
     '            for i in np.flatnonzero(infos["final_info"]["_episode"]):\n'
     '                ep = infos["final_info"]["episode"]\n'
     '''                print(f"global_step={global_step}, episodic_return={ep['r'][i]}")\n'''
     '                writer.add_scalar("charts/episodic_return", ep["r"][i], global_step)\n'
     '                writer.add_scalar("charts/episodic_length", ep["l"][i], global_step)\n'),
    # gymnasium 1.x: the last observation of an ended episode is infos["final_obs"] (0.29:
    # "final_observation").
    ('infos["final_observation"][idx]', 'infos["final_obs"][idx]'),
]
atari = [
    # gymnasium 1.x no longer loads ale-py's env ids through a plugin entry point: importing
    # ale_py registers them (BreakoutNoFrameskip-v4, the script's default id, among them).
    ("import gymnasium as gym\n", "import gymnasium as gym\nimport ale_py  # noqa: F401  (registers the ALE ids)\n"),
    # gymnasium 1.0 renamed these two wrappers. GrayscaleObservation (same keep_dim=False default)
    # now weighs R, G, B itself instead of calling cv2.cvtColor: the same luminance up to rounding.
    ("gym.wrappers.GrayScaleObservation(env)", "gym.wrappers.GrayscaleObservation(env)"),
    # FrameStackObservation's default padding_type="reset" fills the stack with the reset frame,
    # as 0.29's FrameStack did; it returns an array instead of LazyFrames (the buffer copies both).
    ("gym.wrappers.FrameStack(env, 4)", "gym.wrappers.FrameStackObservation(env, 4)"),
]
for name, edits in (("dqn_jax.py", common), ("dqn_atari_jax.py", common + atari)):
    p = Path(sys.argv[1]) / name
    s = p.read_text()
    if "AutoresetMode.SAME_STEP" in s:
        continue  # already patched
    for old, new in edits:
        if s.count(old) != 1:
            sys.exit(f"setup_cleanrl: {name} does not contain, once, the expected text: {old[:70]!r}")
        s = s.replace(old, new)
    p.write_text(s)
PY
[ -x "$scratch/venv/bin/python" ] || python3 -m venv "$scratch/venv"
if ! "$scratch/venv/bin/python" -c "import jax, flax, optax, gymnasium, tyro, tensorboard, psutil, torch, ale_py, cv2" 2>/dev/null; then
  # purejaxdqn's versions of jax, flax, optax, numpy, gymnasium and ale-py. torch: its CPU build
  # where pip's find-links has that wheel (this machine's does), else PyPI's (which brings CUDA
  # libraries).
  pkgs=("jax==0.10.2" "jaxlib==0.10.2" "flax==0.12.8" "optax==0.2.8" "numpy==2.4.6"
        "gymnasium==1.3.0" "ale-py==0.12.1" "opencv-python-headless==4.14.0.94"
        "tyro==1.0.16" "tensorboard==2.21.0" psutil)
  "$scratch/venv/bin/pip" install -q "${pkgs[@]}" "torch==2.13.0+cpu" \
    || "$scratch/venv/bin/pip" install -q "${pkgs[@]}" "torch<=2.14.1"
fi
echo "ready (cleanrl $(cat "$scratch/COMMIT")):"
echo "  cd \$(mktemp -d) && PYTHONPATH=$scratch $scratch/venv/bin/python $scratch/cleanrl/dqn_jax.py --total-timesteps 50000"
echo "  cd \$(mktemp -d) && PYTHONPATH=$scratch $scratch/venv/bin/python $scratch/cleanrl/dqn_atari_jax.py --total-timesteps 100000"
