"""The ``wm-agent compare`` command (also ``python -m wm_agent.compare``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from wm_agent.common import ALGO_NAMES
from wm_agent.compare.backends import BACKENDS
from wm_agent.compare.grid import (
    ComparisonSpec,
    parse_algo_kwargs,
    parse_algo_steps,
    parse_env_kwargs,
    parse_thresholds,
)
from wm_agent.compare.harness import report_finished, run_comparison

DEFAULT_ALGOS = "jepa_dreamer,ppo,dqn,sac,a2c"


def build_parser() -> argparse.ArgumentParser:
    """The ``compare`` command's arguments."""
    p = argparse.ArgumentParser(
        prog="wm-agent compare",
        epilog="--report summarizes the runs already stored under --out (only those of --env when given).",
        description="Compare JEPADreamer and SB3 baselines on Gymnasium envs under one evaluation protocol.",
    )
    p.add_argument("--env", help="env id(s), comma-separated, e.g. CartPole-v1,wm/PixelCartPole-v0")
    p.add_argument(
        "--report",
        action="store_true",
        help="run nothing: write the tables and figures of every finished run under --out (made by any calls)",
    )
    p.add_argument(
        "--algos",
        default=DEFAULT_ALGOS,
        help=f"comma-separated, from {', '.join(ALGO_NAMES)}; "
        "NAME@VARIANT runs NAME again under its own --algo-kwargs (default: %(default)s)",
    )
    p.add_argument("--steps", type=int, default=50_000, help="env steps per run (default: %(default)s)")
    p.add_argument(
        "--algo-steps",
        action="append",
        default=[],
        metavar="ALGO=N",
        help="a budget of its own for one label of --algos, e.g. jepa_dreamer=10000; repeatable",
    )
    p.add_argument("--seeds", type=int, default=3, help="K: seeds 0..K-1, or from --first-seed (default: %(default)s)")
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="start the seeds there instead of 0, e.g. --seeds 1 --first-seed 2 adds seed 2 to the runs of seeds 0 "
        "and 1 in --out (default: %(default)s)",
    )
    p.add_argument("--eval-every", type=int, default=5_000, help="env steps between evaluations (default: %(default)s)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per evaluation (default: %(default)s)")
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="local: runs in parallel, each in its own process (default 1); 0: in this process, one by one (peak "
        "memory then is this process's). ray: the most runs in flight (default: as many as the cluster has CPUs for)",
    )
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="local",
        help="where the runs execute: processes on this machine, or tasks of a Ray cluster "
        "(pip install 'wm-agent[cluster]'); results land in --out either way (default: %(default)s)",
    )
    p.add_argument(
        "--address",
        default=None,
        help="with --backend ray: the cluster to connect to, e.g. ray://head:10001 "
        "(default: RAY_ADDRESS, else a new local cluster on this machine)",
    )
    p.add_argument("--out", default="benchmarks/out", help="output folder (default: %(default)s)")
    p.add_argument(
        "--algo-kwargs",
        action="append",
        default=[],
        metavar="ALGO:K=V[,K=V]",
        help="constructor overrides, e.g. jepa_dreamer:train_ratio=256 or 'ppo:{\"n_epochs\": 5}'; "
        "repeatable; n_envs/normalize/frame_stack are honoured for every algorithm",
    )
    p.add_argument(
        "--env-kwargs",
        action="append",
        default=[],
        metavar="ENV:K=V[,K=V]",
        help="gym.make settings of one env of --env, e.g. wm/DelayedReward-v0:delay=50; repeatable. Runs of one env "
        "with other settings belong in another --out (a finished run with other settings is run again)",
    )
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="ENV=VALUE",
        help="success threshold for an env, beating its spec and the built-in table; repeatable",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default: %(default)s)")
    p.add_argument("--device", default="auto", help="torch device for every algorithm (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="redo runs even if they already finished")
    p.add_argument(
        "--save-models",
        action="store_true",
        help="keep each trained model as runs/ENV/ALGO/seedK.zip (a finished run without one is run again)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="save each run in progress (model, replay, evaluations) every STEPS env steps; started again, a stopped "
        "run resumes from its last checkpoint (default: 0, none)",
    )
    p.add_argument(
        "--eval-stochastic",
        action="store_true",
        help="evaluate with actions sampled from each policy instead of its deterministic mode",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _split(text: str) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``."""
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 if a run failed).

    :param argv: the arguments after ``compare`` (None: ``sys.argv[1:]``)
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.report:
        grid_flags = {
            "--algo-steps": args.algo_steps,
            "--algo-kwargs": args.algo_kwargs,
            "--env-kwargs": args.env_kwargs,
            "--save-models": args.save_models,
            "--checkpoint-every": args.checkpoint_every,
            "--first-seed": args.first_seed,
            "--eval-stochastic": args.eval_stochastic,
            "--backend": args.backend != "local",
            "--address": args.address,
        }
        given = [name for name, value in grid_flags.items() if value]
        if given:
            parser.error(f"--report runs nothing, so {', '.join(given)} would be ignored; leave them out")
        try:
            report = report_finished(args.out, parse_thresholds(args.threshold), _split(args.env) if args.env else None)
        except ValueError as e:
            parser.error(str(e))
        print(report.files["summary_md"].read_text())
        return 0
    if not args.env:
        parser.error("--env is required (or --report to summarize the runs stored under --out)")
    algos, env_ids = _split(args.algos), _split(args.env)
    try:
        grid = ComparisonSpec(
            env_ids=env_ids,
            algos=algos,
            steps=args.steps,
            seeds=args.seeds,
            first_seed=args.first_seed,
            eval_every=args.eval_every,
            eval_episodes=args.eval_episodes,
            algo_kwargs=parse_algo_kwargs(args.algo_kwargs, list(dict.fromkeys(algos))),
            env_kwargs=parse_env_kwargs(args.env_kwargs, env_ids),
            steps_by_label=parse_algo_steps(args.algo_steps),
            thresholds=parse_thresholds(args.threshold),
            threads=args.threads,
            device=args.device,
            save_models=args.save_models,
            checkpoint_every=args.checkpoint_every,
            eval_stochastic=args.eval_stochastic,
        )
        report = run_comparison(
            grid,
            args.out,
            jobs=args.jobs,
            backend=args.backend,
            address=args.address,
            force=args.force,
            progress=not args.no_progress,
        )
    except ValueError as e:
        parser.error(str(e))
    print(f"{len(report.ran)} runs done, {len(report.skipped)} already finished, {len(report.failed)} failed")
    for name, path in report.files.items():
        print(f"  {name}: {path}")
    if "summary_md" in report.files:
        print()
        print(report.files["summary_md"].read_text())
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
