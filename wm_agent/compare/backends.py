"""Many runs: where the grid's runs execute (processes on this machine).

A finished run is stored as ``spec.path(out_dir)``, so a later call skips it. A failed run leaves no result file and
is reported; the other runs go on.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from wm_agent.compare.grid import RunSpec
from wm_agent.compare.run import run_one

BACKENDS = ("local",)


class _Progress:
    """One progress bar over the env steps of all runs, and the failures so far."""

    def __init__(self, specs: Sequence[RunSpec], show: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=sum(s.steps for s in specs), unit="step", desc=f"{len(specs)} runs", disable=not show)
        self.done_steps: dict[str, int] = {}
        self.failures: list[tuple[RunSpec, str]] = []

    def put(self, item: tuple[str, int]) -> None:
        """``(run key, env steps done)``, as a run reports after each evaluation (a queue's ``put``)."""
        key, step = item
        done = self.done_steps.get(key, 0)
        self.bar.update(max(step - done, 0))
        self.done_steps[key] = max(step, done)

    def finish(self, spec: RunSpec, error: BaseException | None) -> None:
        if error is None:
            self.put((spec.key, spec.steps))
            self.bar.write(f"done   {spec.key}")
        else:
            self.failures.append((spec, "".join(traceback.format_exception(error))))
            self.bar.write(f"FAILED {spec.key}: {type(error).__name__}: {error}")


def execute(
    specs: Sequence[RunSpec],
    out_dir: str | Path,
    jobs: int | None = 1,
    progress: bool = True,
    backend: str = "local",
) -> list[tuple[RunSpec, str]]:
    """Run ``specs`` and store each finished one under ``out_dir``.

    :param specs: the runs
    :param out_dir: the comparison's output folder
    :param jobs: runs in parallel, each in a fresh process (None: 1; 0: one by one in this process)
    :param progress: show a progress bar
    :param backend: ``"local"``
    :return: the failures as (spec, traceback text)
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if jobs is not None and jobs < 0:
        raise ValueError(f"--jobs must be 0 or more, got {jobs}")
    if not specs:
        return []
    tracker = _Progress(specs, progress)
    if jobs == 0:
        _run_here(specs, out_dir, tracker)
    else:
        _run_in_processes(specs, out_dir, jobs or 1, tracker)
    tracker.bar.close()
    return tracker.failures


def _run_here(specs: Sequence[RunSpec], out_dir: str | Path, tracker: _Progress) -> None:
    """One by one in this process (peak memory is then this process's)."""
    for spec in specs:
        try:
            run_one(spec, out_dir, tracker, isolated=False)
            tracker.finish(spec, None)
        except Exception as e:  # noqa: BLE001 - one failed run must not stop the comparison
            tracker.finish(spec, e)


def _run_in_processes(specs: Sequence[RunSpec], out_dir: str | Path, jobs: int, tracker: _Progress) -> None:
    """``jobs`` at a time, each in a fresh ``spawn`` process: clean torch state, a meaningful ``ru_maxrss``."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    pool_kwargs: dict[str, Any] = {"max_workers": jobs, "mp_context": ctx}
    if sys.version_info >= (3, 11):
        pool_kwargs["max_tasks_per_child"] = 1
    with ctx.Manager() as manager, ProcessPoolExecutor(**pool_kwargs) as pool:
        queue = manager.Queue()
        futures = {pool.submit(run_one, spec, str(out_dir), queue): spec for spec in specs}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while not queue.empty():
                tracker.put(queue.get())
            for future in finished:
                tracker.finish(futures[future], future.exception())
