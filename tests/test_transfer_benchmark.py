"""benchmarks/transfer.py end to end on the tiny preset: train -> zero-shot grid -> fine-tune vs scratch -> report."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives in the checkout, not the wheel

from benchmarks import transfer  # noqa: E402


def test_transfer_benchmark_end_to_end(tmp_path):
    out, figures = tmp_path / "out", tmp_path / "figures"
    common = ["--env", "cartpole", "--algos", "jepa_dreamer", "--seeds", "1", "--preset", "tiny"]
    common += ["--out", str(out), "--figures", str(figures)]
    assert transfer.main(["train", *common, "--steps", "150", "--eval-episodes", "1"]) == 0
    agent = out / "cartpole" / "train" / "jepa_dreamer" / "seed0.zip"
    assert agent.exists() and json.loads(agent.with_suffix(".json").read_text())["steps"] == 150

    assert transfer.main(["zeroshot", *common, "--eval-episodes", "1"]) == 0
    zeroshot = json.loads((out / "cartpole" / "zeroshot.json").read_text())
    task = transfer.TASKS["cartpole"]
    names = [name for name, _ in transfer.grid_settings(task)]
    assert len(names) == 1 + sum(len(v) - 1 for v in task.grid.values())  # every non-default value, once
    assert set(zeroshot["settings"]) == set(names)
    for name in names:
        for algo in ("jepa_dreamer", "random"):
            returns = zeroshot["settings"][name][algo]["0"]["returns"]
            assert len(returns) == 1 and all(math.isfinite(r) and r >= 1 for r in returns)
    assert zeroshot["settings"]["length=2"]["physics"] == {"length": 2.0}

    argv = ["finetune", *common, "--setting", "length=2", "--budget", "120", "--eval-every", "60"]
    assert transfer.main([*argv, "--curve-episodes", "1", "--no-stop-at-threshold"]) == 0
    runs = transfer.load_finetune(out, task)["length=2"]["jepa_dreamer"]
    assert set(runs) == {"finetune", "scratch"}
    for mode, record in ((m, r[0]) for m, r in runs.items()):
        assert [row["step"] for row in record["evals"]] == [0, 60, 120], mode
        assert record["physics"] == {"length": 2.0} and record["mode"] == mode
    assert runs["finetune"][0]["init"] == str(agent) and runs["scratch"][0]["init"] is None
    table = (out / "transfer.md").read_text()
    assert "| length=2 | JEPADreamer | finetune |" in table and "| length=2 | JEPADreamer | scratch |" in table
    assert (figures / "transfer_zeroshot_cartpole.png").stat().st_size > 0
    assert (figures / "transfer_finetune_cartpole.png").stat().st_size > 0


def test_finetune_starts_from_the_saved_weights(tmp_path):
    """load_for_finetune (load_pretrained on the packaged agent, with the new env) gives the saved weights on the
    new physics; learning then changes them."""
    from wm_agent import JEPADreamer
    from wm_agent.compare.run import write_json

    task, path = transfer.TASKS["cartpole"], tmp_path / "seed0.zip"
    record = transfer.train_and_record(task, "jepa_dreamer", 0, 80, {}, 80, 1, "tiny", save_path=path)
    write_json(path.with_suffix(".json"), record)
    saved = JEPADreamer.load(path, device="cpu").policy.state_dict()
    new_env = transfer.make_env(task, {"length": 2.0}, seed=0)
    model = transfer.load_for_finetune("jepa_dreamer", path, new_env, learning_starts=0, task=task)
    assert (tmp_path / "seed0" / "jepa_dreamer-wm-CartPoleVariant-v0" / "results.json").exists()
    assert model.get_env().envs[0].unwrapped.length == 2.0 and model.config.learning_starts == 0
    loaded = model.policy.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    model.learn(60, reset_num_timesteps=True)
    assert model.num_timesteps == 60 and model._n_updates > 0
    assert any(not torch.equal(saved[k], v) for k, v in model.policy.state_dict().items())


def test_sb3_baseline_finetunes_from_its_saved_weights(tmp_path):
    """PPO gets rl-zoo's CartPole-v1 settings through the harness, and Algo.load(path, env=new_env) keeps them."""
    from stable_baselines3 import PPO

    task, path = transfer.TASKS["cartpole"], tmp_path / "ppo.zip"
    record = transfer.train_and_record(task, "ppo", 0, 256, {}, 256, 1, "tiny", save_path=path)
    assert record["hyperparams"]["n_envs"] == 8 and record["hyperparams"]["n_epochs"] == 20  # zoo CartPole-v1
    saved = PPO.load(path, device="cpu").policy.state_dict()
    new_env = transfer.make_env(task, {"length": 2.0}, seed=0, n_envs=8)
    model = transfer.load_for_finetune("ppo", path, new_env, learning_starts=None, task=task)
    assert model.get_env().envs[0].unwrapped.length == 2.0
    assert all(torch.equal(saved[k], v) for k, v in model.policy.state_dict().items())
