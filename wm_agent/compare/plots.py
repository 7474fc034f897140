"""Learning curves of a comparison as PNG figures (matplotlib, from the ``bench`` extra, imported here only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wm_agent.compare.results import group_runs


def plot_curves(
    records: Sequence[dict[str, Any]], env_id: str, threshold: float | None, path: Path, band: str = "std"
) -> Path:
    """Mean return over seeds vs env steps and vs training wall time, with a +/- std band, as one PNG."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_steps, ax_wall = fig.subplots(1, 2, sharey=True)
    for (run_env, label, budget, *_), runs in group_runs(records).items():
        if run_env != env_id:
            continue
        n = min(len(run["evals"]) for run in runs)  # same schedule for every seed of a label
        returns = np.array([[row["return_mean"] for row in run["evals"][:n]] for run in runs])
        steps = np.array([row["step"] for row in runs[0]["evals"][:n]])
        walls = np.array([[row["wall_time_s"] for row in run["evals"][:n]] for run in runs]).mean(axis=0)
        mean, std = returns.mean(axis=0), returns.std(axis=0)
        for ax, x in ((ax_steps, steps), (ax_wall, walls)):
            (line,) = ax.plot(x, mean, label=f"{label} ({len(runs)} seeds, {budget:,} steps)")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    for ax, xlabel in ((ax_steps, "env steps"), (ax_wall, "training wall time (s)")):
        if threshold is not None:
            ax.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    ax_steps.set_ylabel("eval return (mean +/- std over seeds)")
    ax_steps.legend(fontsize="small")
    fig.suptitle(env_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
