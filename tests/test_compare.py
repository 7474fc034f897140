"""Tests of the comparison harness (wm_agent.compare): tiny runs end to end, resuming, tables, bad input."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from wm_agent import compare
from wm_agent.common import parse_kwargs, register_project_envs
from wm_agent.compare import grid, results, run
from wm_agent.compare.zoo_hyperparams import ZOO_HYPERPARAMS
from wm_agent.config import ENV_SETTINGS, discount_for_episode_limit

torch.set_num_threads(1)

TINY = ["--env", "CartPole-v1", "--algos", "ppo", "--steps", "256", "--seeds", "2", "--eval-every", "128"]
TINY += ["--eval-episodes", "2", "--no-progress"]


def _compare(out: Path, env_ids: list[str], algos: list[str], force: bool = False, **grid_settings) -> compare.Report:
    """run_comparison in this process (jobs=0), without a progress bar."""
    spec = compare.ComparisonSpec(env_ids=env_ids, algos=algos, **grid_settings)
    return compare.run_comparison(spec, out, jobs=0, force=force, progress=False)


def _run_files(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*.json"))}


def test_end_to_end_in_processes_then_resume(tmp_path, capsys):
    out = tmp_path / "out"
    assert compare.main([*TINY, "--jobs", "2", "--out", str(out)]) == 0

    rows = list(csv.DictReader((out / "evals.csv").open()))
    assert {r["seed"] for r in rows} == {"0", "1"}
    steps = sorted({int(r["step"]) for r in rows})
    assert steps[0] == 0 and steps[-1] >= 256 and len(steps) >= 3  # step 0, every 128 steps, the end
    assert all(float(r["wall_time_s"]) >= 0 and float(r["peak_rss_mib"]) > 50 for r in rows)
    assert len(json.loads((out / "evals.json").read_text())) == len(rows)

    summary = (out / "summary.md").read_text()
    assert "| CartPole-v1 (475) | ppo | zoo | 2 |" in summary
    png = out / "curves_CartPole-v1.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    record = json.loads((out / "runs" / "CartPole-v1" / "ppo" / "seed0.json").read_text())
    assert record["isolated_process"] and record["hyperparams"]["n_envs"] == 8  # the zoo's CartPole PPO
    assert record["torch_threads"] == 1

    before = _run_files(out)
    assert len(before) == 2
    capsys.readouterr()
    assert compare.main([*TINY, "--jobs", "2", "--out", str(out)]) == 0
    assert "0 runs done, 2 already finished" in capsys.readouterr().out
    assert _run_files(out) == before  # nothing redone


def test_changed_settings_redo_only_the_stale_runs(tmp_path):
    out = tmp_path / "out"
    kwargs = dict(steps=64, seeds=1, eval_every=64, eval_episodes=1)
    first = _compare(out, ["CartPole-v1"], ["a2c", "dqn"], **kwargs)
    assert len(first.ran) == 2 and not first.skipped and not first.failed
    again = _compare(out, ["CartPole-v1"], ["a2c", "dqn"], **{**kwargs, "eval_episodes": 2})
    assert len(again.ran) == 2  # a different protocol is a different run
    mixed = _compare(out, ["CartPole-v1"], ["a2c@fast", "dqn"], **{**kwargs, "eval_episodes": 2})
    assert [s.label for s in mixed.ran] == ["a2c@fast"] and [s.label for s in mixed.skipped] == ["dqn"]
    assert "a2c@fast" in (out / "summary.md").read_text()

    # a run stored before its table entry changed (the zoo's for dqn here) is stale too
    path = mixed.skipped[0].path(out)
    record = json.loads(path.read_text())
    assert record["hyperparams_source"] == "zoo"
    record["hyperparams"]["learning_rate"] = 1.0
    path.write_text(json.dumps(record))
    table_changed = _compare(out, ["CartPole-v1"], ["a2c@fast", "dqn"], **{**kwargs, "eval_episodes": 2})
    assert [s.label for s in table_changed.ran] == ["dqn"] and [s.label for s in table_changed.skipped] == ["a2c@fast"]


def test_env_kwargs_reach_the_envs_and_are_part_of_a_runs_identity(tmp_path):
    out = tmp_path / "out"
    kwargs = dict(steps=64, seeds=1, eval_every=64, eval_episodes=1)
    plain = _compare(out, ["wm/DelayedReward-v0"], ["a2c"], **kwargs)
    record = json.loads(plain.ran[0].path(out).read_text())
    assert "env_kwargs" not in record["spec"]  # as runs stored before the field existed: they stay finished
    assert record["evals"][0]["ep_len_mean"] == 32 + 10  # n_decisions + the default delay

    delayed = _compare(
        out, ["wm/DelayedReward-v0"], ["a2c"], env_kwargs={"wm/DelayedReward-v0": {"delay": 50}}, **kwargs
    )
    assert len(delayed.ran) == 1  # other env settings are another run
    record = json.loads(delayed.ran[0].path(out).read_text())
    assert record["spec"]["env_kwargs"] == {"delay": 50}
    assert record["evals"][0]["ep_len_mean"] == 32 + 50  # train and eval envs both got the setting
    assert json.loads((out / "summary.json").read_text())["settings"]["env_kwargs"] == {
        "wm/DelayedReward-v0": {"delay": 50}
    }
    assert "Env settings: wm/DelayedReward-v0 delay=50." in (out / "summary.md").read_text()

    parsed = grid.parse_env_kwargs(["wm/DelayedReward-v0:delay=50,n_decisions=8", 'CartPole-v1:{"render_mode": null}'],
                                   ["wm/DelayedReward-v0", "CartPole-v1"])  # fmt: skip
    assert parsed == {"wm/DelayedReward-v0": {"delay": 50, "n_decisions": 8}, "CartPole-v1": {"render_mode": None}}


def test_budget_per_label_and_saved_models(tmp_path):
    from stable_baselines3 import A2C

    out = tmp_path / "out"
    kwargs = dict(seeds=1, eval_every=64, eval_episodes=1)
    first = _compare(out, ["CartPole-v1"], ["a2c", "dqn"], steps=64, steps_by_label={"a2c": 128}, **kwargs)
    assert {s.label: s.steps for s in first.ran} == {"a2c": 128, "dqn": 64}
    assert "| CartPole-v1 (475) | a2c | zoo | 1 | 128 |" in (out / "summary.md").read_text()
    assert "64 env steps (a2c 128) per run" in (out / "summary.md").read_text()
    assert not list(out.rglob("*.zip"))

    # asking for the models redoes the finished runs that did not keep one, and only those
    again = _compare(out, ["CartPole-v1"], ["a2c"], steps=64, steps_by_label={"a2c": 128}, save_models=True, **kwargs)
    assert [s.label for s in again.ran] == ["a2c"]
    model_path = again.ran[0].model_path(out)
    assert A2C.load(model_path).num_timesteps >= 128
    third = _compare(out, ["CartPole-v1"], ["a2c"], steps=128, save_models=True, **kwargs)
    assert not third.ran and len(third.skipped) == 1  # same run: the budget, not the flag, is its identity
    _compare(out, ["CartPole-v1"], ["a2c"], steps=128, force=True, **kwargs)
    assert not model_path.exists()  # redone without --save-models: the old model no longer matches the result

    # a base name's budget reaches its variants; a variant's own entry wins
    specs, _ = compare.plan_runs(
        compare.ComparisonSpec(
            env_ids=["CartPole-v1"],
            algos=["a2c", "a2c@x", "a2c@y"],
            seeds=1,
            steps=50,
            eval_every=10,
            steps_by_label={"a2c": 70, "a2c@y": 90},
        )
    )
    assert [s.steps for s in specs] == [70, 70, 90]


def test_report_combines_runs_of_separate_calls(tmp_path, capsys):
    out = tmp_path / "out"
    kwargs = dict(seeds=1, eval_episodes=1)
    _compare(out, ["CartPole-v1"], ["a2c"], steps=64, eval_every=32, **kwargs)
    _compare(out, ["CartPole-v1"], ["dqn"], steps=96, eval_every=48, **{**kwargs, "seeds": 2})
    assert "dqn" in (out / "summary.md").read_text() and "a2c" not in (out / "summary.md").read_text()

    # seed 0 again with another budget: seed 1 keeps the old one, so the label now has two settings
    _compare(out, ["CartPole-v1"], ["dqn"], steps=64, eval_every=32, **kwargs)
    assert compare.main(["--report", "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "| CartPole-v1 (475) | dqn | zoo | 1 | 64 |" in summary  # two rows, never one mixing the settings
    assert (
        "| CartPole-v1 (475) | a2c | zoo | 1 | 64 |" in summary
        and "| CartPole-v1 (475) | dqn | zoo | 1 | 96 |" in summary
    )
    assert "every 32, 48 env steps" in summary
    assert {r["algo"] for r in csv.DictReader((out / "evals.csv").open())} == {"a2c", "dqn"}

    with pytest.raises(SystemExit):
        compare.main(["--report", "--out", str(tmp_path / "empty")])
    assert "no finished run under" in capsys.readouterr().err


def test_without_matplotlib_the_tables_are_still_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # makes the import fail, as without the extra
    out = tmp_path / "out"
    _compare(out, ["CartPole-v1"], ["a2c"], steps=32, seeds=1, eval_every=32, eval_episodes=1)
    assert (out / "summary.md").exists() and not list(out.glob("*.png"))
    assert "pip install 'wm-agent[bench]'" in capsys.readouterr().err


def test_failed_run_is_reported_and_others_go_on(tmp_path, monkeypatch):
    real_build = run.build_model

    def build(spec, env, hp):
        if spec.seed == 1:
            raise RuntimeError("boom")
        return real_build(spec, env, hp)

    monkeypatch.setattr(run, "build_model", build)
    report = _compare(tmp_path, ["CartPole-v1"], ["ppo"], steps=64, seeds=2, eval_every=64, eval_episodes=1)
    assert [s.seed for s in report.ran] == [0] and [s.seed for s, _ in report.failed] == [1]
    assert "boom" in (tmp_path / "errors.log").read_text()
    assert "Failed runs" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "runs" / "CartPole-v1" / "ppo" / "seed1.json").exists()  # retried next time


def test_a_run_reports_progress_between_its_evaluations():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    reported: list[int] = []
    recorder = run.EvalRecorder(make_vec_env("CartPole-v1", seed=1), 10_000, 1, reported.append, report_every_s=0.0)
    PPO("MlpPolicy", make_vec_env("CartPole-v1", seed=0), n_steps=64, batch_size=64, seed=0).learn(128, recorder)
    assert [row["step"] for row in recorder.rows] == [0, 128]  # evaluations only at the start and the end
    assert reported[0] == 0 and reported[-1] == 128
    assert len(reported) > 10 and reported == sorted(reported)  # and steps between them, in order


class _Stopped(Exception):
    """A run stopped midway (the process killed, a lent machine handed back)."""


def _stop_at(monkeypatch, step: int) -> None:
    """Make every run raise once it reaches ``step`` env steps."""
    real_on_step = run.EvalRecorder._on_step

    def on_step(self):
        if self.num_timesteps >= step:
            raise _Stopped
        return real_on_step(self)

    monkeypatch.setattr(run.EvalRecorder, "_on_step", on_step)


def _stopped_run(spec: grid.RunSpec, out: Path, step: int, monkeypatch) -> run.RunCheckpoint:
    """Run ``spec`` until it is stopped at ``step`` env steps; its checkpoint."""
    _stop_at(monkeypatch, step)
    with pytest.raises(_Stopped):
        run.run_one(spec, out, isolated=False)
    monkeypatch.undo()
    return run.RunCheckpoint(spec, out)


@pytest.mark.parametrize(
    ("algo", "kwargs", "saved_at"),
    [
        ("jepa_dreamer", {"preset": "tiny", "learning_starts": 64}, 200),
        ("dqn", {"learning_starts": 50, "train_freq": 4}, 200),
        ("ppo", {"n_envs": 1, "n_steps": 64, "batch_size": 64}, 128),  # at its rollouts' starts: 0, 64, 128, ...
    ],
)
def test_a_stopped_run_resumes_from_its_last_checkpoint(tmp_path, monkeypatch, algo, kwargs, saved_at):
    spec = compare.RunSpec(
        env_id="CartPole-v1", label=algo, seed=0, steps=300, eval_every=100, eval_episodes=1, algo_kwargs=kwargs,
        checkpoint_every=100,
    )  # fmt: skip
    checkpoint = _stopped_run(spec, tmp_path, 250, monkeypatch)
    slot, state = checkpoint.latest()
    assert (
        state["num_timesteps"] == saved_at
        and [row["step"] for row in state["evals"]] == [0, 100, 200][: 1 + saved_at // 100]
    )
    assert (slot / "model.zip").exists() and (slot / "replay.pkl").exists() == (algo != "ppo")
    assert not spec.path(tmp_path).exists()  # no result from a stopped run
    with pytest.raises(ValueError, match=f"in progress: CartPole-v1/{algo}/seed0: {saved_at} of 300 steps, returns"):
        compare.report_finished(tmp_path)  # nothing finished yet: the error says what is under way

    resumed, env_steps = [], []
    real_resume, real_on_step = run.resume_from, run.EvalRecorder._on_step
    monkeypatch.setattr(run, "resume_from", lambda *args: resumed.append(real_resume(*args)) or resumed[-1])
    monkeypatch.setattr(run.EvalRecorder, "_on_step", lambda self: env_steps.append(1) or real_on_step(self))
    record = run.run_one(spec, tmp_path, isolated=False)
    model = resumed[0][0]
    steps = [row["step"] for row in record["evals"]]
    assert record["resumed_at"] == [saved_at] and model.num_timesteps == steps[-1]
    assert len(env_steps) == steps[-1] - saved_at  # only the steps after the checkpoint were collected again
    if algo == "dqn":
        assert model.replay_buffer.size() == 300  # the checkpoint's 200 transitions and the new 100
    if algo == "jepa_dreamer":
        assert len(model.replay_buffer) >= 300  # the checkpoint's steps and the new ones
    assert steps[:4] == [0, 100, 200, 300] and steps[-1] >= 300  # PPO ends with its rollout, past 300
    assert record["evals"][: len(state["evals"])] == state["evals"]  # the evaluations before the stop are kept
    assert record["train_wall_s"] >= state["train_wall_s"]
    assert not checkpoint.folder.exists()  # a finished run leaves its result, not its checkpoint
    assert run.load_finished(spec, tmp_path) == record


def test_a_checkpoint_torn_by_a_kill_falls_back_to_the_previous_one(tmp_path, monkeypatch):
    spec = compare.RunSpec(
        env_id="CartPole-v1", label="dqn", seed=0, steps=300, eval_every=100, eval_episodes=1,
        algo_kwargs={"learning_starts": 50, "train_freq": 4}, checkpoint_every=100,
    )  # fmt: skip
    checkpoint = _stopped_run(spec, tmp_path, 250, monkeypatch)
    ppo = _compare(tmp_path, ["CartPole-v1"], ["ppo"], steps=64, seeds=1, eval_every=64, eval_episodes=1)
    summary = ppo.files["summary_md"].read_text()  # a finished run beside one in progress
    assert "In progress (checkpoints; not in the tables above):\n\n- CartPole-v1/dqn/seed0: 200 of 300 steps" in summary
    newest, _ = checkpoint.latest()
    (newest / checkpoint.STATE).unlink()  # killed while writing the checkpoint at 200: its state is written last
    assert checkpoint.latest()[1]["num_timesteps"] == 100
    record = run.run_one(spec, tmp_path, isolated=False)
    assert record["resumed_at"] == [100] and [row["step"] for row in record["evals"]] == [0, 100, 200, 300]
    summary = compare.report_finished(tmp_path).files["summary_md"].read_text()
    assert "Resumed from a checkpoint after a stop (fresh episodes and random streams there): " in summary
    assert "CartPole-v1/dqn/seed0 at step 100." in summary
    assert "In progress" not in summary


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, monkeypatch):
    kwargs = dict(env_id="CartPole-v1", label="dqn", seed=0, steps=200, eval_every=100, checkpoint_every=100)
    dqn = {"learning_starts": 50, "train_freq": 4}
    spec = compare.RunSpec(**kwargs, eval_episodes=1, algo_kwargs=dqn)
    _stopped_run(spec, tmp_path, 150, monkeypatch)
    assert run.RunCheckpoint(spec, tmp_path).latest() is not None
    changed = compare.RunSpec(**kwargs, eval_episodes=1, algo_kwargs={**dqn, "learning_starts": 60})
    record = run.run_one(changed, tmp_path, isolated=False)
    assert "resumed_at" not in record and not run.RunCheckpoint(spec, tmp_path).folder.exists()

    # --force starts a stopped run afresh
    _stop_at(monkeypatch, 150)
    report = _compare(tmp_path / "f", ["CartPole-v1"], ["dqn"], steps=200, seeds=1, eval_every=100, eval_episodes=1,
                      algo_kwargs={"dqn": dqn}, checkpoint_every=100)  # fmt: skip
    assert [s.seed for s, _ in report.failed] == [0]
    monkeypatch.undo()
    stopped = compare.RunSpec(**kwargs, eval_episodes=1, algo_kwargs=dqn)
    assert run.RunCheckpoint(stopped, tmp_path / "f").latest() is not None
    report = _compare(tmp_path / "f", ["CartPole-v1"], ["dqn"], force=True, steps=200, seeds=1, eval_every=100,
                      eval_episodes=1, algo_kwargs={"dqn": dqn}, checkpoint_every=100)  # fmt: skip
    assert [s.seed for s in report.ran] == [0]
    assert "resumed_at" not in json.loads(stopped.path(tmp_path / "f").read_text())


def test_stochastic_evaluation_is_its_own_run_and_says_so(tmp_path, monkeypatch):
    seen = []
    real = run.evaluate_policy
    monkeypatch.setattr(run, "evaluate_policy", lambda *a, **k: seen.append(k["deterministic"]) or real(*a, **k))
    settings = dict(steps=64, seeds=1, eval_every=64, eval_episodes=1)
    _compare(tmp_path, ["CartPole-v1"], ["ppo"], **settings)
    assert seen and all(seen)
    seen.clear()
    report = _compare(tmp_path, ["CartPole-v1"], ["ppo"], eval_stochastic=True, **settings)
    assert seen and not any(seen) and len(report.ran) == 1  # not the deterministic run's result
    assert "1 stochastic episodes" in report.files["summary_md"].read_text()
    assert (
        "eval_stochastic"
        not in grid.RunSpec(env_id="CartPole-v1", label="ppo", seed=0, steps=64, eval_every=64).identity()
    )


def test_runs_are_planned_seed_by_seed():
    """A grid stopped part-way (or run with --jobs 2) has every algorithm on its first seeds, not one algorithm."""
    specs, _ = compare.plan_runs(
        compare.ComparisonSpec(env_ids=["CartPole-v1", "Acrobot-v1"], algos=["a2c", "ppo"], seeds=2, steps=100)
    )
    assert [(s.seed, s.env_id, s.label) for s in specs] == [
        (seed, env_id, label) for seed in (0, 1) for env_id in ("CartPole-v1", "Acrobot-v1") for label in ("a2c", "ppo")
    ]


def test_first_seed_adds_later_seeds_to_a_grid():
    """``--seeds 1 --first-seed 2`` plans seed 2 alone (a third seed added to a folder holding seeds 0 and 1)."""
    specs, _ = compare.plan_runs(
        compare.ComparisonSpec(env_ids=["CartPole-v1"], algos=["a2c", "ppo"], seeds=1, first_seed=2, steps=100)
    )
    assert [(s.seed, s.label) for s in specs] == [(2, "a2c"), (2, "ppo")]
    with pytest.raises(ValueError, match="--first-seed must be at least 0"):
        compare.plan_runs(compare.ComparisonSpec(env_ids=["CartPole-v1"], algos=["ppo"], first_seed=-1, steps=100))


def test_a_later_seed_joins_the_earlier_ones_in_the_report(tmp_path):
    out = tmp_path / "out"
    kwargs = dict(steps=32, eval_every=32, eval_episodes=1)
    _compare(out, ["CartPole-v1"], ["a2c"], seeds=1, **kwargs)
    report = _compare(out, ["CartPole-v1"], ["a2c"], seeds=1, first_seed=1, **kwargs)
    assert [spec.seed for spec in report.ran] == [1] and "seeds 1..1" in (out / "summary.md").read_text()
    assert compare.main(["--report", "--out", str(out)]) == 0
    assert "| CartPole-v1 (475) | a2c | zoo | 2 | 32 |" in (out / "summary.md").read_text()


def test_incompatible_pairs_are_skipped(tmp_path):
    specs, skipped = compare.plan_runs(
        compare.ComparisonSpec(env_ids=["Pendulum-v1", "CartPole-v1"], algos=["dqn", "sac"], seeds=1, steps=100)
    )
    assert {(s.env_id, s.label) for s in specs} == {("Pendulum-v1", "sac"), ("CartPole-v1", "dqn")}
    assert {(e, a) for e, a, _ in skipped} == {("Pendulum-v1", "dqn"), ("CartPole-v1", "sac")}
    with pytest.raises(ValueError, match="no algorithm"):
        compare.plan_runs(compare.ComparisonSpec(env_ids=["Pendulum-v1"], algos=["dqn"], seeds=1, steps=100))


def test_first_crossing_and_summary_on_synthetic_runs():
    evals = [
        {"step": 0, "wall_time_s": 0.0, "return_mean": 500.0},  # an untrained policy that happens to balance
        {"step": 100, "wall_time_s": 1.0, "return_mean": 50.0},
        {"step": 200, "wall_time_s": 2.5, "return_mean": 480.0},
        {"step": 300, "wall_time_s": 4.0, "return_mean": 400.0},
    ]
    assert results.first_crossing(evals, 475) == (200.0, 2.5)
    assert results.first_crossing(evals, 490) == (math.inf, math.inf)
    assert results.first_crossing(evals, None) == (math.inf, math.inf)

    def record(label, seed, curve, wall_per_step):
        rows = [
            {"step": s, "wall_time_s": s * wall_per_step, "return_mean": r, "return_std": 0.0}
            for s, r in zip((0, 100, 200, 300), curve)
        ]
        return {"spec": {"env_id": "E", "label": label, "seed": seed, "steps": 300}, "evals": rows, "train_wall_s": 1.0,
                "peak_rss_mib": 100.0 + seed}  # fmt: skip

    records = [
        record("jepa_dreamer", 0, [0, 10, 10, 10], 0.1),  # reaches at 100 steps, 10 s
        record("jepa_dreamer", 1, [0, 10, 10, 10], 0.1),
        record("ppo", 0, [0, 0, 10, 10], 0.01),  # reaches at 200 steps, 2 s
        record("ppo", 1, [0, 0, 0, 10], 0.01),  # reaches at 300 steps, 3 s
        record("dqn", 0, [0, 0, 0, 10], 0.001),  # reaches at 300 steps, 0.3 s
        record("dqn", 1, [0, 0, 0, 0], 0.001),  # never
    ]
    summary = {row["algo"]: row for row in results.summarize(records, {"E": 5.0})}
    assert summary["ppo"]["steps_to_threshold"] == 250 and summary["ppo"]["reached"] == 2
    assert summary["ppo"]["slowest_to_threshold"] == 300 and summary["dqn"]["slowest_to_threshold"] == math.inf
    assert summary["dqn"]["steps_to_threshold"] == math.inf and summary["dqn"]["reached"] == 1
    assert summary["jepa_dreamer"]["final_return_mean"] == 10 and summary["jepa_dreamer"]["peak_rss_mib"] == 101

    (ratio,) = results.our_ratios(list(summary.values()))
    assert ratio["best_sb3_steps"] == "ppo" and ratio["steps_ratio"] == pytest.approx(100 / 250)
    assert ratio["best_sb3_wall"] == "ppo" and ratio["wall_ratio"] == pytest.approx(10 / 2.5)
    md = results.markdown_summary(list(summary.values()), [ratio], {"steps": 300, "seeds": 2, "eval_every": 100,
                                  "eval_episodes": 10, "threads": 1})  # fmt: skip
    assert "| E | jepa_dreamer | 0.40 | ppo | 4.00 | ppo |" in md
    assert "| E (5) | dqn |" in md and "not reached (1/2)" in md
    assert "| 10.0 +/- 0.0 | - | 250 (2/2, slowest 300) |" in md  # ppo; these rows have no episode lengths


HAS_BOX2D = importlib.util.find_spec("Box2D") is not None


def needs_box2d(env_id: str) -> pytest.MarkDecorator:
    """Skip the case of a Box2D env where `gymnasium[box2d]` is not installed (CI's `dev` extra lacks it)."""
    return pytest.mark.skipif("LunarLander" in env_id and not HAS_BOX2D, reason="needs gymnasium[box2d]")


@pytest.mark.filterwarnings("ignore:You have specified a mini-batch size")  # the zoo's MountainCarContinuous PPO
@pytest.mark.parametrize(
    ("algo", "env_id"),
    [
        pytest.param(algo, env_id, marks=needs_box2d(env_id))
        for algo, per_env in ZOO_HYPERPARAMS.items()
        for env_id in per_env
    ],
)
def test_zoo_table_builds_every_model(algo, env_id):
    """Every entry of the zoo table constructs its SB3 model (catches typos in the transcription)."""
    spec = compare.RunSpec(env_id=env_id, label=algo, seed=0, steps=1000, eval_every=500)
    hp, source = run.hyperparams_for(spec)
    assert source == "zoo"
    train_env, eval_env = run.make_envs(spec, hp)
    model = run.build_model(spec, train_env, hp)
    assert model.n_envs == hp.get("n_envs", 1)
    assert (model.get_vec_normalize_env() is not None) == bool(hp.get("normalize"))
    if algo in run.OFF_POLICY:
        assert model.replay_buffer.buffer_size <= 1000
    train_env.close()
    eval_env.close()


@pytest.mark.parametrize(
    "env_id",
    [pytest.param(env_id, marks=needs_box2d(env_id)) for env_id in ENV_SETTINGS],
)
def test_env_table_builds_our_model(env_id):
    """Every entry of wm-agent's own env table (`ENV_SETTINGS`) reaches the model the harness builds."""
    entry = ENV_SETTINGS[env_id]
    register_project_envs(env_id)  # wm/ ids, as the harness's grid registers them
    spec = compare.RunSpec(env_id=env_id, label="jepa_dreamer", seed=0, steps=1000, eval_every=500)
    hp, source = run.hyperparams_for(spec)
    gamma = discount_for_episode_limit(gym.spec(env_id).max_episode_steps)  # LunarLander-v3's 1,000 steps: 0.997
    assert (hp, source) == ({**entry, "gamma": gamma}, "preset+table")
    train_env, eval_env = run.make_envs(spec, {**hp, "preset": "tiny"})
    model = run.build_model(spec, train_env, {**hp, "preset": "tiny"})
    assert {k: getattr(model.config, k) for k in entry} == entry
    train_env.close()
    eval_env.close()


def test_harness_records_the_discount_of_the_episode_limit(tmp_path):
    """MountainCar's 999-step episodes get gamma 0.997 from the default rule, with nothing from the table; the harness
    writes it into the run's settings, and a stored run that trained without it (at the old default, 0.99) is stale
    there, while one of a 500-step env stays finished."""
    spec = compare.RunSpec(env_id="MountainCarContinuous-v0", label="jepa_dreamer", seed=0, steps=1000, eval_every=500)
    hp, source = run.hyperparams_for(spec)
    assert (hp, source) == ({"gamma": 0.997}, "preset")
    train_env, eval_env = run.make_envs(spec, hp)
    assert run.build_model(spec, train_env, {"preset": "tiny"}).gamma == 0.997
    train_env.close()
    eval_env.close()

    cartpole = dataclasses.replace(spec, env_id="CartPole-v1")
    for stored_spec, settings, finished in [
        (spec, {}, False),  # trained at 0.99 before the discount followed the limit
        (spec, {"gamma": 0.997}, True),  # MountainCar's former table entry: what the preset now builds
        (cartpole, {}, True),
        (cartpole, {"gamma": 0.997}, False),
    ]:
        run.write_json(stored_spec.path(tmp_path), {"spec": stored_spec.identity(), "hyperparams": settings})
        assert (run.load_finished(stored_spec, tmp_path) is not None) == finished, (stored_spec.env_id, settings)


def test_env_table_yields_to_overrides():
    """--algo-kwargs win over the table's entry; an env the table does not name gets the preset alone."""
    spec = compare.RunSpec(env_id="Acrobot-v1", label="jepa_dreamer@x", seed=0, steps=1000,
                           eval_every=500, algo_kwargs={"intrinsic_scale": 0.5, "gamma": 0.9})  # fmt: skip
    assert run.hyperparams_for(spec) == ({"intrinsic_scale": 0.5, "gamma": 0.9}, "preset+table+overrides")
    spec = compare.RunSpec(env_id="CartPole-v1", label="jepa_dreamer", seed=0, steps=1000, eval_every=500)
    assert run.hyperparams_for(spec) == ({"gamma": 0.99}, "preset")


def test_algo_kwargs_and_threshold_parsing():
    parsed = grid.parse_algo_kwargs(
        ["jepa_dreamer:train_ratio=256,preset=tiny", "jepa_dreamer@big:preset=large", 'ppo:{"n_epochs": 5}'],
        ["jepa_dreamer", "jepa_dreamer@big", "ppo", "dqn"],
    )
    assert parsed["jepa_dreamer"] == {"train_ratio": 256, "preset": "tiny"}
    assert parsed["jepa_dreamer@big"] == {"train_ratio": 256, "preset": "large"}
    assert parsed["ppo"] == {"n_epochs": 5} and parsed["dqn"] == {}
    assert parse_kwargs("policy_kwargs={'net_arch': [64, 64]},use_sde=True") == {
        "policy_kwargs": {"net_arch": [64, 64]},
        "use_sde": True,
    }
    assert grid.parse_thresholds(["Pendulum-v1=-150", "wm/PixelCartPole-v0=400"]) == {
        "Pendulum-v1": -150.0,
        "wm/PixelCartPole-v0": 400.0,
    }
    assert compare.threshold_for("CartPole-v1") == 475.0  # from the spec
    assert compare.threshold_for("Pendulum-v1") == -200.0  # from the table
    assert compare.threshold_for("Pendulum-v1", {"Pendulum-v1": -150.0}) == -150.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "CartPole-v1", "--algos", "ppo,rainbow"], "unknown algorithm 'rainbow'"),
        (["--env", "CartPol-v1", "--algos", "ppo"], "unknown env 'CartPol-v1'; did you mean CartPole-v1"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--steps", "0"], "--steps must be at least 1"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--checkpoint-every", "-5"], "--checkpoint-every must be 0"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--algo-kwargs", "sac:lr=1"], "not in --algos"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--algo-kwargs", "ppo:n_epochs"], "must be k=v pairs"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--threshold", "CartPole-v1"], "--threshold expects"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--algo-steps", "dqn=100"], "which is not in --algos"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--algo-steps", "ppo=many"], "--algo-steps expects ALGO=N"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--algo-steps", "ppo=0"], "--algo-steps ppo must be at least 1"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--algo-steps", "ppo=5", "--algo-steps", "ppo=6"], "two budgets"),
        (["--report", "--algo-steps", "ppo=5"], "--report runs nothing, so --algo-steps"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--env-kwargs", "Acrobot-v1:x=1"], "which is not in --env"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--env-kwargs", "delay=5"], "--env-kwargs expects ENV:k=v"),
        (["--env", "wm/CueMemory-v0", "--algos", "ppo", "--env-kwargs", "wm/CueMemory-v0:dealy=5"], "do not fit"),
        (["--env", "Pendulum-v1", "--algos", "dqn"], "dqn does not support"),
        (["--algos", "ppo"], "--env is required (or --report"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--backend", "ray", "--jobs", "0"], "with --backend ray give"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--address", "ray://head:10001"], "give it with --backend ray"),
        (["--report", "--backend", "ray"], "--report runs nothing, so --backend"),
        (["--report", "--first-seed", "2"], "--report runs nothing, so --first-seed"),
        (["--env", "CartPole-v1", "--algos", "ppo", "--first-seed", "-1"], "--first-seed must be at least 0"),
        (
            ["--env", "CartPole-v1", "--algos", "ppo", "--backend", "ray", "--checkpoint-every", "9"],
            "needs --backend local",
        ),
    ],
)
def test_bad_arguments_give_a_clear_error(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        compare.main([*args, "--out", str(tmp_path), "--no-progress"])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes the import fail, as without the cluster extra
    with pytest.raises(SystemExit):
        compare.main([*TINY, "--backend", "ray", "--out", str(tmp_path)])
    assert "pip install 'wm-agent[cluster]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_ray_backend_runs_the_grid_and_resumes(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ray")
    root = Path(__file__).resolve().parents[1]  # Ray's workers import this checkout's wm_agent, as this process does
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    out = tmp_path / "out"
    args = [*TINY, "--backend", "ray", "--save-models", "--out", str(out)]
    assert compare.main(args) == 0
    assert "2 runs done, 0 already finished, 0 failed" in capsys.readouterr().out
    record = json.loads((out / "runs" / "CartPole-v1" / "ppo" / "seed1.json").read_text())
    assert record["isolated_process"] and record["spec"]["seed"] == 1 and len(record["evals"]) >= 3
    assert (out / "runs" / "CartPole-v1" / "ppo" / "seed1.zip").exists()  # the model comes back with the result
    assert "| CartPole-v1 (475) | ppo | zoo | 2 |" in (out / "summary.md").read_text()

    before = _run_files(out)
    assert compare.main(args) == 0  # all finished: nothing is submitted, and Ray is not even started
    assert "0 runs done, 2 already finished" in capsys.readouterr().out
    assert _run_files(out) == before
