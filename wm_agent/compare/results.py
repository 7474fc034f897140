"""Results of a comparison: per-setting summaries over seeds, JEPADreamer's ratios to the best SB3 baseline, and
the files written from them (evals.csv/json, summary.md/json, one curves PNG per env)."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wm_agent.common import EVAL_SEED_OFFSET, OUR_ALGO, SB3_ALGO_NAMES
from wm_agent.compare.grid import RunSpec, base_algo, env_slug
from wm_agent.compare.zoo_hyperparams import ZOO_SOURCE


def first_crossing(evals: Sequence[dict[str, Any]], threshold: float | None) -> tuple[float, float]:
    """(env steps, training wall seconds) at the first evaluation after step 0 whose mean return reaches
    ``threshold``; ``(inf, inf)`` if none does or there is no threshold.

    The step-0 evaluation (the untrained policy) is left out: an initial policy that happens to balance a pole
    has learned nothing, and a crossing at 0 would make every ratio to it meaningless.
    """
    if threshold is not None:
        for row in evals:
            if row["step"] > 0 and row["return_mean"] >= threshold:
                return float(row["step"]), float(row["wall_time_s"])
    return math.inf, math.inf


def group_runs(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str, int, int, int], list[dict[str, Any]]]:
    """Runs by (env, label, budget, eval interval, eval episodes): the seeds of one setting, never a mix of two
    (``--report`` can find a label run with two budgets by different calls)."""
    groups: dict[tuple[str, str, int, int, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        spec = record["spec"]
        key = (
            spec["env_id"],
            spec["label"],
            spec.get("steps", 0),
            spec.get("eval_every", 0),
            spec.get("eval_episodes", 0),
        )
        groups[key].append(record)
    return groups


def summarize(records: Sequence[dict[str, Any]], thresholds: dict[str, float | None]) -> list[dict[str, Any]]:
    """One row per (env, algo label): final return over seeds, steps and wall time to threshold, cost.

    Steps/wall to threshold are medians over seeds of each seed's first crossing; a seed that never reaches the
    threshold counts as infinite, so the median is finite only when at least half the seeds (all, for 2) reach it.
    The slowest seed's crossing is kept beside the median (a bar on every seed reads it), and the final evaluations'
    mean episode length, which tells an agent that hovers or stalls from one that finishes its task.
    """
    rows = []
    for (env_id, label, *_), runs in group_runs(records).items():
        threshold = thresholds.get(env_id)
        finals = [run["evals"][-1]["return_mean"] for run in runs]
        crossings = [first_crossing(run["evals"], threshold) for run in runs]
        rows.append(
            {
                "env": env_id,
                "algo": label,
                "hyperparams_source": runs[0].get("hyperparams_source", ""),
                "seeds": len(runs),
                "budget": runs[0]["spec"].get("steps", 0),
                "steps": max(run["evals"][-1]["step"] for run in runs),
                "threshold": threshold,
                "final_return_mean": float(np.mean(finals)),
                "final_return_std": float(np.std(finals)),
                "final_ep_len_mean": float(np.mean([run["evals"][-1].get("ep_len_mean", math.nan) for run in runs])),
                "steps_to_threshold": float(np.median([c[0] for c in crossings])),
                "slowest_to_threshold": max(c[0] for c in crossings),
                "wall_to_threshold_s": float(np.median([c[1] for c in crossings])),
                "reached": sum(math.isfinite(c[0]) for c in crossings),
                "train_wall_s": float(np.mean([run["train_wall_s"] for run in runs])),
                "peak_rss_mib": float(max(run["peak_rss_mib"] for run in runs)),
            }
        )
    return rows


def our_ratios(summary: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per env and JEPADreamer variant: its steps and wall time to threshold over the best SB3 baseline's.

    Lower is better; the best baseline is picked separately for steps and for wall time. NaN when either side
    never reached the threshold.
    """
    out = []
    for env_id in dict.fromkeys(row["env"] for row in summary):
        rows = [row for row in summary if row["env"] == env_id]
        baselines = [row for row in rows if base_algo(row["algo"]) in SB3_ALGO_NAMES]
        ours = [row for row in rows if base_algo(row["algo"]) == OUR_ALGO]
        if not baselines or not ours:
            continue
        best_steps = min(baselines, key=lambda row: row["steps_to_threshold"])
        best_wall = min(baselines, key=lambda row: row["wall_to_threshold_s"])
        for row in ours:
            out.append(
                {
                    "env": env_id,
                    "algo": row["algo"],
                    "steps_ratio": _ratio(row["steps_to_threshold"], best_steps["steps_to_threshold"]),
                    "best_sb3_steps": best_steps["algo"],
                    "wall_ratio": _ratio(row["wall_to_threshold_s"], best_wall["wall_to_threshold_s"]),
                    "best_sb3_wall": best_wall["algo"],
                }
            )
    return out


def _ratio(ours: float, best: float) -> float:
    return ours / best if math.isfinite(ours) and math.isfinite(best) and best > 0 else math.nan


def _fmt_steps(value: float) -> str:
    return f"{int(value):,}" if math.isfinite(value) else "not reached"


def _fmt_seconds(value: float) -> str:
    return f"{value:.1f} s" if math.isfinite(value) else "not reached"


def _budget_text(settings: dict[str, Any]) -> str:
    own = ", ".join(f"{label} {steps:,}" for label, steps in settings.get("steps_by_label", {}).items())
    return f"{settings['steps']:,} env steps" + (f" ({own})" if own else "")


def _protocol_text(settings: dict[str, Any]) -> str:
    """One line saying how every run was trained and evaluated; ``settings`` lists several values when mixed."""

    def values(key: str) -> str:
        value = settings[key]
        return ", ".join(f"{v:,}" for v in value) if isinstance(value, list) else f"{value:,}"

    if settings.get("combined"):
        budget = "the budget of each row"
        seeds = "seeds " + ", ".join(str(s) for s in settings["seed_list"])
    else:
        budget = f"{_budget_text(settings)} per run"
        first = settings.get("first_seed", 0)
        seeds = f"seeds {first}..{first + settings['seeds'] - 1}"
    env_settings = "; ".join(
        f"{env_id} " + ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        for env_id, kwargs in settings.get("env_kwargs", {}).items()
        if kwargs
    )
    return (
        f"Protocol: {budget}, {seeds}; every {values('eval_every')} env steps (and at 0 and the end) "
        f"{values('eval_episodes')} {settings.get('eval_mode', 'deterministic')} "
        f"episodes on a separate eval env (seed + {EVAL_SEED_OFFSET}). "
        f"torch threads per run: {values('threads')}." + (f" Env settings: {env_settings}." if env_settings else "")
    )


def markdown_summary(
    summary: Sequence[dict[str, Any]],
    ratios: Sequence[dict[str, Any]],
    settings: dict[str, Any],
    incompatible: Sequence[tuple[str, str, str]] = (),
    failed: Sequence[tuple[RunSpec, str]] = (),
) -> str:
    """The comparison as a markdown document."""
    lines = [
        "# Agent comparison",
        "",
        _protocol_text(settings),
        "",
        "Final return: mean +/- std over seeds of each seed's last evaluation; final length: the mean of its "
        "episodes' lengths. Steps / wall to threshold: median over seeds of the first evaluation after step 0 "
        "reaching the threshold (a seed that never reaches counts as never), with the slowest seed's when every "
        "seed reaches it. "
        "Wall time is training only (evaluation excluded). Peak RSS: max over seeds of the run process's peak "
        "resident memory. SB3 hyperparameters: `zoo` = tuned values of "
        + ZOO_SOURCE
        + ", `defaults` = SB3's."
        + (
            " `preset+table`: the preset with the env's entry in wm-agent's table (`wm_agent.ENV_SETTINGS`)."
            if any("table" in row["hyperparams_source"] for row in summary)
            else ""
        ),
        "",
        "| env (threshold) | algo | hyperparams | seeds | budget | final return | final length "
        "| steps to threshold (seeds reached) | wall to threshold | train wall | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in summary:
        threshold = "none" if row["threshold"] is None else f"{row['threshold']:g}"
        to_steps, to_wall = _fmt_steps(row["steps_to_threshold"]), _fmt_seconds(row["wall_to_threshold_s"])
        reached = f"{row['reached']}/{row['seeds']}"
        slowest = row.get("slowest_to_threshold", math.inf)
        if row["seeds"] > 1 and math.isfinite(slowest):
            reached += f", slowest {_fmt_steps(slowest)}"
        if row["threshold"] is None:
            to_steps, to_wall = "-", "-"
        length = row.get("final_ep_len_mean", math.nan)
        lines.append(
            f"| {row['env']} ({threshold}) | {row['algo']} | {row['hyperparams_source']} | {row['seeds']} "
            f"| {row['budget']:,} | {row['final_return_mean']:.1f} +/- {row['final_return_std']:.1f} "
            f"| {'-' if math.isnan(length) else f'{length:.0f}'} | {to_steps} ({reached}) | {to_wall} "
            f"| {row['train_wall_s']:.1f} s | {row['peak_rss_mib']:.0f} MiB |"
        )
    if ratios:
        lines += [
            "",
            "## JEPADreamer against the best SB3 baseline (ratio < 1: JEPADreamer is better)",
            "",
            "| env | agent | steps-to-threshold ratio | best SB3 by steps | wall-to-threshold ratio "
            "| best SB3 by wall |",
            "|---|---|---|---|---|---|",
        ]
        for row in ratios:
            steps_ratio = "n/a" if math.isnan(row["steps_ratio"]) else f"{row['steps_ratio']:.2f}"
            wall_ratio = "n/a" if math.isnan(row["wall_ratio"]) else f"{row['wall_ratio']:.2f}"
            lines.append(
                f"| {row['env']} | {row['algo']} | {steps_ratio} | {row['best_sb3_steps']} "
                f"| {wall_ratio} | {row['best_sb3_wall']} |"
            )
        lines += ["", "n/a: JEPADreamer or every SB3 baseline did not reach the threshold."]
    if not all(settings.get("isolated", [True])):
        lines += ["", "Some runs ran with --jobs 0, in the harness's process: their peak RSS is the harness's."]
    if settings.get("resumed"):
        runs = "; ".join(f"{key} at step {', '.join(map(str, steps))}" for key, steps in settings["resumed"].items())
        lines += ["", f"Resumed from a checkpoint after a stop (fresh episodes and random streams there): {runs}."]
    if settings.get("in_progress"):
        lines += ["", "In progress (checkpoints; not in the tables above):", ""]
        lines += [f"- {line}" for line in settings["in_progress"]]
    if incompatible:
        lines += ["", "Not run (action space): " + "; ".join(f"{a} on {e}" for e, a, _ in incompatible) + "."]
    if failed:
        names = ", ".join(s.key for s, _ in failed)
        lines += ["", f"Failed runs (tracebacks in errors.log): {names}."]
    return "\n".join(lines) + "\n"


EVAL_COLUMNS = (
    "env",
    "algo",
    "seed",
    "step",
    "wall_time_s",
    "return_mean",
    "return_std",
    "ep_len_mean",
    "eval_time_s",
    "peak_rss_mib",
)


def eval_rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every evaluation point of every run, flat."""
    return [
        {"env": r["spec"]["env_id"], "algo": r["spec"]["label"], "seed": r["spec"]["seed"], **row}
        for r in records
        for row in r["evals"]
    ]


def write_outputs(
    records: Sequence[dict[str, Any]],
    out_dir: Path,
    thresholds: dict[str, float | None],
    settings: dict[str, Any],
    incompatible: Sequence[tuple[str, str, str]] = (),
    failed: Sequence[tuple[RunSpec, str]] = (),
) -> dict[str, Path]:
    """Write evals.csv/json, summary.md/json and one curves PNG per env; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"evals_csv": out_dir / "evals.csv", "evals_json": out_dir / "evals.json"}
    rows = eval_rows(records)
    with files["evals_csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EVAL_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    files["evals_json"].write_text(json.dumps(rows, indent=1))
    summary = summarize(records, thresholds)
    ratios = our_ratios(summary)
    files["summary_md"] = out_dir / "summary.md"
    files["summary_md"].write_text(markdown_summary(summary, ratios, settings, incompatible, failed))
    files["summary_json"] = out_dir / "summary.json"
    files["summary_json"].write_text(
        json.dumps({"settings": settings, "summary": summary, "ratios": ratios}, indent=1, default=str)
    )
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        print("no learning-curve PNGs: matplotlib is not installed (pip install 'wm-agent[bench]')", file=sys.stderr)
    else:
        from wm_agent.compare.plots import plot_curves

        for env_id in dict.fromkeys(r["spec"]["env_id"] for r in records):
            path = out_dir / f"curves_{env_slug(env_id)}.png"
            files[f"curves:{env_id}"] = plot_curves(records, env_id, thresholds.get(env_id), path)
    if failed:
        files["errors"] = out_dir / "errors.log"
        files["errors"].write_text("\n".join(f"== {s.key}\n{text}" for s, text in failed))
    return files
