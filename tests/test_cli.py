"""The wm-agent command: train, eval, compare wiring, bad arguments."""

from __future__ import annotations

import pytest

from wm_agent.cli import main


def test_train_then_eval(tmp_path, capsys):
    args = ["train", "--env", "CartPole-v1", "-n", "120", "--preset", "tiny", "--no-progress", "-f", str(tmp_path)]
    extra = ["--hyperparams", "learning_starts=24", "train_ratio=16", "--eval-episodes", "2"]
    assert main([*args, *extra, "--package", str(tmp_path / "agents")]) == 0
    out = capsys.readouterr().out
    saved = tmp_path / "jepa_dreamer" / "CartPole-v1_seed0.zip"
    assert saved.exists()
    assert "eval return" in out and str(saved) in out
    assert (tmp_path / "agents" / "jepa_dreamer-CartPole-v1" / "results.json").exists()

    assert main(["eval", str(saved), "--env", "CartPole-v1", "-n", "2"]) == 0
    assert "+/-" in capsys.readouterr().out


def test_train_applies_the_env_table_and_hyperparams_win(tmp_path, capsys):
    """`wm-agent train` on an env of `ENV_SETTINGS` trains with its entry and says so; --hyperparams win over it."""
    from wm_agent import JEPADreamer

    args = ["train", "--env", "Acrobot-v1", "-n", "40", "--preset", "tiny", "--no-progress"]
    args += ["--eval-episodes", "1", "--hyperparams", "learning_starts=24", "train_ratio=8"]
    saved = tmp_path / "jepa_dreamer" / "Acrobot-v1_seed0.zip"
    assert main([*args, "-f", str(tmp_path)]) == 0
    assert "for it: intrinsic_scale=1.0 (ENV_SETTINGS" in capsys.readouterr().out
    assert JEPADreamer.load(saved).config.intrinsic_scale == 1.0
    assert main([*args, "intrinsic_scale=0.5", "-f", str(tmp_path)]) == 0
    assert "ENV_SETTINGS" not in capsys.readouterr().out
    assert JEPADreamer.load(saved).config.intrinsic_scale == 0.5


def test_train_announces_the_long_episode_discount(tmp_path, capsys):
    """MountainCar's 999-step limit gives gamma 0.997, and `wm-agent train` says so; CartPole's 500 says nothing."""
    from wm_agent import JEPADreamer

    args = ["train", "-n", "40", "--preset", "tiny", "--no-progress", "--eval-episodes", "1", "-f", str(tmp_path)]
    args += ["--hyperparams", "learning_starts=24", "train_ratio=8"]
    assert main([*args, "--env", "MountainCarContinuous-v0"]) == 0
    assert "trains with gamma=0.997, the discount for episodes of up to 999 steps" in capsys.readouterr().out
    assert JEPADreamer.load(tmp_path / "jepa_dreamer" / "MountainCarContinuous-v0_seed0.zip").gamma == 0.997
    assert main([*args, "--env", "CartPole-v1"]) == 0
    assert "gamma" not in capsys.readouterr().out


def test_train_sb3_algo(tmp_path):
    args = ["train", "--env", "CartPole-v1", "--algo", "ppo", "-n", "64", "--no-progress", "-f", str(tmp_path)]
    assert main([*args, "--hyperparams", "n_steps=32", "batch_size=32", "--eval-episodes", "1"]) == 0
    assert (tmp_path / "ppo" / "CartPole-v1_seed0.zip").exists()


def test_compare_is_wired(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--help"])
    assert exit_info.value.code == 0
    assert "wm-agent compare" in capsys.readouterr().out


def test_bad_arguments():
    with pytest.raises(SystemExit):
        main(["train", "--env", "CartPole-v1", "--algo", "nope"])
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        main(["train", "--env", "CartPole-v1", "--hyperparams", "train_ratio"])
    with pytest.raises(ValueError, match="corrupted"):
        main(["eval", __file__, "--env", "CartPole-v1"])


def test_eval_a_packaged_agent_and_list(tmp_path, capsys, tiny_kwargs):
    from wm_agent import JEPADreamer, package

    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    folder = package(model, tmp_path, "CartPole-v1", 9.0, 1.0, 2)
    assert main(["eval", str(folder), "-n", "2"]) == 0  # the env id comes from the agent's results.json
    assert "on CartPole-v1" in capsys.readouterr().out
    assert main(["list"]) == 0


def test_package_a_checkpoint_then_eval_uses_its_env_kwargs(tmp_path, capsys, tiny_kwargs):
    import json

    from wm_agent import JEPADreamer

    JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs).save(tmp_path / "agent")
    args = ["package", str(tmp_path / "agent.zip"), "--env", "CartPole-v1", "--env-kwargs", "max_episode_steps=5"]
    assert main([*args, "-n", "2", "--out", str(tmp_path / "agents"), "--trained-with", "my command"]) == 0
    folder = tmp_path / "agents" / "jepa_dreamer-CartPole-v1"
    results = json.loads((folder / "results.json").read_text())
    assert results["env_kwargs"] == {"max_episode_steps": 5} and results["command"] == "my command"
    assert results["eval_mean"] <= 5 and results["eval_seed"] == 1000 and results["n_eval_episodes"] == 2
    capsys.readouterr()
    assert main(["eval", str(folder), "-n", "2"]) == 0  # the 5-step limit comes back from results.json
    mean = float(capsys.readouterr().out.split(": ")[1].split(" +/-")[0])
    assert mean <= 5
    assert main(["eval", str(folder), "-n", "2", "--env", "CartPole-v1", "--env-kwargs", "max_episode_steps=3"]) == 0
    assert float(capsys.readouterr().out.split(": ")[1].split(" +/-")[0]) <= 3  # given kwargs win over stored ones


def test_enjoy_writes_a_gif_headless(tmp_path, capsys, tiny_kwargs):
    from PIL import Image

    from wm_agent import JEPADreamer

    JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs).save(tmp_path / "agent")
    gif = tmp_path / "episode.gif"
    assert main(["enjoy", str(tmp_path / "agent.zip"), "--env", "CartPole-v1", "--gif", str(gif)]) == 0
    assert "episode 0: return" in capsys.readouterr().out
    with Image.open(gif) as image:
        assert image.n_frames >= 4 and image.size == (600, 400)
