"""Compare agents side by side on Gymnasium envs, under one evaluation protocol: ``wm-agent compare``.

    wm-agent compare --env CartPole-v1,Pendulum-v1 --algos jepa_dreamer,ppo,dqn,sac,a2c \\
        --steps 50000 --seeds 3 --eval-every 5000 --jobs 2

A run is one (env, algo, seed). Each run trains in its own process (or as a task of a Ray cluster with ``--backend
ray``); every ``eval_every`` env steps it stops the training clock and plays ``eval_episodes`` deterministic
episodes on a separate eval env. A finished run is stored as ``<out>/runs/<env>/<algo>/seed<k>.json`` and is not
redone. From all runs of the grid the harness writes ``evals.csv`` / ``evals.json`` (every evaluation point),
``summary.md`` / ``summary.json`` and ``curves_<env>.png``.

SB3 baselines use rl-baselines3-zoo's tuned hyperparameters where the zoo has them (``zoo_hyperparams.py``),
SB3 defaults otherwise. An algorithm label may carry a variant, ``jepa_dreamer@r256``, so that one algorithm can be
compared under several settings (``--algo-kwargs jepa_dreamer@r256:train_ratio=256``).

From Python::

    from wm_agent.compare import ComparisonSpec, run_comparison

    grid = ComparisonSpec(env_ids=["CartPole-v1"], algos=["ppo", "dqn"], steps=20_000, seeds=3, eval_every=2_000)
    report = run_comparison(grid, "benchmarks/out", jobs=2)

Modules: ``grid`` (ComparisonSpec, RunSpec, planning), ``run`` (one run), ``backends`` (local processes, Ray),
``results`` (summaries and files), ``plots`` (learning curves), ``harness`` (end to end), ``cli`` (the command).
"""

from wm_agent.compare.cli import main
from wm_agent.compare.grid import ComparisonSpec, RunSpec, plan_runs, threshold_for
from wm_agent.compare.harness import Report, report_finished, run_comparison

__all__ = [
    "ComparisonSpec",
    "Report",
    "RunSpec",
    "main",
    "plan_runs",
    "report_finished",
    "run_comparison",
    "threshold_for",
]
