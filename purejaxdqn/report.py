"""Results across runs: per-setting statistics over seeds, a printed table, learning curves."""

from __future__ import annotations

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


def summarize(runs: list[dict], final_returns, settings: list[dict]) -> list[dict]:
    """One row per setting: mean, std (ddof 0), IQM, min and max of the final return over its seeds.

    `runs[i]["setting"]` indexes `settings`; `final_returns[i]` is run i's final greedy return.
    """
    final_returns = np.asarray(final_returns, dtype=np.float64)
    rows = []
    for index, setting in enumerate(settings):
        values = final_returns[[i for i, r in enumerate(runs) if r["setting"] == index]]
        rows.append({
            "setting": index, "label": setting_label(setting), **setting, "seeds": len(values),
            "mean": float(values.mean()), "std": float(values.std()), "iqm": iqm(values),
            "min": float(values.min()), "max": float(values.max()),
        })  # fmt: skip
    return mark_best(rows)


def mark_best(rows: list[dict]) -> list[dict]:
    """Set row["best"] on the row with the highest IQM (ties: highest mean)."""
    best = max(range(len(rows)), key=lambda i: (rows[i]["iqm"], rows[i]["mean"]))
    for i, row in enumerate(rows):
        row["best"] = i == best
    return rows


def format_table(rows: list[dict]) -> str:
    """A plain-text table; the best setting (highest IQM, then mean) is marked with '*'."""
    label_width = max(len("setting"), *(len(r["label"]) for r in rows))
    lines = [f"  {'setting':<{label_width}}  seeds    mean     std     IQM     min     max"]
    for r in rows:
        mark = "*" if r["best"] else " "
        lines.append(
            f"{mark} {r['label']:<{label_width}}  {r['seeds']:>5}  {r['mean']:>6.1f}  {r['std']:>6.1f}"
            f"  {r['iqm']:>6.1f}  {r['min']:>6.1f}  {r['max']:>6.1f}"
        )
    lines.append("final greedy eval return across seeds; * = best setting (by IQM)")
    return "\n".join(lines)


def plot_curves(path: Path, eval_steps, eval_mean, runs: list[dict], settings: list[dict], title: str) -> None:
    """PNG learning curves: one line per setting (mean over seeds), band = min..max over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eval_mean = np.asarray(eval_mean, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for index, setting in enumerate(settings):
        curves = eval_mean[[i for i, r in enumerate(runs) if r["setting"] == index]]
        mean = curves.mean(axis=0)
        (line,) = ax.plot(eval_steps, mean, label=f"{setting_label(setting)} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(eval_steps, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel("greedy eval return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
