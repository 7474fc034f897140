"""wm_agent.common: the kwargs syntax, the policy picker, the algorithm table and env registration."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from gymnasium import spaces

from wm_agent.common import ALGO_NAMES, algo_class, parse_kwargs, policy_for, register_project_envs


def test_parse_kwargs_accepts_every_form_users_type():
    expected = {"learning_rate": 0.001, "preset": "tiny"}
    assert parse_kwargs(["learning_rate=1e-3", "preset=tiny"]) == expected  # wm-agent train --hyperparams a=1 b=2
    assert parse_kwargs("learning_rate=1e-3,preset=tiny") == expected  # compare --algo-kwargs ALGO:a=1,b=2
    assert parse_kwargs(['{"learning_rate": 0.001, "preset": "tiny"}']) == expected
    assert parse_kwargs("policy_kwargs={'net_arch': [64, 64]}, use_sde=True, x=None") == {
        "policy_kwargs": {"net_arch": [64, 64]},
        "use_sde": True,
        "x": None,
    }
    strings = parse_kwargs(["env_id=CartPole-v1", "path=/tmp/a,b", "render_mode=rgb_array", "name='a,b=c'"])
    assert strings == {"env_id": "CartPole-v1", "path": "/tmp/a,b", "render_mode": "rgb_array", "name": "a,b=c"}
    assert parse_kwargs("sizes=1,2,seed=3") == {"sizes": (1, 2), "seed": 3}  # a comma starts a pair only before k=
    assert parse_kwargs(["n=1", "n=2"]) == {"n": 2} and parse_kwargs("") == {} and parse_kwargs([]) == {}
    for bad in ("n_epochs", "=3", "[1, 2]", "{not json}", '{"a": 1} x'):
        with pytest.raises(ValueError, match="k=v pairs|bad JSON"):
            parse_kwargs(bad)


def test_policy_for_and_algo_class():
    image = spaces.Box(0, 255, (64, 64, 12), np.uint8)  # 4 stacked RGB frames are still an image
    assert policy_for(image) == "CnnPolicy"
    assert policy_for(spaces.Box(-1, 1, (4,), np.float32)) == "MlpPolicy"
    assert policy_for(spaces.Dict({"image": image})) == "MultiInputPolicy"
    from stable_baselines3 import PPO

    from wm_agent import JEPADreamer

    assert algo_class("ppo") is PPO and algo_class("jepa_dreamer") is JEPADreamer
    assert all(isinstance(algo_class(name), type) for name in ALGO_NAMES)
    with pytest.raises(ValueError, match="unknown algorithm 'rainbow'"):
        algo_class("rainbow")


def test_register_project_envs_without_envs_is_silent_and_a_broken_envs_warns(tmp_path, monkeypatch, recwarn):
    monkeypatch.setitem(sys.modules, "envs", None)  # as if the package were not installed
    register_project_envs()
    assert not recwarn.list

    broken = tmp_path / "envs"
    broken.mkdir()
    (broken / "__init__.py").write_text("import a_dependency_that_is_missing\n")
    monkeypatch.delitem(sys.modules, "envs")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.warns(UserWarning, match="a_dependency_that_is_missing"):
        register_project_envs()


def test_register_project_envs_registers_what_an_id_needs_from_its_package(monkeypatch):
    """An id of a package whose Gymnasium plugin no longer loads (as MinAtar's) is registered as its users must;
    one whose package is not installed is left to `gym.make`, which names the namespace."""
    import types

    import gymnasium as gym

    from wm_agent import common

    calls = []
    package = types.ModuleType("a_fake_env_package")
    package.register_envs = lambda: (
        calls.append(1) or gym.register("Fake/Env-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv")
    )
    monkeypatch.setitem(sys.modules, "a_fake_env_package", package)
    monkeypatch.setitem(common.PACKAGE_REGISTRATION, "Fake/", ("a_fake_env_package", "register_envs"))
    monkeypatch.setitem(common.PACKAGE_REGISTRATION, "Missing/", ("a_package_that_is_not_installed", "register"))
    try:
        register_project_envs("Fake/Env-v0", "Missing/Env-v0", "CartPole-v1")
        register_project_envs("Fake/Env-v0")  # registered once, not again
        assert calls == [1] and gym.make("Fake/Env-v0").observation_space.shape == (4,)
        with pytest.raises(gym.error.NamespaceNotFound):
            gym.make("Missing/Env-v0")
    finally:
        gym.registry.pop("Fake/Env-v0", None)
