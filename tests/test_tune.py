"""`wm-agent tune`: the search writes a hyperparameter file that `wm-agent train` reads; pruning stops a run."""

from __future__ import annotations

import json

import pytest

optuna = pytest.importorskip("optuna")  # in the dev and tune extras

from wm_agent.cli import main  # noqa: E402
from wm_agent.tune import read_hyperparams_file, run_trial, sample_settings  # noqa: E402

# cheap trials: the tiny preset, few updates, short evaluations
CHEAP = ["--preset", "tiny", "--hyperparams", "train_ratio=4", "horizon=5", "--eval-episodes", "1"]


def test_tune_writes_the_best_trial_and_train_reads_it(tmp_path, capsys):
    out = tmp_path / "tuned.json"
    args = ["tune", "--env", "CartPole-v1", "--n-trials", "3", "-n", "160", "--eval-every", "80", "--out", str(out)]
    assert main([*args, *CHEAP]) == 0
    record = json.loads(out.read_text())
    assert record["env_id"] == "CartPole-v1" and record["algo"] == "jepa_dreamer"
    assert record["trials"]["complete"] + record["trials"]["pruned"] == 3 and record["trials"]["complete"] >= 1
    sampled = set(sample_settings(optuna.create_study().ask(), 160))
    assert sampled <= set(record["hyperparams"])  # every searched setting, plus the fixed ones over them
    assert record["hyperparams"]["train_ratio"] == 4 and record["hyperparams"]["preset"] == "tiny"
    assert 8 <= record["objective"] <= 500  # a mean of CartPole returns
    assert str(out) in capsys.readouterr().out

    train = ["train", "--env", "CartPole-v1", "-n", "60", "--no-progress", "-f", str(tmp_path), "--eval-episodes", "1"]
    assert main([*train, "--hyperparams-file", str(out), "--hyperparams", "learning_starts=20"]) == 0
    from wm_agent import JEPADreamer

    model = JEPADreamer.load(tmp_path / "jepa_dreamer" / "CartPole-v1_seed0.zip")
    assert model.config.gamma == record["hyperparams"]["gamma"]  # read from the file
    assert model.config.learning_starts == 20  # --hyperparams win over the file


def test_a_pruned_trial_stops_its_run_early(monkeypatch):
    class PruneAtOnce(optuna.trial.FixedTrial):
        reported: list = []

        def report(self, value, step):
            self.reported.append(step)

        def should_prune(self):
            return True

    trial = PruneAtOnce(
        {
            "train_ratio": 32,
            "learning_starts": 100,
            "prefill_repeat_prob": 0.0,
            "exploration_noise_beta": 0.0,
            "model_lr": 3e-4,
            "actor_lr": 3e-5,
            "critic_lr": 3e-4,
            "entropy_scale": 3e-4,
            "horizon": 10,
            "gamma": 0.99,
        }
    )
    with pytest.raises(optuna.TrialPruned):
        run_trial(trial, "CartPole-v1", 400, [0], 50, 1, {}, {"preset": "tiny", "train_ratio": 4})
    assert trial.reported == [50]  # the first evaluation after step 0 pruned it; no later one ran


def test_bad_hyperparams_files_are_named(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read the hyperparameter file"):
        read_hyperparams_file(bad)
    bad.write_text('{"gamma": 0.9}')
    with pytest.raises(ValueError, match="needs a JSON object with a 'hyperparams' object"):
        read_hyperparams_file(bad)
    other = tmp_path / "ppo.json"
    other.write_text('{"algo": "ppo", "env_id": "CartPole-v1", "hyperparams": {}}')
    with pytest.raises(SystemExit, match="settings of ppo, not of --algo jepa_dreamer"):
        main(["train", "--env", "CartPole-v1", "-n", "10", "--hyperparams-file", str(other)])
