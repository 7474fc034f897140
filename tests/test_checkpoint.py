"""The pickle-free agent format: what is saved, what loads, and that a file with pickled code is refused."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env

from tests.test_jepa_dreamer import ACTION_SPACES, OBS_SPACES
from wm_agent import JEPADreamer, JEPADreamerPolicy, load_pretrained, package
from wm_agent.checkpoint import pickled_entries, space_from_json, space_to_json

OBS = np.array([0.01, -0.02, 0.03, 0.0], np.float32)


class WritesAFileWhenUnpickled:
    """A pickled object that runs code (it opens `path` for writing) as it is unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def rewrite_entry(source, target, name: str, payload: bytes) -> None:
    """Copy the zip `source` to `target` with the entry `name` replaced by `payload`."""
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for item in original.infolist():
            copy.writestr(item, payload if item.filename == name else original.read(item.filename))


@pytest.fixture
def saved(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(60)
    model.save(tmp_path / "agent")
    return model, tmp_path / "agent.zip"


@pytest.mark.parametrize(
    "space",
    [
        *OBS_SPACES.values(),
        *ACTION_SPACES.values(),
        spaces.Box(-np.inf, np.inf, (2, 3), np.float64),
        spaces.Box(np.array([0, -1], np.int64), np.array([5, 7], np.int64), dtype=np.int64),
        spaces.MultiDiscrete([[2, 3], [4, 5]], start=[[1, 0], [0, -2]]),
        spaces.MultiBinary([2, 2]),
    ],
    ids=str,
)
def test_every_supported_space_survives_json(space):
    description = json.loads(json.dumps(space_to_json(space)))
    rebuilt = space_from_json(description)
    assert rebuilt == space and rebuilt.dtype == space.dtype and type(rebuilt) is type(space)


def test_a_saved_agent_holds_only_json_and_tensors(saved):
    model, path = saved
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
        tensor_files = [name for name in archive.namelist() if name.endswith(".pth")]
        for name in tensor_files:  # weights_only refuses anything but tensors and plain containers
            torch.load(io.BytesIO(archive.read(name)), weights_only=True)
    assert pickled_entries(data) == []
    assert data["format_version"] == 1 and data["config"]["deter"] == model.config.deter
    assert data["policy_class"] == "JEPADreamerPolicy" and data["num_timesteps"] == 60
    assert {"policy.pth", "policy.model_optimizer.pth", "policy.actor_optimizer.pth"} <= set(tensor_files)
    loaded = JEPADreamer.load(path)
    assert loaded.config == model.config and loaded.num_timesteps == 60 and loaded._n_updates == model._n_updates
    assert loaded.observation_space == model.observation_space and loaded.action_space == model.action_space
    assert loaded.predict(OBS, deterministic=True)[0] == model.predict(OBS, deterministic=True)[0]


def test_a_pickled_entry_is_refused_and_its_code_does_not_run(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "code-ran"
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    payload = base64.b64encode(pickle.dumps(WritesAFileWhenUnpickled(marker))).decode()
    data["config"] = {":type:": "<class 'wm_agent.config.JEPADreamerConfig'>", ":serialized:": payload}
    rewrite_entry(path, tmp_path / "evil.zip", "data", json.dumps(data).encode())

    with pytest.raises(ValueError, match=r"pickled Python objects \(config\).*allow_pickle=True"):
        JEPADreamer.load(tmp_path / "evil.zip")
    folder = tmp_path / "jepa_dreamer-CartPole-v1"
    folder.mkdir()
    shutil.copy(tmp_path / "evil.zip", folder / "jepa_dreamer-CartPole-v1.zip")
    (folder / "results.json").write_text(json.dumps({"env_id": "CartPole-v1"}))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_pretrained(folder)
    assert not marker.exists()
    # the flag is what stands between the file and its code (which then breaks the load)
    with pytest.raises(ValueError):
        JEPADreamer.load(tmp_path / "evil.zip", allow_pickle=True)
    assert marker.exists()


def test_a_tensor_file_with_code_is_refused(saved, tmp_path):
    _, path = saved
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    torch.save({"weight": WritesAFileWhenUnpickled(marker)}, buffer)
    rewrite_entry(path, tmp_path / "evil.zip", "policy.pth", buffer.getvalue())
    with pytest.raises(ValueError, match="tensor file with Python objects"):
        JEPADreamer.load(tmp_path / "evil.zip")
    torch.save({"state_dict": {}, "data": WritesAFileWhenUnpickled(marker)}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="tensor file with Python objects"):
        JEPADreamerPolicy.load(tmp_path / "evil.pth")
    # a function of a module torch blocks outright (os.system) is named unsafe too, not merely damaged
    torch.save({"state_dict": {}, "data": os.system}, tmp_path / "system.pth")
    with pytest.raises(ValueError, match="tensor file with Python objects"):
        JEPADreamerPolicy.load(tmp_path / "system.pth")
    assert not marker.exists()


def test_a_file_saved_by_wm_agent_0_1_loads_only_when_trusted(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(40)
    model.wm_agent_version = "0.1.0"
    del model.config.__dict__["precision"]  # the field did not exist in 0.1
    BaseAlgorithm.save(model, tmp_path / "old.zip")  # 0.1's save: SB3's, with cloudpickled entries

    with pytest.raises(ValueError, match="saved by wm-agent 0.1.*allow_pickle=True"):
        JEPADreamer.load(tmp_path / "old.zip")
    old = JEPADreamer.load(tmp_path / "old.zip", allow_pickle=True)
    assert old.config.precision == "float32"  # how 0.1 ran, so its scores replay
    assert JEPADreamer.load(tmp_path / "old.zip", allow_pickle=True, learning_starts=0).config.precision == "float32"
    old.save(tmp_path / "converted")  # saving again converts it
    converted = JEPADreamer.load(tmp_path / "converted")
    assert converted.config.precision == "float32" and converted.num_timesteps == 40
    assert converted.predict(OBS, deterministic=True)[0] == old.predict(OBS, deterministic=True)[0]


def test_a_policy_subclass_is_named_not_imported(tmp_path, tiny_kwargs):
    class MyPolicy(JEPADreamerPolicy):
        pass

    JEPADreamer(MyPolicy, "CartPole-v1", **tiny_kwargs).save(tmp_path / "custom")
    with pytest.raises(ValueError, match="custom_objects=.*policy_class"):
        JEPADreamer.load(tmp_path / "custom")
    assert type(JEPADreamer.load(tmp_path / "custom", custom_objects={"policy_class": MyPolicy}).policy) is MyPolicy


def test_run_counters_and_episode_stats_survive_save_and_load(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(150)
    model.save(tmp_path / "agent")
    loaded = JEPADreamer.load(tmp_path / "agent", env=make_vec_env("CartPole-v1"))
    for name in ("num_timesteps", "_n_updates", "_episode_num", "_train_credit", "seed", "learning_rate"):
        assert getattr(loaded, name) == getattr(model, name), name
    assert list(loaded.ep_info_buffer) == list(model.ep_info_buffer) and loaded.ep_info_buffer.maxlen == 100
    for name in ("model", "actor", "critic"):
        saved_state = model.policy.optimizers[name].state_dict()["state"]
        loaded_state = loaded.policy.optimizers[name].state_dict()["state"]
        assert all(torch.equal(saved_state[k]["exp_avg"], loaded_state[k]["exp_avg"]) for k in saved_state)


def test_unknown_or_newer_saved_settings_raise(saved, tmp_path):
    _, path = saved
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    data["config"]["a_future_setting"] = 1
    rewrite_entry(path, tmp_path / "future.zip", "data", json.dumps(data).encode())
    with pytest.raises(ValueError, match=r"\['a_future_setting'\].*upgrade wm-agent"):
        JEPADreamer.load(tmp_path / "future.zip")
    data["config"].pop("a_future_setting")
    data["format_version"] = 2
    rewrite_entry(path, tmp_path / "format2.zip", "data", json.dumps(data).encode())
    with pytest.raises(ValueError, match="incompatible"):
        JEPADreamer.load(tmp_path / "format2.zip")


def test_a_packaged_agent_is_safe_and_saving_a_non_json_attribute_is_refused(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    folder = package(model, tmp_path, "CartPole-v1", 10.0, 1.0, 2)
    with zipfile.ZipFile(folder / "jepa_dreamer-CartPole-v1.zip") as archive:
        assert pickled_entries(json.loads(archive.read("data"))) == []
    model.my_note = object()
    with pytest.raises(TypeError, match=r"my_note=.*exclude=\['my_note'\]"):
        model.save(tmp_path / "agent")
    model.save(tmp_path / "agent", exclude=["my_note"])
    assert not hasattr(JEPADreamer.load(tmp_path / "agent"), "my_note")


def test_load_without_force_reset_continues_the_envs_episodes(tmp_path, tiny_kwargs):
    """SB3's contract (its test_save_load.py::test_set_env): load(env, force_reset=False) keeps the saved last
    observations, so that learn(reset_num_timesteps=False) goes on without resetting the env; the default resets."""
    env = make_vec_env("CartPole-v1")
    model = JEPADreamer("MlpPolicy", env, **tiny_kwargs)
    model.learn(40)
    model.save(tmp_path / "agent")
    loaded = JEPADreamer.load(tmp_path / "agent", env=env, force_reset=False)
    np.testing.assert_array_equal(loaded._last_obs, model._last_obs)
    np.testing.assert_array_equal(loaded._last_episode_starts, model._last_episode_starts)
    resets = []
    reset = env.reset
    env.reset = lambda: resets.append(1) or reset()
    loaded.learn(20, reset_num_timesteps=False)
    assert resets == [] and loaded.num_timesteps == 60
    assert JEPADreamer.load(tmp_path / "agent", env=env)._last_obs is None  # force_reset=True, SB3's default
    two_envs = JEPADreamer.load(tmp_path / "agent", env=make_vec_env("CartPole-v1", n_envs=2), force_reset=False)
    assert two_envs._last_obs is None  # saved for one env: the two start afresh
    model.save(tmp_path / "without", exclude=["_last_obs"])  # SB3's way to leave them out of the file
    assert JEPADreamer.load(tmp_path / "without", env=env, force_reset=False)._last_obs is None


def test_load_takes_an_env_id(saved):
    _, path = saved
    model = JEPADreamer.load(path, env="CartPole-v1")
    model.learn(20, reset_num_timesteps=False)
    assert model.num_timesteps == 80
