"""Many runs: where the grid's runs execute. Local processes by default, or the tasks of a Ray cluster.

Every backend stores a finished run as ``spec.path(out_dir)`` on this machine, so a later call skips it whichever
backend ran it. A failed run leaves no result file and is reported; the other runs go on.
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

from wm_agent.compare.grid import RunSpec
from wm_agent.compare.run import run_one

BACKENDS = ("local", "ray")


class _Progress:
    """One progress bar over the env steps of all runs, and the failures so far."""

    def __init__(self, specs: Sequence[RunSpec], show: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=sum(s.steps for s in specs), unit="step", desc=f"{len(specs)} runs", disable=not show)
        self.done_steps: dict[str, int] = {}
        self.failures: list[tuple[RunSpec, str]] = []

    def put(self, item: tuple[str, int]) -> None:
        """``(run key, env steps done)``, as a run reports after each evaluation and every few seconds (a
        queue's ``put``)."""
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
    address: str | None = None,
) -> list[tuple[RunSpec, str]]:
    """Run ``specs`` and store each finished one under ``out_dir``.

    :param specs: the runs
    :param out_dir: the comparison's output folder (on this machine, whichever backend runs them)
    :param jobs: local: runs in parallel, each in a fresh process (None: 1; 0: one by one in this process);
        ray: the most runs in flight at once (None: as many as the cluster has CPUs for)
    :param progress: show a progress bar
    :param backend: ``"local"`` or ``"ray"``
    :param address: ray: the cluster to connect to (None: the one ``RAY_ADDRESS`` names, else a new local one)
    :return: the failures as (spec, traceback text)
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if jobs is not None and jobs < 0:
        raise ValueError(f"--jobs must be 0 or more, got {jobs}")
    if backend == "local" and address is not None:
        raise ValueError("--address names a Ray cluster; give it with --backend ray")
    if backend == "ray" and jobs == 0:
        raise ValueError("--jobs 0 runs in this process; with --backend ray give --jobs N >= 1 or leave it out")
    if backend == "ray" and any(spec.checkpoint_every for spec in specs):
        raise ValueError(
            "--checkpoint-every needs --backend local: a Ray worker runs in a scratch folder that does not outlive "
            "its task, so a stopped run would find no checkpoint"
        )
    if not specs:
        return []
    tracker = _Progress(specs, progress)
    if backend == "ray":
        _run_on_ray(specs, Path(out_dir), jobs, address, tracker)
    elif jobs == 0:
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


def _run_and_collect(spec: RunSpec, queue: Any) -> dict[str, bytes]:
    """Run ``spec`` in a scratch folder (a Ray worker may be on another machine) and return the files it wrote,
    by path relative to the out folder."""
    with tempfile.TemporaryDirectory(prefix="wm-agent-run-") as scratch:
        run_one(spec, scratch, queue)
        root = Path(scratch)
        return {str(path.relative_to(root)): path.read_bytes() for path in root.rglob("*") if path.is_file()}


def _store(spec: RunSpec, out_dir: Path, files: dict[str, bytes]) -> None:
    """Write the files of a run made elsewhere, the result file last (its presence marks the run finished)."""
    model_path = spec.model_path(out_dir)
    for stale in (model_path, model_path.with_suffix(".vecnormalize.pkl")):
        stale.unlink(missing_ok=True)  # a kept model always belongs to the result stored beside it
    result = str(spec.path(out_dir).relative_to(out_dir))
    for name in sorted(files, key=lambda name: name == result):
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(files[name])
        os.replace(tmp, path)


def _run_on_ray(
    specs: Sequence[RunSpec], out_dir: Path, jobs: int | None, address: str | None, tracker: _Progress
) -> None:
    """Each run as a Ray task in a fresh worker process, asking for ``spec.threads`` CPUs (and a GPU when its
    device is CUDA); at most ``jobs`` in flight. Starts a local Ray cluster unless one is running or named."""
    try:
        import ray
        from ray.util.queue import Queue
    except ImportError as e:
        raise ValueError(f"--backend ray needs ray: pip install 'wm-agent[cluster]' ({e})") from None

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, **({} if address else {"include_dashboard": False}))
    try:
        queue = Queue(actor_options={"num_cpus": 0})
        remote_run = ray.remote(max_calls=1)(_run_and_collect)  # max_calls=1: one run per worker process
        waiting, in_flight = list(specs), {}
        while waiting or in_flight:
            while waiting and (jobs is None or len(in_flight) < jobs):
                spec = waiting.pop(0)
                gpus = 1 if spec.device.startswith("cuda") else 0
                in_flight[remote_run.options(num_cpus=spec.threads, num_gpus=gpus).remote(spec, queue)] = spec
            finished, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            while not queue.empty():
                tracker.put(queue.get())
            for ref in finished:
                spec = in_flight.pop(ref)
                try:
                    _store(spec, out_dir, ray.get(ref))
                except Exception as e:  # noqa: BLE001 - one failed run must not stop the comparison
                    tracker.finish(spec, e)
                else:
                    tracker.finish(spec, None)
    finally:
        if started_here:
            ray.shutdown()
