"""A run's budget (config/budget.py): schedules as fractions of the run, a run exactly as long as
asked, and the warnings for schedules that do not fit it, each against a plain recomputation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from purejaxdqn import Config, ConfigError, cli
from purejaxdqn.cli import make_plan
from purejaxdqn.config import budget
from purejaxdqn.host import report, run_directory

from tiny import TINY


def test_fractions_are_the_step_counts_they_stand_for():
    config = Config(total_steps=20_000)
    assert budget.from_fractions(config, {"exploration_fraction": 0.5, "learning_starts_fraction": 0.05}) == {
        "eps_decay_steps": 10_000, "learning_starts": 1_000,
    }  # fmt: skip
    assert budget.from_fractions(config, {"learning_starts_fraction": 0.0}) == {"learning_starts": 0}
    assert budget.from_fractions(Config(total_steps=3), {"exploration_fraction": 0.01}) == {"eps_decay_steps": 1}
    for name, bad in (("exploration_fraction", 0.0), ("exploration_fraction", 1.5), ("learning_starts_fraction", -0.1)):
        with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')}: must be a fraction of the run"):
            budget.from_fractions(config, {name: bad})


def test_a_fraction_on_the_command_line_sets_the_steps_and_refuses_the_steps_too():
    plan = make_plan(["--total-steps", "20000", "--exploration-fraction", "0.5", "--learning-starts-fraction", "0.05"])
    assert (plan.config.eps_decay_steps, plan.config.learning_starts) == (10_000, 1_000)
    assert make_plan(["--env-id", "Breakout-MinAtar", "--exploration-fraction", "0.25"]).config.eps_decay_steps == 250_000
    for argv, message in (
        (["--exploration-fraction", "0.5", "--eps-decay-steps", "100"], "contradicts --eps-decay-steps"),
        (["--learning-starts-fraction", "0.1", "--sweep", "learning_starts=100,200"], "contradicts --sweep learning_starts"),
        (["--exploration-fraction", "nan"], "must be a fraction of the run"),
    ):
        with pytest.raises(ConfigError, match=message):
            make_plan(argv)


def _exact_chunks_reference(total: int, envs: int, chunks: int) -> int | None:
    """Brute force: among all chunk counts within a factor 2 that split the vectorized steps
    evenly, the nearest (ties: the larger); None when the run is already exact or cannot be."""
    iterations = -(-total // envs)
    if total % envs or -(-iterations // chunks) * chunks == iterations:
        return None
    fits = [d for d in range(max(1, chunks // 2), 2 * chunks + 1) if iterations % d == 0]
    return sorted(fits, key=lambda d: (abs(d - chunks), -d))[0] if fits else None


def test_the_chunk_count_for_an_exact_length_is_the_nearest_divisor():
    rng = np.random.default_rng(0)
    for _ in range(300):
        envs, chunks = int(rng.integers(1, 17)), int(rng.integers(1, 40))
        total = int(rng.integers(1, 3000)) * (envs if rng.random() < 0.8 else 1)
        config = Config(total_steps=total, num_envs=envs, num_chunks=chunks, eval_every=total)
        found = budget.chunks_for_exact_length(config)
        assert found == _exact_chunks_reference(total, envs, chunks), (total, envs, chunks)
        if found:
            assert config.replace(num_chunks=found).actual_total_steps == total


def test_a_new_run_is_as_long_as_asked_or_says_why_not(tmp_path):
    """The issue's 20000 steps of the CartPole preset (15 chunks of 10 envs: 20,100 before):
    exactly 20,000 steps, the last eval at 20,000 with none after it; a --num-chunks given on
    the command line stays and the warning names the count that would fit."""
    plan = make_plan(["--total-steps", "20000"])
    assert plan.config.actual_total_steps == 20_000 and plan.config.num_chunks == 16
    assert not any("not the 20,000 asked" in w for w in plan.warnings)
    kept = make_plan(["--total-steps", "20000", "--num-chunks", "15"])
    assert kept.config.num_chunks == 15 and kept.config.actual_total_steps == 20_100
    assert "the run is 20,100 env steps, not the 20,000 asked" in kept.warnings[0] and "--num-chunks 16" in kept.warnings[0]
    odd = make_plan(["--total-steps", "20005"])
    assert "--total-steps" in budget.length_note(odd.config) and odd.config.actual_total_steps > 20_005
    out = tmp_path / "run"
    tiny = [a for i, a in enumerate(TINY) if "--num-chunks" not in TINY[max(i - 1, 0) : i + 1]]
    args = [*tiny, "--total-steps", "2000", "--eval-every", "500"]  # the preset's 15 chunks of 500 vectorized steps
    assert make_plan(args).config.num_chunks == 20
    assert cli.main([*args, "--output-dir", str(out)]) == 0
    evals = [row["env_steps"] for row in run_directory.read_jsonl(out / run_directory.EVALS_FILE)]
    assert evals == [500, 1000, 1500, 2000]
    assert json.loads((out / run_directory.SUMMARY_FILE).read_text())["env_steps_per_run"] == 2000


@pytest.mark.parametrize("learning_starts,update_every,gradient_steps", [(500, 10, 1), (505, 4, 2), (4, 3, 1)])
def test_updates_per_run_is_what_the_loop_does(tmp_path, learning_starts, update_every, gradient_steps):
    args = [*TINY, "--learning-starts", str(learning_starts), "--update-every", str(update_every),
            "--gradient-steps", str(gradient_steps), "--batch-size", "4", "--output-dir", str(tmp_path / "run")]  # fmt: skip
    plan = make_plan(args)
    assert cli.main(args) == 0
    summary = json.loads((tmp_path / "run" / run_directory.SUMMARY_FILE).read_text())
    assert summary["updates_per_run"] == [budget.updates_per_run(plan.config)]


def test_schedules_that_do_not_fit_the_run_are_warned_once_each():
    issue = make_plan(["--num-seeds", "4", "--sweep", "lr=1e-3,3e-4", "--total-steps", "20000"])
    exploration = [w for w in issue.warnings if w.startswith("exploration does not finish")]
    assert len(exploration) == 1 and "ending at epsilon 0.81" in exploration[0]  # 1 - 0.95 * 20k / 100k
    late = make_plan(["--total-steps", "20000", "--exploration-fraction", "0.5", "--sweep", "learning_starts=1000,12000"])
    assert [w for w in late.warnings if "learning starts at 12,000" in w]  # the worst swept value
    few = make_plan(["--total-steps", "12000", "--exploration-fraction", "0.5"])  # rounds at 10,000, 10,010, ..., 12,000
    assert any("only 201 updates" in w for w in few.warnings)
    assert any("only the final evaluation runs" in w for w in make_plan(["--eval-every", "300000"]).warnings)
    assert make_plan([]).warnings == () and make_plan(["--env-id", "Seaquest-MinAtar"]).warnings == ()
    assert make_plan(["--env-id", "FourRooms-misc", "--exploration-fraction", "0.5"]).warnings == (
        "FourRooms-misc has no tuned preset: the plain defaults (--preset none) with the options given",
    )
    assert make_plan(["--env-id", "FourRooms-misc", "--preset", "none", "--exploration-fraction", "0.5"]).warnings == ()


def test_warnings_go_to_stderr_and_summary_json_but_not_with_no_progress_or_on_resume(tmp_path, capsys):
    args = [*TINY, "--eps-decay-steps", "50000", "--checkpoint-min-interval", "0"]
    out = tmp_path / "run"
    assert cli.main([*[a for a in args if a != "--no-progress"], "--progress", "--output-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert "warning: exploration does not finish" in err and "warning: each run does only 251 updates" in err
    summary = json.loads((out / run_directory.SUMMARY_FILE).read_text())
    assert len(summary["warnings"]) == 2 and summary["warnings"][0].startswith("exploration does not finish")
    assert cli.main([*args, "--output-dir", str(tmp_path / "quiet")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "quiet" / run_directory.SUMMARY_FILE).read_text())["warnings"] == summary["warnings"]


def test_a_c51_support_too_narrow_for_the_returns_is_warned_at_the_end(tmp_path, capsys):
    """CartPole's +1 per step against a [-0.5, 0.5] support: the projected targets pile on v_max,
    the last chunk's mean Q sits at its end and the command says so; [0, 100] fits and is quiet."""
    assert report.support_warning(-10, 10, [9.5, None, 3.0]).startswith("the C51 support [-10, 10] looks too narrow")
    assert "--v-min" in report.support_warning(-10, 10, [-9.8]) and report.support_warning(-10, 10, [0.0, None]) is None
    for support, warned in ((["--v-min", "-0.5", "--v-max", "0.5"], True), (["--v-min", "0", "--v-max", "100"], False)):
        out = tmp_path / support[-1]
        fast = ["--lr", "0.01", "--update-every", "1", "--target-update-every", "10"]  # 2,501 updates
        assert cli.main([*TINY, *fast, "--distributional", *support, "--output-dir", str(out)]) == 0
        q = json.loads((out / run_directory.SUMMARY_FILE).read_text())["last_chunk_q_mean"]
        assert ("looks too narrow" in capsys.readouterr().err) == warned, q
        assert q[0] >= 0.45 if warned else 0 < q[0] < 90


def test_a_fraction_next_to_resume_is_compared_with_the_saved_steps(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*TINY, "--exploration-fraction", "0.5", "--output-dir", str(out)]) == 0
    assert json.loads((out / run_directory.CONFIG_FILE).read_text())["config"]["eps_decay_steps"] == 1500
    assert cli.main(["--resume", str(out), "--exploration-fraction", "0.9"]) == 2
    assert "eps_decay_steps (saved 1500, given 2700)" in capsys.readouterr().err
