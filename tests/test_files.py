"""Crash-safe saving: a kill -9 in the middle of a save leaves the previous checkpoint loadable."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from wm_agent import JEPADreamer
from wm_agent.files import atomic_path, atomic_write_text

SAVER = textwrap.dedent(
    """
    import sys
    import torch
    from wm_agent import JEPADreamer
    torch.set_num_threads(1)
    model = JEPADreamer("MlpPolicy", "CartPole-v1", preset="small", seed=0, learning_starts=200)
    model.learn(300)
    path, replay = sys.argv[1], sys.argv[2]
    model.save(path)
    model.save_replay_buffer(replay)
    print("saved", flush=True)
    while True:  # keep saving until killed: the kill lands in the middle of a write
        model.save(path)
        model.save_replay_buffer(replay)
    """
)


@pytest.mark.parametrize("delay", [0.3, 0.7])
def test_kill_during_save_leaves_a_loadable_checkpoint(tmp_path, delay):
    path, replay = tmp_path / "agent.zip", tmp_path / "replay.pkl"
    process = subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(replay)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "saved"
        time.sleep(delay)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    model = JEPADreamer.load(path)
    model.load_replay_buffer(replay)
    assert model.num_timesteps >= 300 and len(model.replay_buffer) >= 300
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["agent.zip", "replay.pkl"]


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "results.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # the temporary file is cleaned up


def test_save_adds_the_zip_suffix_as_sb3_does(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.save(tmp_path / "agent")
    assert [p.name for p in tmp_path.iterdir()] == ["agent.zip"]
    assert JEPADreamer.load(tmp_path / "agent").num_timesteps == 0


def test_save_keeps_a_name_with_a_dot_and_a_plain_file_mode(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.save(tmp_path / "ckpt_lr0.0003")  # SB3 adds .zip only to a name without a suffix
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt_lr0.0003"]
    JEPADreamer.load(tmp_path / "ckpt_lr0.0003")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "ckpt_lr0.0003").stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    (tmp_path / "latest.zip").symlink_to(tmp_path / "ckpt_lr0.0003")
    model.save(tmp_path / "latest.zip")  # writes through the link, as a plain write does
    assert (tmp_path / "latest.zip").is_symlink()
