"""The linear probe of benchmarks/probe.py: the regression, and features from a model's filtered latent state."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives in the checkout, not the wheel

from benchmarks import probe  # noqa: E402
from wm_agent import JEPADreamer  # noqa: E402


def test_ridge_r2_reads_linear_targets_and_not_noise():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1000, 20))
    linear = features @ rng.normal(size=(20, 2))
    r2 = probe.ridge_r2(features, np.concatenate([linear, rng.normal(size=(1000, 1))], axis=1))
    assert r2[0] > 0.99 and r2[1] > 0.99 and r2[2] < 0.05


def test_probe_a_kept_model_end_to_end(tmp_path, tiny_kwargs, capsys):
    import json

    run_dir = tmp_path / "runs" / "CartPole-v1" / "jepa_dreamer"
    run_dir.mkdir(parents=True)
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(100)
    model.save(run_dir / "seed0.zip")
    (run_dir / "seed0.json").write_text(
        json.dumps({"spec": {"env_id": "CartPole-v1", "label": "jepa_dreamer", "seed": 0}})
    )

    features, states = probe.rollout_features(model, "CartPole-v1", 50, seed=1)
    assert features.shape == (50, model.config.feat_size) and states.shape == (50, 4)
    assert np.isfinite(features).all()

    assert probe.main(["--runs", str(tmp_path), "--steps", "120"]) == 0
    table = (tmp_path / "probe.md").read_text()
    assert "| CartPole-v1 | jepa_dreamer | 1 |" in table and "| CartPole-v1 | jepa_dreamer (untrained) | 1 |" in table
    with pytest.raises(SystemExit):  # nothing kept for that env
        probe.main(["--runs", str(tmp_path), "--steps", "120", "--env", "Acrobot-v1"])
    assert "no JEPADreamer model kept" in capsys.readouterr().err
