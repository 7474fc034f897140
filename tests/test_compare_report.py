"""`compare --report` over a stored out folder writes byte-identical tables (golden files made before a refactor).

tests/data/compare_report/runs holds the run files of a tiny real grid (CartPole-v1: a2c, dqn with two budgets,
jepa_dreamer; Pendulum-v1: sac, jepa_dreamer@small-lr); golden_*/ hold the tables the harness wrote from them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wm_agent.compare import main

DATA = Path(__file__).parent / "data" / "compare_report"
TABLES = ("summary.md", "summary.json", "evals.csv", "evals.json")


@pytest.mark.parametrize(
    ("golden", "flags"),
    [
        ("golden_thresholds", ["--threshold", "CartPole-v1=12", "--threshold", "Pendulum-v1=-1400"]),
        ("golden_cartpole", ["--env", "CartPole-v1"]),
    ],
)
def test_report_tables_are_byte_identical(golden, flags, tmp_path, capsys):
    shutil.copytree(DATA / "runs", tmp_path / "runs")
    assert main(["--report", "--out", str(tmp_path), *flags]) == 0
    for name in TABLES:
        assert (tmp_path / name).read_bytes() == (DATA / golden / name).read_bytes(), name
    assert capsys.readouterr().out == (DATA / golden / "summary.md").read_text() + "\n"
