#!/usr/bin/env bash
# Prepare CleanRL's dqn_jax.py for a side-by-side speed comparison (experiments/vs_cleanrl.py),
# outside every repo, the way ../shared/peers/setup_purejaxrl.sh prepares PureJaxRL's dqn.py.
#   experiments/setup_cleanrl.sh CLEANRL_GIT_DIR [SCRATCH]
# CLEANRL_GIT_DIR: a git directory (clone or bare mirror) of the public repository
# vwxyzjn/cleanrl. SCRATCH (default ${TMPDIR:-/tmp}/peers/cleanrl) receives cleanrl/dqn_jax.py
# and cleanrl_utils/buffers.py (its replay buffer: a torch-based copy of stable-baselines3's,
# which CleanRL vendors since July 2025) from HEAD, patched only where gymnasium 1.3 breaks
# them, plus a venv with purejaxdqn's jax stack and what dqn_jax.py imports (tyro, torch CPU for
# the replay buffer's tensors and torch.utils.tensorboard.SummaryWriter, tensorboard). The
# algorithm and its default hyperparameters are untouched. A few minutes (torch is ~200 MB).
# Never copy anything from SCRATCH into the project.
set -euo pipefail
mirror=${1:?usage: setup_cleanrl.sh CLEANRL_GIT_DIR [SCRATCH]}
scratch=${2:-${TMPDIR:-/tmp}/peers/cleanrl}
mkdir -p "$scratch"
git -C "$mirror" archive HEAD cleanrl/dqn_jax.py cleanrl_utils/__init__.py cleanrl_utils/buffers.py \
  | tar -x -C "$scratch"
git -C "$mirror" rev-parse HEAD >"$scratch/COMMIT"
python3 - "$scratch/cleanrl/dqn_jax.py" <<'PY'
import sys
p = sys.argv[1]; s = open(p).read()
if "AutoresetMode.SAME_STEP" in s:
    sys.exit(0)  # already patched
edits = [
    # gymnasium 1.x: vector envs default to NEXT_STEP autoreset (the step after an episode's end
    # only resets, ignoring the action, and gives no final observation). dqn_jax.py was written
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
for old, new in edits:
    if s.count(old) != 1:
        sys.exit(f"setup_cleanrl: dqn_jax.py does not contain, once, the expected text: {old[:70]!r}")
    s = s.replace(old, new)
open(p, "w").write(s)
PY
if [ ! -x "$scratch/venv/bin/python" ]; then
  python3 -m venv "$scratch/venv"
  # purejaxdqn's versions of jax, flax, optax, numpy and gymnasium. torch: its CPU build where
  # pip's find-links has that wheel (this machine's does), else PyPI's (which brings CUDA libraries).
  pkgs=("jax==0.10.2" "jaxlib==0.10.2" "flax==0.12.8" "optax==0.2.8" "numpy==2.4.6"
        "gymnasium==1.3.0" "tyro==1.0.16" "tensorboard==2.21.0" psutil)
  "$scratch/venv/bin/pip" install -q "${pkgs[@]}" "torch==2.13.0+cpu" \
    || "$scratch/venv/bin/pip" install -q "${pkgs[@]}" "torch<=2.14.1"
fi
echo "ready (cleanrl $(cat "$scratch/COMMIT")):"
echo "  cd \$(mktemp -d) && PYTHONPATH=$scratch $scratch/venv/bin/python $scratch/cleanrl/dqn_jax.py --total-timesteps 50000"
