"""Results across runs: per-setting statistics over seeds, a printed table, learning curves."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np


def iqm(values) -> float:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end).

    With n values, floor(n / 4) are dropped at each end (fewer than 4 values: the plain mean).
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    k = len(x) // 4
    return float(x[k : len(x) - k].mean())


def setting_label(setting: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items()) or "config"


# Evaluations averaged for the end-of-run mean beside the final one: a run's last evaluation
# alone can be a lucky or unlucky moment (DQN on CartPole is known to collapse and recover).
LAST_K = 3


def last_evals_mean(eval_returns) -> np.ndarray:
    """Each run's mean of its last `LAST_K` eval returns (all of them when it had fewer);
    `eval_returns[i]` is run i's in order."""
    return np.asarray(eval_returns, dtype=np.float64)[:, -LAST_K:].mean(axis=1)


def summarize(runs: list[dict], eval_returns, settings: list[dict]) -> list[dict]:
    """One row per setting: mean, std (ddof 0), its standard error (ddof 1; 0 for one seed),
    IQM, min and max over its seeds of the final eval return, and `last_k_mean`: the mean over
    seeds of each seed's mean of its last `last_k` evals (`LAST_K`, or all of them when the run
    had fewer).

    `runs[i]["setting"]` indexes `settings`; `eval_returns[i]` is run i's eval returns in order.
    """
    eval_returns = np.asarray(eval_returns, dtype=np.float64)
    last = min(LAST_K, eval_returns.shape[1])
    final, last_k = eval_returns[:, -1], last_evals_mean(eval_returns)
    rows = []
    for index, setting in enumerate(settings):
        members = [i for i, r in enumerate(runs) if r["setting"] == index]
        values = final[members]
        se = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
        rows.append({
            "setting": index, "label": setting_label(setting), **setting, "seeds": len(values),
            "mean": float(values.mean()), "std": float(values.std()), "se": se, "iqm": iqm(values),
            "min": float(values.min()), "max": float(values.max()), "last_k": last, "last_k_mean": float(last_k[members].mean()),
        })  # fmt: skip
    return mark_best(rows)


def mark_best(rows: list[dict]) -> list[dict]:
    """Set row["best"] on the row with the highest IQM (ties: highest mean)."""
    best = max(range(len(rows)), key=lambda i: (rows[i]["iqm"], rows[i]["mean"]))
    for i, row in enumerate(rows):
        row["best"] = i == best
    return rows


SEPARATION = 2.0  # standard errors of the difference by which the best mean must lead


def why_no_clear_best(rows: list[dict]) -> str | None:
    """None when the best row (highest IQM) is clearly best: every setting has 2+ seeds and its
    mean leads every other setting's by more than SEPARATION standard errors of the difference
    (sqrt(se_a^2 + se_b^2)); else why no setting should be called best."""
    if len(rows) < 2:
        return "one setting"
    if min(r["seeds"] for r in rows) < 2:
        return "one seed per setting cannot tell settings apart (--num-seeds 2 or more)"
    best = next(r for r in rows if r["best"])
    for other in rows:
        if other is not best and best["mean"] - other["mean"] <= SEPARATION * np.hypot(best["se"], other["se"]):
            return (f"no setting is marked best: {best['label']} and {other['label']} are within {SEPARATION:g} "
                    f"standard errors of each other over {min(best['seeds'], other['seeds'])} seeds")  # fmt: skip
    return None


def format_table(rows: list[dict]) -> str:
    """A plain-text table; the best setting (highest IQM, then mean) is marked with '*' only
    when it clearly leads (`why_no_clear_best`), else the last line says why none is."""
    label_width = max(len("setting"), *(len(r["label"]) for r in rows))
    k = rows[0].get("last_k", LAST_K)
    unclear = why_no_clear_best(rows)
    lines = [f"  {'setting':<{label_width}}  seeds    mean     std     IQM     min     max  last {k}"]
    for r in rows:
        mark = "*" if r["best"] and unclear is None else " "
        last = f"{r['last_k_mean']:>7.1f}" if "last_k_mean" in r else "      -"
        lines.append(
            f"{mark} {r['label']:<{label_width}}  {r['seeds']:>5}  {r['mean']:>6.1f}  {r['std']:>6.1f}"
            f"  {r['iqm']:>6.1f}  {r['min']:>6.1f}  {r['max']:>6.1f}  {last}"
        )
    evals = "each seed's last eval" if k == 1 else f"each seed's last {k} evals"
    legend = f"final eval return across seeds (last {k}: mean of {evals})"
    if unclear is None:
        legend += f"; * = best setting (by IQM), its mean over {SEPARATION:g} standard errors above every other's"
    elif unclear != "one setting":
        legend += f"; {unclear}"
    lines.append(legend)
    return "\n".join(lines)


EDGE = 0.1  # of the C51 support's width: mean Q-values this close to an end are piled up there


def support_warning(v_min: float, v_max: float, q_means) -> str | None:
    """A C51 run whose last chunk's mean Q-values (one per run; NaN where no update ran) sit at
    an end of its support [v_min, v_max]: the returns do not fit it, so the support clips them
    (e.g. the Rainbow preset's [-10, 10] on CartPole, whose returns reach 100 at gamma 0.99)."""
    q = np.asarray([np.nan if x is None else x for x in q_means], dtype=np.float64)
    q = q[np.isfinite(q)]
    if not len(q):
        return None
    low, high = v_min + EDGE * (v_max - v_min), v_max - EDGE * (v_max - v_min)
    if q.max() < high and q.min() > low:
        return None
    edge, value = ("--v-max", q.max()) if q.max() >= high else ("--v-min", q.min())
    return (f"the C51 support [{v_min:g}, {v_max:g}] looks too narrow for this env's returns: mean Q-values reached "
            f"{value:.2f}, at its end; widen it ({edge}) to the discounted returns the env can give")


MARKER_POINTS = 20  # curves with at most this many points get a marker on every point


def training_returns(metric_rows: list[dict], num_runs: int) -> tuple[np.ndarray, np.ndarray]:
    """From metrics.jsonl rows: env steps per chunk [chunks] and each run's mean return of the
    training episodes that ended in that chunk [runs, chunks] (NaN where none ended)."""
    steps = sorted({row["env_steps"] for row in metric_rows})
    column = {step: j for j, step in enumerate(steps)}
    returns = np.full((num_runs, len(steps)), np.nan)
    for row in metric_rows:
        if row.get("train_return") is not None:
            returns[row["run"], column[row["env_steps"]]] = row["train_return"]
    return np.asarray(steps), returns


def plot_curves(path: Path, eval_steps, eval_mean, runs: list[dict], settings: list[dict], *, title: str,
                train: tuple | None = None) -> None:  # fmt: skip
    """PNG learning curves: the eval return, and beside it (with `train` = (steps,
    returns[runs, chunks]) from `training_returns`) the training episodes' return per chunk.
    One line per setting (mean over seeds), shaded band = min..max over seeds; markers on
    every point of a short curve, so a single eval point is still visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = "one eval point only: --eval-every >= --total-steps"
    panels = [("eval return", np.asarray(eval_steps), np.asarray(eval_mean, dtype=np.float64), single)]
    if train is not None and len(train[0]):
        panels.insert(0, ("training return (epsilon-greedy, per chunk)", np.asarray(train[0]), np.asarray(train[1], np.float64), ""))
    width_in, height_in = 6.5 * len(panels), 4.2
    fig, axes = plt.subplots(1, len(panels), figsize=(width_in, height_in), dpi=120, squeeze=False)
    for ax, (ylabel, steps, values, note) in zip(axes[0], panels):
        _plot_panel(ax, steps, values, runs, settings, note)
        ax.set_xlabel("env steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.subplots_adjust(**_margins(len(panels), width_in, height_in))
    # `path` may be a temporary name; the fastest zlib level: the PNG is ~1.2x larger, ~15 ms sooner
    fig.savefig(path, format="png", pil_kwargs={"compress_level": 1})
    plt.close(fig)


# Room for the labels, in inches: left of each panel, its y label and tick labels up to 7
# characters ("-999999": matplotlib's default formatter moves larger values into an offset).
PLOT_MARGINS_IN = {"left": 1.0, "right": 0.2, "bottom": 0.55, "top": 0.45, "between": 1.05}


def _margins(panels: int, width_in: float, height_in: float) -> dict[str, float]:
    """Fixed margins (PLOT_MARGINS_IN) as `subplots_adjust` fractions: `tight_layout` would
    fit them to the labels, at the cost of laying out the whole figure once more (~60 ms)."""
    m = PLOT_MARGINS_IN
    axis_w = (width_in - m["left"] - m["right"] - m["between"] * (panels - 1)) / panels
    return {"left": m["left"] / width_in, "right": 1 - m["right"] / width_in, "bottom": m["bottom"] / height_in,
            "top": 1 - m["top"] / height_in, "wspace": m["between"] / axis_w}


def _plot_panel(ax, steps, values, runs: list[dict], settings: list[dict], note: str = "") -> None:
    """One line per setting (mean over its seeds) and its min..max band; legend included."""
    marker = "o" if len(steps) <= MARKER_POINTS else None
    banded = False
    for index, setting in enumerate(settings):
        curves = values[[i for i, r in enumerate(runs) if r["setting"] == index]]
        with warnings.catch_warnings():  # all-NaN columns (no episode ended in a chunk) stay NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
        (line,) = ax.plot(steps, mean, marker=marker, label=f"{setting_label(setting)} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0,
                            label=None if banded else "band: min..max over seeds")  # fmt: skip
            banded = True
    if note and len(steps) == 1:
        ax.annotate(note, (0.5, 0.05), xycoords="axes fraction",
                    ha="center", fontsize=8, color="gray")  # fmt: skip
    ax.legend(fontsize=8)

