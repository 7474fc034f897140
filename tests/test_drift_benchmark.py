"""benchmarks/drift.py end to end on the tiny preset: trains, measures, writes the table, JSON and figure, resumes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ lives in the checkout, not the wheel

from benchmarks import drift  # noqa: E402


def test_drift_benchmark_writes_tables_and_resumes(tmp_path, capsys):
    out, figures = tmp_path / "out", tmp_path / "figures"
    argv = ["--env", "CartPole-v1", "--preset", "tiny", "--steps", "100", "--episodes", "2", "--horizon", "5"]
    argv += ["--eval-episodes", "1", "--jobs", "0", "--out", str(out), "--figures", str(figures)]
    assert drift.main(argv) == 0
    results = json.loads((out / "drift.json").read_text())["CartPole-v1"]
    assert set(results) == {"jepa", "reconstruction"}
    assert all(results[rep]["run"]["eval_episodes"] == 1 for rep in results)
    assert "obs_error" in results["reconstruction"]["curves"]["metrics"]
    assert "embed_error" in results["jepa"]["curves"]["metrics"]
    # both models measured again on the same episodes, one collected by each agent's policy
    pooled = [results[rep]["pooled"] for rep in ("jepa", "reconstruction")]
    assert pooled[0]["count"] == pooled[1]["count"] and pooled[0]["info"]["episodes"] == 2
    table = (out / "drift.md").read_text()
    assert table.count("| 5 |") == 2 and "obs MSE (recon)" in table and "on the same 2 episodes" in table
    assert (figures / "drift_CartPole-v1.png").stat().st_size > 0
    model = out / "models" / "CartPole-v1" / "jepa.zip"
    stamp = model.stat().st_mtime_ns
    assert drift.main(argv) == 0  # resumed: the trained models are reused
    assert model.stat().st_mtime_ns == stamp
    # the same models on episodes of the shipped CartPole agent
    assert drift.main([*argv, "--pooled-from", "pretrained", "--episodes", "1"]) == 0
    results = json.loads((out / "drift.json").read_text())["CartPole-v1"]
    assert results["jepa"]["pooled"]["info"]["collected_by"] == {"shipped agent": 1}
    assert "1 by the shipped agent" in (out / "drift.md").read_text()
