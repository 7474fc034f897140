"""A comparison end to end: plan the grid, run what is not finished yet, write the results of every run."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wm_agent.common import register_project_envs
from wm_agent.compare.backends import execute
from wm_agent.compare.grid import ComparisonSpec, RunSpec, plan_runs, threshold_for
from wm_agent.compare.results import write_outputs
from wm_agent.compare.run import RunCheckpoint, load_finished


@dataclass
class Report:
    """What one call of :func:`run_comparison` or :func:`report_finished` did and wrote.

    :param out_dir: the output folder
    :param ran: runs made by this call
    :param skipped: runs already finished with the same settings, reused
    :param failed: runs that raised, with their traceback text
    :param incompatible: (env, label, reason) pairs left out of the grid
    :param files: the files written, by name (``summary_md``, ``evals_csv``, ``curves:ENV``, ...)
    """

    out_dir: Path
    ran: list[RunSpec] = field(default_factory=list)
    skipped: list[RunSpec] = field(default_factory=list)
    failed: list[tuple[RunSpec, str]] = field(default_factory=list)
    incompatible: list[tuple[str, str, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def run_comparison(
    grid: ComparisonSpec,
    out_dir: str | Path = "benchmarks/out",
    *,
    jobs: int | None = 1,
    backend: str = "local",
    address: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> Report:
    """Run (or reuse) every run of the grid envs x algos x seeds, then write the comparison files.

    :param grid: what to run
    :param out_dir: where runs and tables are stored; a run finished there with the same settings is not redone
    :param jobs: how many runs at once (see :func:`wm_agent.compare.backends.execute`)
    :param backend: ``"local"`` (processes on this machine) or ``"ray"`` (tasks of a Ray cluster)
    :param address: ray: the cluster to connect to
    :param force: redo runs that already finished, and start stopped runs afresh instead of from their checkpoints
    :param progress: show a progress bar
    """
    out_dir = Path(out_dir)
    specs, incompatible = plan_runs(grid)
    report = Report(out_dir=out_dir, incompatible=incompatible)
    for spec in specs:
        (report.ran if force or load_finished(spec, out_dir) is None else report.skipped).append(spec)
        if force or spec in report.skipped:  # a finished run's checkpoint is left over from a kill after its result
            RunCheckpoint(spec, out_dir).remove()
    report.failed = execute(report.ran, out_dir, jobs, progress, backend, address)
    failed_keys = {spec.key for spec, _ in report.failed}
    report.ran = [spec for spec in report.ran if spec.key not in failed_keys]
    records = [r for r in (load_finished(spec, out_dir) for spec in specs) if r is not None]
    thresholds = {env_id: threshold_for(env_id, grid.thresholds) for env_id in grid.env_ids}
    settings = {
        "envs": list(grid.env_ids),
        "algos": grid.labels,
        "steps": grid.steps,
        "steps_by_label": grid.steps_by_label,
        "seeds": grid.seeds,
        "first_seed": grid.first_seed,
        "eval_every": grid.eval_every,
        "eval_episodes": grid.eval_episodes,
        "threads": grid.threads,
        "algo_kwargs": grid.algo_kwargs,
        "thresholds": thresholds,
        "isolated": [r.get("isolated_process", True) for r in records],
    }
    settings.update(_env_settings(records))
    settings.update(_run_notes(records, runs_in_progress(out_dir, grid.env_ids)))
    if records:
        report.files = write_outputs(records, out_dir, thresholds, settings, incompatible, report.failed)
    return report


def report_finished(
    out_dir: str | Path, thresholds: dict[str, float] | None = None, env_ids: Sequence[str] | None = None
) -> Report:
    """Summarize every finished run stored under ``out_dir``, whichever calls made them; runs nothing.

    This is how runs with different budgets or protocols (a baseline's own eval interval, a rerun variant) end up
    in one table and one figure per env.

    :param out_dir: the output folder
    :param thresholds: success thresholds per env, beating the spec's and the built-in table
    :param env_ids: only the runs of these envs (None: all)
    :raises ValueError: no finished run (of ``env_ids``) under ``out_dir``
    """
    out_dir = Path(out_dir)
    records = []
    for path in sorted((out_dir / "runs").rglob("seed*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and "spec" in record and record.get("evals"):
            if env_ids is None or record["spec"]["env_id"] in env_ids:
                records.append(record)
    in_progress = runs_in_progress(out_dir, env_ids)
    if not records:
        among = f" for {', '.join(env_ids)}" if env_ids else ""
        progress = f"; in progress: {'; '.join(in_progress)}" if in_progress else ""
        raise ValueError(f"no finished run{among} under {out_dir / 'runs'}{progress}")
    env_ids = list(dict.fromkeys(r["spec"]["env_id"] for r in records))
    register_project_envs(*env_ids)

    def distinct(key: str) -> list[Any]:
        return sorted({r["spec"][key] for r in records})

    settings = {
        "combined": True,
        "envs": env_ids,
        "algos": list(dict.fromkeys(r["spec"]["label"] for r in records)),
        "seed_list": distinct("seed"),
        "eval_every": distinct("eval_every"),
        "eval_episodes": distinct("eval_episodes"),
        "threads": distinct("threads"),
        "thresholds": {env_id: threshold_for(env_id, thresholds) for env_id in env_ids},
        "isolated": [r.get("isolated_process", True) for r in records],
    }
    settings.update(_env_settings(records))
    settings.update(_run_notes(records, in_progress))
    report = Report(out_dir=out_dir)
    report.files = write_outputs(records, out_dir, settings["thresholds"], settings)
    return report


def _env_settings(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``{"env_kwargs": {env: settings}}`` for the runs made with ``gym.make`` settings, or nothing when none was
    (the settings of such a grid, and the tables written from them, stay as they were before the option existed)."""
    env_kwargs = {r["spec"]["env_id"]: r["spec"]["env_kwargs"] for r in records if r["spec"].get("env_kwargs")}
    return {"env_kwargs": env_kwargs} if env_kwargs else {}


def runs_in_progress(out_dir: str | Path, env_ids: Sequence[str] | None = None) -> list[str]:
    """One line per run with a checkpoint under ``out_dir`` (``--checkpoint-every``): where it stopped and its
    evaluations so far, e.g. ``wm/Pong-v0/jepa_dreamer/seed0: 35,000 of 100,000 steps, returns -21.0 @ 0, ...``."""
    lines = []
    for folder in sorted((Path(out_dir) / "runs").rglob("seed*.checkpoint")):
        newest = RunCheckpoint.newest(folder)
        if newest is None:
            continue
        state = newest[1]
        spec = state.get("spec", {})
        if env_ids is not None and spec.get("env_id") not in env_ids:
            continue
        try:  # a run killed between writing its result and deleting its checkpoint is finished
            if json.loads(folder.with_suffix(".json").read_text()).get("spec") == spec:
                continue
        except (OSError, json.JSONDecodeError, AttributeError):
            pass
        evals = ", ".join(f"{row['return_mean']:.1f} @ {row['step']:,}" for row in state.get("evals", []))
        key = f"{spec.get('env_id')}/{spec.get('label')}/seed{spec.get('seed')}"
        lines.append(f"{key}: {state['num_timesteps']:,} of {spec.get('steps', 0):,} steps, returns {evals}")
    return lines


def _run_notes(records: Sequence[dict[str, Any]], in_progress: list[str]) -> dict[str, Any]:
    """What the summary adds below its tables, only where it applies (so the tables of other grids stay as they
    were): runs evaluated with sampled actions (``eval_mode``), resumed from checkpoints (``resumed``), and
    ``in_progress``."""
    notes: dict[str, Any] = {}
    stochastic = [bool(r["spec"].get("eval_stochastic")) for r in records]
    if any(stochastic):
        notes["eval_mode"] = (
            "stochastic" if all(stochastic) else "deterministic (stochastic in the --eval-stochastic runs)"
        )
    resumed = {
        f"{r['spec']['env_id']}/{r['spec']['label']}/seed{r['spec']['seed']}": r["resumed_at"]
        for r in records
        if r.get("resumed_at")
    }
    if resumed:
        notes["resumed"] = resumed
    if in_progress:
        notes["in_progress"] = in_progress
    return notes
