"""Presets: named sets of overrides on top of `Config`'s defaults, as data.

Each preset is a `Preset` record: its name, a one-line summary (the `--preset` help and the
README's table), the overrides, and notes (what the settings are and why: where they come from
and what tuning found; the README's table). A preset with an `env_id` is a *base* preset for
that env, and `default=True` makes it the env's default; one without is a *modifier* that stacks
on a base (`--preset breakout,rainbow`). Listed left to right, later ones win; explicit options
win over all.

`help_text()` and `markdown_table()` generate the `--preset` help and the README's table from
the records (a test checks the README's table is the generated one).
"""

from __future__ import annotations

from typing import NamedTuple

from purejaxdqn.config.schema import Config, ConfigError
from purejaxdqn.envs.atari_adapter import IDS as ATARI_IDS


class Preset(NamedTuple):
    name: str
    summary: str  # one line, plain text: the --preset help and the README's table
    overrides: dict  # settings on top of Config's defaults; an env_id makes it a base preset
    notes: str  # the settings and the reasons for them, one paragraph (markdown): the README's table
    default: bool = False  # a base preset that is its env's default (one per env at most)
    family: tuple = ()  # (label, ids): a base preset made for all these envs, `env_id` the one it picks

    @property
    def env_id(self) -> str | None:
        """The env a base preset is made for (the first of its family); None for a modifier."""
        return self.overrides.get("env_id")

    @property
    def env_ids(self) -> tuple[str, ...]:
        """Every env a base preset is made for."""
        return self.family[1] if self.family else ((self.env_id,) if self.env_id else ())


# The MinAtar game presets share their settings: the MinAtar paper's DQN with Adam and 8 envs.
_MINATAR = {
    "torso": "conv",
    "widths": (128,),
    "num_envs": 8,
    "num_eval_envs": 16,
    "total_steps": 1_000_000,
    "num_chunks": 20,
    "eval_every": 50_000,
    "buffer_size": 100_000,
    "batch_size": 32,
    "update_every": 1,
    "loss": "huber",
    "lr": 1e-4,
    "target_update_every": 1_000,
    "learning_starts": 5_000,
    "eps_end": 0.1,
    "eps_decay_steps": 100_000,
}
_MINATAR_SUMMARY = "the MinAtar paper's DQN (Young & Tian 2019) with Adam"
_MINATAR_NOTES = (
    "Conv 16 3x3 -> dense 128, batch 32, replay 100k, one update per env step, target copy every "
    "1000 updates, epsilon 1 -> 0.1 over 100k steps, Huber loss, as in the paper; Adam lr 1e-4 "
    "instead of its RMSProp, and 8 envs stepped together (still one update per env step); 1M steps."
)

# MiniGrid (XLand-MiniGrid): one-hot 7x7 views, a sparse reward 1 - 0.9 t / T at the goal.
# Both families' settings are sized for a CPU: an MLP 128-128 and batch 64 (on 1,225 or 725
# inputs a 256-wide batch-128 update is 4x the cost, ~100 updates/s on 2 cores).
_CPU_FAMILY = {  # what the MiniGrid, Jumanji and Craftax presets share
    "num_envs": 16, "num_eval_envs": 16, "widths": (128, 128), "lr": 5e-4, "batch_size": 64,
    "learning_starts": 2_000, "update_every": 4, "target_update_every": 250, "n_step": 3, "eps_end": 0.05,
    "eps_decay_steps": 50_000,
}  # fmt: skip
_MINIGRID = {**_CPU_FAMILY, "total_steps": 160_000, "num_chunks": 10, "eval_every": 16_000, "buffer_size": 50_000}
_MINIGRID_SUMMARY = "a MiniGrid task of XLand-MiniGrid, MLP on the one-hot view, 3-step Double DQN"
_MINIGRID_NOTES = (
    "160k steps, 16 envs, MLP 128-128 on the 7x7x25 one-hot view, Adam lr 5e-4, replay 50k, batch "
    "64, one update every 4 env steps, target copy every 250 updates, 3-step Double DQN targets, "
    "epsilon 1 -> 0.05 over 50k steps, learning starts 2k, eval every 16k steps on 16 envs."
)
# Jumanji and Craftax: flat float observations (Jumanji's action mask closing the vector).
_VECTOR_FAMILY = {**_CPU_FAMILY, "total_steps": 100_000, "num_chunks": 5, "eval_every": 20_000, "buffer_size": 100_000}
_VECTOR_NOTES = (
    "100k steps, 16 envs, MLP 128-128, Adam lr 5e-4, replay 100k, batch 64, one update every 4 env "
    "steps, target copy every 250 updates, 3-step Double DQN targets, epsilon 1 -> 0.05 over 50k "
    "steps, learning starts 2k, eval every 20k steps on 16 envs."
)

# CleanRL's dqn_atari_jax.py (the Nature DQN's settings with Adam), in this project's units.
_ATARI = {
    "env_id": "Breakout", "torso": "nature", "widths": (512,), "num_envs": 8, "num_eval_envs": 8,
    "total_steps": 10_000_000, "num_chunks": 40, "eval_every": 250_000, "eval_epsilon": 0.05,
    "buffer_size": 1_000_000, "batch_size": 32, "learning_starts": 80_000, "update_every": 4,
    "target_update_every": 250, "lr": 1e-4, "double_dqn": False, "loss": "mse", "max_grad_norm": 0.0,
    "eps_end": 0.01, "eps_decay_steps": 1_000_000, "clip_rewards": True, "episodic_life": True, "noop_max": 30,
}  # fmt: skip

RECORDS: tuple[Preset, ...] = (
    # The reference workload of ../shared/notes/references.md.
    Preset(
        "reference",
        "exactly CleanRL's and PureJaxRL's CartPole DQN, the workload every speed comparison uses",
        {"env_id": "CartPole-v1", "double_dqn": False, "max_grad_norm": 0.0},
        "Vanilla DQN targets (no Double DQN), MSE loss, Adam lr 2.5e-4 without gradient clipping, "
        "500k steps, 10 envs, replay 10k, batch 128, update every 10 env steps, MLP 120-84, target "
        "copy every 50 updates (= 500 env steps), epsilon 1 -> 0.05 over 250k steps, learning starts "
        "10k. The plain defaults (`--preset none`) are the same but with Double DQN and clipping at "
        "norm 10.",
    ),
    Preset(
        "cartpole",
        "the reference algorithm on a compressed schedule, chosen for solving and staying solved",
        _CARTPOLE := {
            "env_id": "CartPole-v1",
            "double_dqn": False,
            "max_grad_norm": 0.0,
            "total_steps": 300_000,
            "num_chunks": 15,
            "eval_every": 20_000,
            "eps_decay_steps": 100_000,
        },
        "300k steps, epsilon 1 -> 0.05 over the first 100k, 15 chunks, eval every 20k steps; "
        "everything else as `reference` (vanilla DQN, MSE, Adam lr 2.5e-4 unclipped, MLP 120-84). "
        "Faster-learning settings (lr 1e-3 and up, several updates per step, Double DQN, larger "
        "batches) solved sooner but often collapsed again after solving; this one keeps improving "
        "slowly. Tuning seeds 0-9: 9/10 >= 475 at each of the last 3 evals.",
        default=True,
    ),
    Preset(
        "gymnasium-cartpole",
        "the cartpole preset on gymnasium's CartPole-v1, stepped on the host (the actor-learner)",
        {**_CARTPOLE, "env_id": "gymnasium:CartPole-v1"},
        "`cartpole`'s settings exactly, on gymnasium's own CartPole-v1 (the same dynamics as gymnax's), "
        "stepped on the host by 1 actor thread with the learner beside it (`--actors`, `--host-loop`). "
        "Seeds nobody tuned on: see BENCHMARKS.md (the actor-learner).",
        default=True,
    ),
    Preset(
        "acrobot",
        "RL Baselines3 Zoo's tuned DQN",
        {
            "env_id": "Acrobot-v1",
            "total_steps": 100_000,
            "num_chunks": 10,
            "eval_every": 10_000,
            "widths": (256, 256),
            "lr": 6.3e-4,
            "buffer_size": 50_000,
            "batch_size": 128,
            "learning_starts": 1_000,
            "update_every": 4,
            "gradient_steps": 4,
            "target_update_every": 250,
            "eps_end": 0.1,
            "eps_decay_steps": 12_000,
        },
        "100k steps, MLP 256-256, lr 6.3e-4, replay 50k, batch 128, 4 updates every 4 env steps "
        "(one per env step, as the Zoo's), target copy every 250 updates (the Zoo's 250 env steps), "
        "epsilon 1 -> 0.1 over 12k steps, learning starts 1k. Tuning seeds 0-9: mean -75.6, 9/10 at "
        "or above CleanRL's -88.9 (the plain defaults at 500k steps: mean -84.4, 8/10).",
        default=True,
    ),
    Preset(
        "mountaincar",
        "RL Baselines3 Zoo's tuned DQN",
        {
            "env_id": "MountainCar-v0",
            "total_steps": 120_000,
            "num_chunks": 12,
            "eval_every": 10_000,
            "widths": (256, 256),
            "lr": 4e-3,
            "gamma": 0.98,
            "buffer_size": 10_000,
            "batch_size": 128,
            "learning_starts": 1_000,
            "update_every": 16,
            "gradient_steps": 8,
            "target_update_every": 300,
            "eps_end": 0.07,
            "eps_decay_steps": 24_000,
        },
        "120k steps, MLP 256-256, lr 4e-3, gamma 0.98, replay 10k, batch 128, 8 updates every 16 env "
        "steps, target copy every 300 updates (the Zoo's 600 env steps), epsilon 1 -> 0.07 over 24k "
        "steps, learning starts 1k. Tuning seeds 0-9: mean -134.3, worst -189.0 (the plain defaults "
        "at 500k steps: mean -183.4, 6 of 10 seeds end at -200).",
        default=True,
    ),
    Preset("breakout", _MINATAR_SUMMARY, {**_MINATAR, "env_id": "Breakout-MinAtar"}, _MINATAR_NOTES, default=True),
    Preset("freeway", _MINATAR_SUMMARY, {**_MINATAR, "env_id": "Freeway-MinAtar"}, _MINATAR_NOTES, default=True),
    Preset("asterix", _MINATAR_SUMMARY, {**_MINATAR, "env_id": "Asterix-MinAtar"}, _MINATAR_NOTES, default=True),
    Preset(
        "space-invaders", _MINATAR_SUMMARY, {**_MINATAR, "env_id": "SpaceInvaders-MinAtar"}, _MINATAR_NOTES, default=True
    ),
    Preset("seaquest", _MINATAR_SUMMARY, {**_MINATAR, "env_id": "Seaquest-MinAtar"}, _MINATAR_NOTES, default=True),
    # The other families (purejaxdqn/envs): settings written down once, not tuned; the learning
    # suite judges them on unseen seeds (BENCHMARKS.md, "Env families").
    Preset("minigrid-empty", _MINIGRID_SUMMARY, {**_MINIGRID, "env_id": "MiniGrid-Empty-8x8"}, _MINIGRID_NOTES, default=True),
    Preset(
        "minigrid-doorkey", _MINIGRID_SUMMARY, {**_MINIGRID, "env_id": "MiniGrid-DoorKey-5x5"}, _MINIGRID_NOTES, default=True
    ),
    Preset(
        "snake",
        "Jumanji's Snake (12x12) with an MLP, 3-step Double DQN, masked actions",
        {**_VECTOR_FAMILY, "env_id": "Snake-v1"},
        _VECTOR_NOTES,
        default=True,
    ),
    Preset(
        "craftax-classic",
        "Craftax-Classic, symbolic observations, MLP 256-256, 3-step Double DQN",
        {**_VECTOR_FAMILY, "env_id": "Craftax-Classic-Symbolic-v1", "widths": (256, 256), "buffer_size": 50_000,
         "total_steps": 50_000, "num_chunks": 5, "eval_every": 10_000, "eps_decay_steps": 25_000, "reset_ratio": 16},  # fmt: skip
        "50k steps (what 2 CPU cores afford for 3 seeds; on a GPU raise --total-steps), 16 envs sharing one "
        "reset per step (--reset-ratio 16, as Craftax's own PPO baselines: a reset generates a world), MLP 256-256 on the "
        "1,345-float symbolic observation, Adam lr 5e-4, replay 50k, batch 64, one update every 4 env steps, "
        "target copy every 250 updates, 3-step Double DQN targets, epsilon 1 -> 0.05 over 25k steps, "
        "learning starts 2k, eval every 10k steps on 16 envs.",
        default=True,
    ),
    Preset(
        "atari",
        "the Nature DQN as CleanRL's dqn_atari_jax.py runs it (Adam), on ale-py's preprocessing",
        _ATARI,
        "10M steps (40M frames), Nature CNN (convs 32 8x8/4, 64 4x4/2, 64 3x3/1, then 512), Adam lr 1e-4 "
        "unclipped, MSE, vanilla DQN targets, replay 1M stored as single frames (`--replay-layout auto`), batch 32, "
        "learning starts 80k, one update every 4 env steps, target copy every 250 updates (CleanRL's 1,000 env "
        "steps), epsilon 1 -> 0.01 over 1M steps, rewards clipped to their sign in replay, a lost life ends the TD "
        "target, up to 30 no-ops at a reset; 8 envs (CleanRL steps 1: the same updates per env step), eval every "
        "250k steps on 8 episodes at epsilon 0.05. `--env-id` picks the game (Breakout without one).",
        default=True, family=("every Atari game", ATARI_IDS),
    ),
    Preset(
        "machado",
        "Machado et al. (2018)'s Atari protocol: sticky actions 0.25, all 18 actions, no life loss signal",
        {"sticky_actions": 0.25, "full_action_set": True, "episodic_life": False},
        "Sticky actions at the emulator's frame level with p = 0.25, the full action set, and no end of the TD "
        "target at a lost life; stacks on `atari` (and with `rainbow`).",
    ),
    Preset(
        "rainbow",
        "Rainbow without noisy nets: Double, dueling, 3-step, prioritized, C51",
        {
            "double_dqn": True,
            "dueling": True,
            "n_step": 3,
            "prioritized": True,
            "distributional": True,
            "lr": 1e-4,
            "adam_eps": 3.125e-4,
        },
        "Prioritized replay with alpha 0.5 and beta 0.4 -> 1, C51 with 51 atoms on [-10, 10] (the "
        "defaults of those settings), and the Adam settings of Dopamine's Rainbow: lr 1e-4, eps "
        "3.125e-4. Without noisy nets exploration stays epsilon-greedy (as in Dopamine's Rainbow "
        "defaults).",
    ),
    Preset(
        "original",
        "MinAtar's original protocol: all 6 actions, sticky actions 0.1",
        {"full_action_set": True, "sticky_actions": 0.1},
        "Sticky actions with p = 0.1: an env repeats its previous action with that probability. "
        "gymnax defaults to each game's minimal action set and no sticky actions.",
    ),
    Preset(
        "minatar-paper",
        "the MinAtar paper's learner: RMSProp, one env, vanilla DQN, no clipping",
        {"optimizer": "rmsprop", "lr": 2.5e-4, "num_envs": 1, "double_dqn": False, "max_grad_norm": 0.0},
        "Exactly the paper's: centered RMSProp lr 2.5e-4, one env, vanilla DQN targets, no gradient "
        "clipping. `--preset freeway,original,minatar-paper` is the paper's whole setup. On Freeway it "
        "keeps improving where the Adam preset levels off (training return ~43-48 against ~34 at 1M), "
        "but it starts slowly and 1 of 4 unseen seeds never learned. BENCHMARKS.md has the figures "
        '("Freeway: where the gap comes from").',
    ),
)

# Each preset's overrides by name, in the order of `RECORDS`.
PRESETS: dict[str, dict] = {p.name: p.overrides for p in RECORDS}

# The base preset used when none is named, per env.
DEFAULT_PRESETS: dict[str, str] = {e: p.name for p in RECORDS if p.default for e in p.env_ids}
# The envs each base preset is made for, by name.
PRESET_ENVS: dict[str, tuple[str, ...]] = {p.name: p.env_ids for p in RECORDS}

if len(PRESETS) != len(RECORDS) or len(DEFAULT_PRESETS) != sum(len(p.env_ids) for p in RECORDS if p.default):
    raise ValueError("presets: a name given twice, or two defaults for one env")
if any(p.default and not p.env_id for p in RECORDS):
    raise ValueError("presets: a modifier cannot be an env's default")


def preset_names(spec: str | None, env_id: str | None = None) -> list[str]:
    """The presets `spec` ('a,b,...'; None = the env's default) applies, in order.

    Without a base preset in `spec`, the env's default base preset (if any) goes first; 'none'
    means plain defaults plus the modifiers listed.
    """
    names = [n.strip() for n in spec.split(",")] if spec else []
    for name in names:
        if name not in PRESETS and name != "none":
            raise ConfigError("--preset", f"unknown preset {name!r}; choose from {', '.join([*PRESETS, 'none'])}")
    bases = [n for n in names if "env_id" in PRESETS.get(n, {})]
    if len(bases) > 1:
        raise ConfigError("--preset", f"{' and '.join(map(repr, bases))} are both made for an env (at most one such preset, "
                          "plus modifiers)")  # fmt: skip
    if "none" in names:
        return [n for n in names if n != "none"]
    if not bases:
        default = DEFAULT_PRESETS.get(Config.env_id if env_id is None else env_id)
        names = [default, *names] if default else names
    return names


def from_preset(spec: str | None, **overrides) -> Config:
    """A config from presets (see `preset_names`) plus explicit overrides."""
    settings: dict = {}
    for name in preset_names(spec, overrides.get("env_id")):
        preset_env = PRESETS[name].get("env_id")
        if preset_env and overrides.get("env_id", preset_env) not in PRESET_ENVS[name]:
            raise ConfigError("--preset", f"{name!r} is made for {preset_env} and contradicts --env-id {overrides['env_id']}")
        settings.update(PRESETS[name])
    settings.update(overrides)
    return Config().replace(**settings)


# ------------------------------------------------------------------ generated documentation
def _groups(records) -> list[list[Preset]]:
    """Consecutive presets that read the same (same summary, notes and default role, e.g. the
    MinAtar games) as one group each."""
    groups: list[list[Preset]] = []
    for p in records:
        last = groups[-1][0] if groups else None
        if last and (last.summary, last.notes, last.default, bool(last.env_id)) == (p.summary, p.notes, p.default, bool(p.env_id)):
            groups[-1].append(p)
        else:
            groups.append([p])
    return groups


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _envs(group: list[Preset], sentence: bool = False) -> str:
    """Which env a group of base presets is made for, and whether it is the default there: as a
    clause ('the default on X', 'for X') or, with `sentence`, a sentence ('The default on X.')."""
    envs = group[0].family[0] if group[0].family else _and([p.env_id for p in group])
    if not group[0].default:
        return f"Made for {envs}." if sentence else f"for {envs}"
    clause = f"default on {envs}" if len(group) == 1 else f"defaults on {envs}"
    return f"The {clause}." if sentence else f"the {clause}"


def help_text() -> str:
    """The help of the `--preset` option, generated from the records (plain text, no '%')."""
    bases = [g for g in _groups(RECORDS) if g[0].env_id]
    modifiers = [g for g in _groups(RECORDS) if not g[0].env_id]
    base_text = "; ".join(f"{', '.join(repr(p.name) for p in g)} ({g[0].summary}; {_envs(g)})" for g in bases)
    modifier_text = "; ".join(f"{', '.join(repr(p.name) for p in g)} ({g[0].summary})" for g in modifiers)
    return (
        f"named settings to start from, applied left to right. Base presets, each made for one env: {base_text}. "
        f"Modifiers, which stack on a base: {modifier_text}. 'none' = plain defaults. A list without a base "
        f"preset starts from the env's default one, e.g. --env-id Breakout-MinAtar --preset rainbow"
    )


def markdown_table() -> str:
    """The README's table of presets (its "### Presets" section), generated from the records."""
    rows = ["| preset | what |", "|---|---|"]
    for g in _groups(RECORDS):
        names = ", ".join(f"`{p.name}`" for p in g)
        if g[0].env_id:
            cell = f"{g[0].summary}. {g[0].notes} {_envs(g, sentence=True)}"
        else:
            names += " (modifier)"
            cell = f"{g[0].summary}. {g[0].notes}"
        rows.append(f"| {names} | {cell} |")
    return "\n".join(rows) + "\n"
