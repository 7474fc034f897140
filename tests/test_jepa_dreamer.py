"""JEPADreamer as an SB3 algorithm: learn, predict, spaces, callbacks, save/load, errors."""

from __future__ import annotations

import dataclasses
import json
import zipfile

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    CheckpointCallback,
    EvalCallback,
    LogEveryNTimesteps,
    StopTrainingOnMaxEpisodes,
    StopTrainingOnRewardThreshold,
)
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.logger import configure
from stable_baselines3.common.vec_env import VecFrameStack, VecTransposeImage

from tests.conftest import SpaceEnv
from wm_agent import ENV_SETTINGS, JEPADreamer, JEPADreamerConfig, JEPADreamerPolicy, env_settings, make_config
from wm_agent.common import episode_limit, register_project_envs
from wm_agent.config import discount_for_episode_limit

IMAGE_HWC = spaces.Box(0, 255, (64, 64, 3), np.uint8)
OBS_SPACES = {
    "box": spaces.Box(-5, 5, (3,), np.float32),
    "image_hwc": IMAGE_HWC,
    "image_chw_small": spaces.Box(0, 255, (1, 32, 40), np.uint8),
    "grayscale_2d": spaces.Box(0, 255, (48, 48), np.uint8),
    "discrete": spaces.Discrete(5, start=2),
    "multidiscrete": spaces.MultiDiscrete([3, 4]),
    "multibinary": spaces.MultiBinary(4),
    "dict": spaces.Dict({"image": IMAGE_HWC, "vec": spaces.Box(-1, 1, (2,), np.float32), "d": spaces.Discrete(3)}),
}
ACTION_SPACES = {
    "discrete": spaces.Discrete(3),
    "box": spaces.Box(np.array([-2.0, 0.0]), np.array([2.0, 1.0]), dtype=np.float32),
    "multidiscrete": spaces.MultiDiscrete([2, 3]),
    "multibinary": spaces.MultiBinary(3),
}


def make_space_env(obs: str, action: str, n_envs: int = 1):
    return make_vec_env(lambda: SpaceEnv(OBS_SPACES[obs], ACTION_SPACES[action]), n_envs=n_envs, seed=0)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_learn_classic_control(env_id, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", env_id, **tiny_kwargs)
    model.learn(200)
    assert model.num_timesteps == 200
    assert model._n_updates > 0
    obs = model.env.reset()
    action, state = model.predict(obs, deterministic=True)
    assert model.env.action_space.contains(action[0])


@pytest.mark.parametrize("obs_name", list(OBS_SPACES))
def test_every_observation_space(obs_name, tiny_kwargs):
    env = make_space_env(obs_name, "discrete", n_envs=2)
    model = JEPADreamer("MultiInputPolicy" if obs_name == "dict" else "MlpPolicy", env, **tiny_kwargs)
    model.learn(60)
    assert model._n_updates > 0
    single = OBS_SPACES[obs_name].sample()
    action, state = model.predict(single)
    assert ACTION_SPACES["discrete"].contains(int(action))
    assert state[0].shape == (1, model.config.deter)


@pytest.mark.parametrize("action_name", list(ACTION_SPACES))
def test_every_action_space(action_name, tiny_kwargs):
    env = make_space_env("box", action_name, n_envs=2)
    model = JEPADreamer("MlpPolicy", env, **tiny_kwargs)
    model.learn(60)
    obs = env.reset()
    actions, _ = model.predict(obs)
    assert actions.shape == (2, *ACTION_SPACES[action_name].shape)
    for action in actions:
        assert ACTION_SPACES[action_name].contains(action.astype(ACTION_SPACES[action_name].dtype))


def test_reconstruction_representation_learns_on_images(tiny_kwargs):
    env = make_space_env("dict", "box")
    model = JEPADreamer("MultiInputPolicy", env, representation="reconstruction", **tiny_kwargs)
    model.learn(60)
    assert model._n_updates > 0
    assert not hasattr(model.policy.world_model, "predictor")


def test_barlow_and_stopgrad_variants_learn(tiny_kwargs):
    for overrides in (dict(anti_collapse="barlow"), dict(jepa_target="stopgrad"), dict(anti_collapse="none")):
        model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs, **overrides)
        model.learn(60)
        assert model._n_updates > 0


def test_predict_shapes_single_and_vectorized(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", make_vec_env("CartPole-v1", n_envs=3, seed=0), **tiny_kwargs)
    vec_obs = model.env.reset()
    actions, state = model.predict(vec_obs)
    assert actions.shape == (3,)
    assert [s.shape[0] for s in state] == [3, 3, 3]
    action, single_state = model.predict(vec_obs[0])
    assert np.ndim(action) == 0
    assert single_state[0].shape[0] == 1
    # channel-last images are accepted by predict although the model sees them channel-first
    image_model = JEPADreamer("CnnPolicy", make_space_env("image_hwc", "discrete"), **tiny_kwargs)
    action, _ = image_model.predict(IMAGE_HWC.sample())
    assert np.ndim(action) == 0


def test_state_is_carried_and_reset_at_episode_start(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(100)
    obs = np.array([0.01, 0.02, 0.03, 0.04], np.float32)
    _, fresh = model.predict(obs, deterministic=True)
    _, second = model.predict(obs, state=fresh, episode_start=np.array([False]), deterministic=True)
    _, restarted = model.predict(obs, state=second, episode_start=np.array([True]), deterministic=True)
    # with the state carried, the deterministic state differs from a fresh start; episode_start resets it exactly
    assert not np.allclose(fresh[0], second[0])
    np.testing.assert_allclose(restarted[0], fresh[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(restarted[1], fresh[1])


def test_evaluate_policy_works_unchanged(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    mean, std = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=2, seed=1), n_eval_episodes=4)
    assert 8 <= mean <= 500 and std >= 0


def test_same_seed_same_result(tiny_kwargs):
    def run():
        model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
        model.learn(120)
        return torch.cat([p.detach().flatten() for p in model.policy.parameters()])

    first, second = run(), run()
    assert torch.equal(first, second)


def test_save_load_identical_actions_and_continue(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(120)
    model.save(tmp_path / "agent")
    env = make_vec_env("CartPole-v1", n_envs=1, seed=3)
    obs = env.reset()
    loaded = JEPADreamer.load(tmp_path / "agent")  # no env: inference only
    assert loaded.config == model.config
    state_a = state_b = None
    starts = np.ones(1, bool)
    for _ in range(20):
        action_a, state_a = model.predict(obs, state_a, starts, deterministic=True)
        action_b, state_b = loaded.predict(obs, state_b, starts, deterministic=True)
        np.testing.assert_array_equal(action_a, action_b)
        obs, _, dones, _ = env.step(action_a)
        starts = dones
    # with an env: continue learning from the saved optimizer state
    resumed = JEPADreamer.load(tmp_path / "agent", env=make_vec_env("CartPole-v1", n_envs=1, seed=4))
    updates_before = resumed._n_updates
    resumed.learn(60, reset_num_timesteps=False)
    assert resumed.num_timesteps == 180
    assert resumed._n_updates > updates_before


def test_get_set_parameters_roundtrip(tiny_kwargs):
    source = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    source.learn(80)
    target = JEPADreamer("MlpPolicy", "CartPole-v1", **{**tiny_kwargs, "seed": 1})
    target.set_parameters(source.get_parameters())
    for a, b in zip(source.policy.parameters(), target.policy.parameters()):
        assert torch.equal(a, b)


def test_replay_buffer_save_load(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(80)
    model.save_replay_buffer(tmp_path / "replay")
    fresh = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    fresh.load_replay_buffer(tmp_path / "replay")
    assert len(fresh.replay_buffer) == len(model.replay_buffer)
    filled = int(model.replay_buffer.count.max())  # the saved replay holds the filled part
    np.testing.assert_array_equal(fresh.replay_buffer.obs["obs"], model.replay_buffer.obs["obs"][:, :filled])
    fresh.learn(40)  # and grows again as it is filled
    assert len(fresh.replay_buffer) > len(model.replay_buffer)
    wrong = JEPADreamer("MlpPolicy", make_vec_env("CartPole-v1", n_envs=2), **tiny_kwargs)
    with pytest.raises(ValueError, match="env streams"):
        wrong.load_replay_buffer(tmp_path / "replay")


def test_callbacks_run_and_can_stop(tmp_path, tiny_kwargs):
    class Counter(BaseCallback):
        def __init__(self):
            super().__init__()
            self.steps, self.started, self.ended = 0, False, False

        def _on_training_start(self):
            self.started = True

        def _on_step(self):
            assert {"new_obs", "dones", "infos"} <= set(self.locals)
            self.steps += 1
            return True

        def _on_training_end(self):
            self.ended = True

    counter = Counter()
    eval_env = make_vec_env("CartPole-v1", n_envs=1, seed=5)
    eval_callback = EvalCallback(
        eval_env,
        eval_freq=50,
        n_eval_episodes=2,
        callback_on_new_best=StopTrainingOnRewardThreshold(reward_threshold=1e9),
        log_path=str(tmp_path),
    )
    checkpoint = CheckpointCallback(save_freq=60, save_path=str(tmp_path / "ckpt"), save_replay_buffer=True)
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(130, callback=CallbackList([counter, eval_callback, checkpoint]), progress_bar=True)
    assert counter.started and counter.ended and counter.steps == 130
    assert (tmp_path / "evaluations.npz").exists()
    assert len(np.load(tmp_path / "evaluations.npz")["results"]) == 2
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "rl_model_120_steps.zip",
        "rl_model_60_steps.zip",
        "rl_model_replay_buffer_120_steps.pkl",
        "rl_model_replay_buffer_60_steps.pkl",
    ]
    stopper = StopTrainingOnMaxEpisodes(max_episodes=2)
    model.learn(10_000, callback=stopper)
    assert model.num_timesteps < 10_000
    assert stopper.n_episodes == 2


def test_tensorboard_and_logger_keys(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", tensorboard_log=str(tmp_path), **tiny_kwargs)
    model.learn(150, log_interval=1)
    assert list(tmp_path.glob("JEPADreamer_1/events.out.tfevents.*"))
    model.set_logger(configure(str(tmp_path / "csv"), ["csv"]))
    model.learn(150, log_interval=1, reset_num_timesteps=False)
    header = (tmp_path / "csv" / "progress.csv").read_text().splitlines()[0].split(",")
    for key in (
        "rollout/ep_rew_mean",
        "time/fps",
        "time/updates_per_sec",
        "train/model_loss",
        "train/kl",
        "train/jepa_loss",
        "train/jepa_copy_last_baseline",
        "train/embed_rank",
        "train/embed_std",
        "train/post_entropy",
        "train/actor_loss",
        "train/critic_loss",
    ):
        assert key in header, key


def test_replay_stores_terminal_observation_and_episode_starts(tiny_kwargs):
    env = make_vec_env(lambda: SpaceEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"], length=5), n_envs=2, seed=0)
    model = JEPADreamer("MlpPolicy", env, **{**tiny_kwargs, "learning_starts": 10**6})
    model.learn(18)  # 9 steps per env
    replay = model.replay_buffer
    # per stream: reset obs (first), 5 steps with the last terminal, reset obs (first), 4 more steps
    assert list(replay.count) == [11, 11]
    np.testing.assert_array_equal(replay.is_first[0, :11], [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(replay.terminated[0, :11], [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    # an episode start carries no action and no reward
    assert replay.action[0, 6].sum() == 0 and replay.reward[0, 6] == 0


def test_truncation_is_not_terminal(tiny_kwargs):
    env = make_vec_env(
        lambda: gym.wrappers.TimeLimit(SpaceEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"], length=100), 4),
        n_envs=1,
    )
    model = JEPADreamer("MlpPolicy", env, **{**tiny_kwargs, "learning_starts": 10**6})
    model.learn(8)
    replay = model.replay_buffer
    np.testing.assert_array_equal(replay.is_first[0, :10], [1, 0, 0, 0, 0, 1, 0, 0, 0, 0])
    assert not replay.terminated[0, :10].any()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "obs_space, action_space, match",
    [
        (spaces.Graph(spaces.Box(-1, 1, (2,)), None), spaces.Discrete(2), "observation space Graph.*FilterObservation"),
        (spaces.Dict({"a": spaces.Sequence(spaces.Discrete(2))}), spaces.Discrete(2), "observation key 'a'"),
        (spaces.Box(-1, 1, (2,)), spaces.Box(-np.inf, np.inf, (2,)), "finite bounds"),
    ],
)
def test_unsupported_spaces_raise_clearly(obs_space, action_space, match):
    with pytest.raises(ValueError, match=match):
        JEPADreamer("MlpPolicy", SpaceEnv(obs_space, action_space), preset="tiny")


def test_unsupported_action_space_raises_clearly():
    env = SpaceEnv(spaces.Box(-1, 1, (2,)), spaces.Tuple([spaces.Discrete(2)]))
    with pytest.raises((ValueError, AssertionError), match="action"):
        JEPADreamer("MlpPolicy", env, preset="tiny")


def test_bad_settings_raise_clearly():
    with pytest.raises(TypeError, match="train_ratoi"):
        JEPADreamer("MlpPolicy", "CartPole-v1", train_ratoi=3)
    with pytest.raises(ValueError, match="preset"):
        JEPADreamer("MlpPolicy", "CartPole-v1", preset="huge")
    with pytest.raises(ValueError, match="representation"):
        make_config(representation="pixels")


def test_predict_bad_input_raises_clearly(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.array([0.0, np.nan, 0.0, 0.0], np.float32))
    with pytest.raises(ValueError, match="dict"):
        model.predict({"obs": np.zeros(4, np.float32)})
    _, state = model.predict(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="state does not match"):
        model.predict(np.zeros((3, 4), np.float32), state=state)
    with pytest.raises(ValueError, match="Gymnasium API"):
        model.predict(gym.make("CartPole-v1").reset(seed=0))  # the (obs, info) tuple


def test_nan_observation_during_learning_raises():
    class NanEnv(SpaceEnv):
        def step(self, action):
            obs, *rest = super().step(action)
            return np.full_like(obs, np.nan), *rest

    model = JEPADreamer("MlpPolicy", NanEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"]), preset="tiny")
    with pytest.raises(ValueError, match="NaN"):
        model.learn(5)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_reward_during_learning_raises_before_it_is_stored(bad):
    class BadRewardEnv(SpaceEnv):
        def step(self, action):
            obs, _, *rest = super().step(action)
            return obs, bad if self.t == 3 else 1.0, *rest

    model = JEPADreamer("MlpPolicy", BadRewardEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"]), preset="tiny")
    with pytest.raises(ValueError, match="non-finite reward.*TransformReward"):
        model.learn(10)
    assert np.isfinite(model.replay_buffer.reward).all()


def test_bad_checkpoints_raise_clearly(tmp_path, tiny_kwargs):
    corrupted = tmp_path / "corrupted.zip"
    corrupted.write_bytes(b"not a zip at all")
    with pytest.raises(ValueError, match="corrupted"):
        JEPADreamer.load(corrupted)
    with pytest.raises(FileNotFoundError):
        JEPADreamer.load(tmp_path / "missing.zip")

    PPO("MlpPolicy", "CartPole-v1").save(tmp_path / "ppo")
    with pytest.raises(ValueError, match="not saved by JEPADreamer"):
        JEPADreamer.load(tmp_path / "ppo")

    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.save(tmp_path / "cartpole")
    with pytest.raises(ValueError, match="spaces do not match"):
        JEPADreamer.load(tmp_path / "cartpole", env=make_vec_env("Pendulum-v1"))

    # a checkpoint from an incompatible wm-agent version
    with zipfile.ZipFile(tmp_path / "cartpole.zip") as source, zipfile.ZipFile(tmp_path / "old.zip", "w") as target:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename == "data":
                data = data.replace(b'"wm_agent_version": "', b'"wm_agent_version": "9')
            target.writestr(item, data)
    with pytest.raises(ValueError, match="incompatible"):
        JEPADreamer.load(tmp_path / "old.zip")
    # the user's file is untouched by a failed load
    assert JEPADreamer.load(tmp_path / "cartpole").config == model.config


def test_config_or_overrides_not_both():
    with pytest.raises(TypeError, match="either"):
        JEPADreamer("MlpPolicy", "CartPole-v1", config=JEPADreamerConfig(), train_ratio=3)


def test_env_table_entries_are_checked_settings_and_copies():
    """Each `ENV_SETTINGS` entry names registered envs and valid settings; `env_settings` hands out a copy."""
    for env_id, entry in ENV_SETTINGS.items():
        register_project_envs(env_id)  # wm/ ids, as `wm-agent train` and the harness register them
        gym.spec(env_id)  # raises for an id Gymnasium does not know (a typo in the table)
        assert entry and make_config("small", **entry).to_dict().items() >= entry.items()
    assert env_settings("CartPole-v1") == {}
    settings = env_settings("Acrobot-v1")
    settings["intrinsic_scale"] = 0.5
    assert ENV_SETTINGS["Acrobot-v1"]["intrinsic_scale"] == 1.0
    # the constructor does not read the table: the same agent on every env unless the user passes the entry
    assert JEPADreamer("MlpPolicy", "Acrobot-v1", preset="tiny").config.intrinsic_scale == 0.0


@pytest.mark.parametrize(
    "env_id, limit, gamma",
    [("Pendulum-v1", 200, 0.99), ("CartPole-v1", 500, 0.99), ("MountainCarContinuous-v0", 999, 0.997)],
)
def test_default_discount_follows_the_episode_limit(env_id, limit, gamma, tmp_path):
    """`gamma=None` becomes a number from the env's time limit when the agent is built, and is saved as that number."""
    model = JEPADreamer("MlpPolicy", env_id, preset="tiny")
    assert episode_limit(model.env) == limit
    assert model.gamma == model.config.gamma == model.policy.config.gamma == gamma
    model.save(tmp_path / "agent.zip")
    assert JEPADreamer.load(tmp_path / "agent.zip").gamma == gamma


def _mountain_car_with_unpicklable_spec() -> gym.Env:
    """MountainCar whose spec holds a lambda, as one made with a callable env kwarg (a reward shaping) does."""
    env = gym.make("MountainCarContinuous-v0")
    env.unwrapped.spec = dataclasses.replace(env.unwrapped.spec, kwargs={"shaping": lambda r: r})
    return env


def test_episode_limit_through_vec_wrappers_and_subprocesses():
    """The limit is read through VecNormalize and VecFrameStack, and from a subprocess env whose spec would not pickle
    (an env kwarg that is a lambda): only the TimeLimit's int crosses the pipe."""
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

    wrapped = VecNormalize(VecFrameStack(make_vec_env("MountainCarContinuous-v0", n_envs=2), 2))
    assert episode_limit(wrapped) == 999
    wrapped.close()
    subprocess_env = make_vec_env(_mountain_car_with_unpicklable_spec, n_envs=1, vec_env_cls=SubprocVecEnv)
    try:
        assert JEPADreamer("MlpPolicy", subprocess_env, preset="tiny").gamma == 0.997
    finally:
        subprocess_env.close()


def test_default_discount_without_spec_and_explicit_gamma():
    """A `TimeLimit` around an env made without gym.make counts, no limit means 0.99, and a gamma the user sets wins
    (the config object the user passed is left as it was)."""
    assert [discount_for_episode_limit(n) for n in (None, 100, 500, 501, 1000)] == [0.99, 0.99, 0.99, 0.997, 0.997]
    make = lambda: SpaceEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"])  # noqa: E731
    assert JEPADreamer("MlpPolicy", make(), preset="tiny").gamma == 0.99
    assert JEPADreamer("MlpPolicy", gym.wrappers.TimeLimit(make(), 800), preset="tiny").gamma == 0.997
    assert JEPADreamer("MlpPolicy", "MountainCarContinuous-v0", preset="tiny", gamma=0.95).gamma == 0.95
    config = make_config("tiny")
    assert JEPADreamer("MlpPolicy", "MountainCarContinuous-v0", config=config).gamma == 0.997
    assert config.gamma is None
    assert make_config("tiny", gamma=0.0).gamma == 0.0  # a myopic agent, as SB3 allows
    for gamma in (1.5, -0.1):
        with pytest.raises(ValueError, match=r"gamma must be in \[0, 1\]"):
            make_config("tiny", gamma=gamma)
    with pytest.raises(ValueError, match="only JEPADreamer resolves"):
        JEPADreamerPolicy(OBS_SPACES["box"], ACTION_SPACES["discrete"], config)


def test_stop_on_episode_end_then_resume_keeps_replay_consistent(tiny_kwargs):
    env = make_vec_env(lambda: SpaceEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"], length=5), n_envs=1, seed=0)
    model = JEPADreamer("MlpPolicy", env, **{**tiny_kwargs, "learning_starts": 10**6})
    model.learn(100, callback=StopTrainingOnMaxEpisodes(max_episodes=1))
    assert model.num_timesteps == 5
    model.learn(3, reset_num_timesteps=False)
    replay = model.replay_buffer
    # first obs, 4 steps, the terminal obs, then the next episode starts afresh
    np.testing.assert_array_equal(replay.is_first[0, :10], [1, 0, 0, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(replay.terminated[0, :10], [0, 0, 0, 0, 0, 1, 0, 0, 0, 0])


def test_rollout_callbacks_and_action_locals(tiny_kwargs):
    class Recorder(BaseCallback):
        def __init__(self):
            super().__init__()
            self.rollouts = 0

        def _on_rollout_start(self):
            self.rollouts += 1

        def _on_step(self):
            assert self.locals["actions"].shape == (1,)
            assert self.locals["buffer_actions"].shape == (1, 2)  # one-hot of Discrete(2)
            return True

    recorder = Recorder()
    JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs).learn(30, callback=recorder)
    assert recorder.rollouts == 30


def test_inference_load_builds_no_replay_and_load_overrides_config(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(60)
    model.save(tmp_path / "agent")
    assert JEPADreamer.load(tmp_path / "agent").replay_buffer is None
    tuned = JEPADreamer.load(tmp_path / "agent", env=make_vec_env("CartPole-v1"), learning_starts=0, actor_lr=1e-3)
    assert tuned.config.learning_starts == 0 and tuned.config.deter == model.config.deter
    assert tuned.policy.actor_optimizer.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="jepa_horizon"):
        JEPADreamer.load(tmp_path / "agent", jepa_horizon=-1)


def test_policy_save_load_roundtrip(tmp_path, tiny_kwargs):
    from wm_agent import JEPADreamerPolicy

    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.policy.save(tmp_path / "policy.pth")
    policy = JEPADreamerPolicy.load(tmp_path / "policy.pth")
    obs = np.array([0.1, 0.0, -0.1, 0.2], np.float32)
    assert policy.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]


def test_no_multistep_prediction_and_config_checks(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **{**tiny_kwargs, "jepa_horizon": 0})
    model.learn(60)
    assert model._n_updates > 0
    with pytest.raises(ValueError, match="multiple of 16"):
        make_config(image_size=40)
    with pytest.raises(ValueError, match="training could never start"):
        JEPADreamer("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4), **{**tiny_kwargs, "buffer_size": 20}).learn(10)


def test_config_fields_take_numpy_scalars_as_python_values_and_refuse_other_types():
    """An optuna or numpy value (np.int64, np.float32) or a whole float (1e6) is a number: the config keeps it as a
    Python int or float, so it saves as JSON; a fraction where an int is meant, a bool for a number and a string for a
    number are refused by name."""
    config = make_config(
        train_ratio=np.int64(64), model_lr=np.float32(1e-4), return_norm_percentiles=[5, 95], buffer_size=1e6
    )
    assert type(config.train_ratio) is int and type(config.model_lr) is float
    assert type(config.buffer_size) is int and config.buffer_size == 1_000_000
    assert config.return_norm_percentiles == (5, 95)
    json.dumps(config.to_dict())
    for bad in (dict(hidden=128.5), dict(hidden=True), dict(model_lr="fast"), dict(planner=None)):
        with pytest.raises(TypeError, match=f"{next(iter(bad))} must be"):
            make_config(**bad)
    assert make_config(gamma=None).gamma is None and make_config(replay_dir=None).replay_dir is None


def test_vecnormalize_warns(tiny_kwargs):
    from stable_baselines3.common.vec_env import VecNormalize

    model = JEPADreamer("MlpPolicy", VecNormalize(make_vec_env("CartPole-v1")), **tiny_kwargs)
    with pytest.warns(UserWarning, match="VecNormalize"):
        model.learn(10)


def test_prefill_repeats_random_actions_but_not_across_episodes(tiny_kwargs):
    def switch_rate(model, starts):
        model._last_prefill_actions = None
        actions = []
        for start in starts:
            model._last_episode_starts = np.array([start])
            actions.append(int(model._prefill_actions()[0]))
        return np.mean(np.diff(actions) != 0)

    env = make_vec_env("Acrobot-v1")  # 3 actions: a fresh uniform draw differs from the last 2/3 of the time
    sticky = JEPADreamer("MlpPolicy", env, **{**tiny_kwargs, "prefill_repeat_prob": 0.9})
    uniform = JEPADreamer("MlpPolicy", env, **{**tiny_kwargs, "prefill_repeat_prob": 0.0})
    assert switch_rate(sticky, [False] * 600) < 0.12  # expected 0.1 * 2/3
    assert switch_rate(uniform, [False] * 600) > 0.55
    assert switch_rate(sticky, [True] * 600) > 0.55  # a new episode always draws afresh
    with pytest.raises(ValueError, match="prefill_repeat_prob"):
        make_config(prefill_repeat_prob=1.0)


def test_sticky_prefill_survives_a_change_in_the_number_of_envs(tmp_path, tiny_kwargs):
    model = JEPADreamer(
        "MlpPolicy", make_vec_env("Acrobot-v1", n_envs=2), **{**tiny_kwargs, "prefill_repeat_prob": 0.9}
    )
    model.learn(10)
    model.save(tmp_path / "agent")
    model = JEPADreamer.load(tmp_path / "agent", env=make_vec_env("Acrobot-v1", n_envs=3))
    assert model._last_prefill_actions is None  # not saved
    model.learn(10)  # back in prefill with 3 envs: the 2-env actions must not be reused
    assert model._last_prefill_actions.shape[0] == 3


@pytest.mark.parametrize("precision", ["auto", "float32", "bfloat16"])
def test_every_precision_learns_on_images_and_vectors(precision, tiny_kwargs):
    for obs, action in (("image_hwc", "discrete"), ("box", "box")):
        model = JEPADreamer("MlpPolicy", make_space_env(obs, action), precision=precision, **tiny_kwargs)
        model.learn(60)
        params = torch.cat([p.detach().flatten() for p in model.policy.parameters()])
        assert model._n_updates > 0 and torch.isfinite(params).all()
        assert all(p.dtype == torch.float32 for p in model.policy.parameters())  # autocast keeps fp32 weights


def test_unknown_precision_raises_with_the_choices():
    with pytest.raises(ValueError, match="precision must be one of"):
        make_config(precision="fp16")


def test_sb3_callbacks_that_read_dump_logs_and_gamma(tmp_path, tiny_kwargs):
    class SuccessEnv(SpaceEnv):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            return obs, reward, terminated, truncated, {**info, "is_success": terminated}

    env = make_vec_env(lambda: SuccessEnv(OBS_SPACES["box"], ACTION_SPACES["discrete"], length=5), n_envs=1, seed=0)
    model = JEPADreamer("MlpPolicy", env, **tiny_kwargs)
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(60, callback=LogEveryNTimesteps(n_steps=20), log_interval=None)
    header = (tmp_path / "progress.csv").read_text().splitlines()[0].split(",")
    assert "rollout/success_rate" in header and "time/fps" in header
    assert model.gamma == model.config.gamma


def test_channel_first_stack_with_more_channels_than_its_smallest_side(tiny_kwargs):
    frames = spaces.Box(0, 255, (41, 40, 5), np.uint8)
    env = make_vec_env(lambda: SpaceEnv(frames, ACTION_SPACES["discrete"]), n_envs=1, seed=0)
    env = VecTransposeImage(VecFrameStack(env, 10))  # (50, 41, 40): 50 channels, channel-first
    assert env.observation_space.shape == (50, 41, 40)
    model = JEPADreamer("CnnPolicy", env, **tiny_kwargs)  # 82 kB frames: the replay is sized for the run
    model.learn(40)
    action, _ = model.predict(env.reset(), deterministic=True)
    assert action.shape == (1,)


def test_non_finite_updates_are_skipped_then_stop_learning_with_the_last_good_weights(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", max_skipped_updates=3, **tiny_kwargs)
    model.learn(60)
    policy = model.policy
    clean_loss = policy.world_model.loss
    poisoned = {"calls": 0, "limit": 2}

    def loss_with_nan(batch):  # the first `limit` calls return a NaN reward loss
        loss, metrics, post = clean_loss(batch)
        if poisoned["calls"] < poisoned["limit"]:
            poisoned["calls"] += 1
            metrics["reward_loss"] = metrics["reward_loss"] * float("nan")
            loss = loss * float("nan")
        return loss, metrics, post

    policy.__dict__["world_model_loss"] = loss_with_nan
    updates = model._n_updates
    model.learn(40, reset_num_timesteps=False)  # two skipped updates, then training goes on
    assert model._skipped_updates == 2 and model._n_updates > updates
    assert all(torch.isfinite(p).all() for p in policy.parameters())

    poisoned.update(calls=0, limit=10**9)
    weights = [p.detach().clone() for p in policy.parameters()]
    with pytest.raises(FloatingPointError, match=r"3 updates in a row .* world model .* reward_loss"):
        model.learn(100, reset_num_timesteps=False)
    assert all(torch.equal(p, w) for p, w in zip(policy.parameters(), weights))  # the last good weights
    # and on disk, when a checkpoint path is given
    with pytest.raises(FloatingPointError, match="saved to .*last_good"):
        model.learn(100, reset_num_timesteps=False, checkpoint_path=tmp_path / "last_good")
    saved = JEPADreamer.load(tmp_path / "last_good")
    assert all(torch.equal(p, w) for p, w in zip(saved.policy.parameters(), weights))


def test_the_chosen_replay_size_is_logged(capsys, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", verbose=1, **tiny_kwargs)
    model.learn(30)
    assert "Replay: up to 1,000,000 steps of 30 bytes (0.03 GB), in memory" in capsys.readouterr().out


def test_replay_grows_with_the_run_and_keeps_every_step(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)  # buffer_size 1M: a short run reserves little
    model.learn(100)
    replay = model.replay_buffer
    assert replay.capacity == 1_000_000 and replay.allocated < 1000
    first = replay.obs["obs"][0, :50].copy()
    model.learn(3000, reset_num_timesteps=False)  # more than the first run reserved: the arrays double
    assert replay.allocated >= len(replay) >= 3100
    np.testing.assert_array_equal(replay.obs["obs"][0, :50], first)  # nothing lost or moved in the growth


def test_replay_that_cannot_fit_in_memory(monkeypatch, tiny_kwargs):
    import wm_agent.jepa_dreamer as jepa_dreamer

    monkeypatch.setattr(jepa_dreamer, "available_memory_bytes", lambda: 1_000_000)  # 1 MB free
    env = make_space_env("image_hwc", "discrete")  # 12 kB a step
    with pytest.raises(MemoryError, match="set buffer_size to at most"):  # a size the user set: refused up front
        JEPADreamer("CnnPolicy", env, buffer_size=100_000, **tiny_kwargs).learn(1000)
    model = JEPADreamer("CnnPolicy", env, **tiny_kwargs)  # the preset's size: capped to what fits, and logged
    model.learn(100)
    assert model.replay_buffer.capacity * 12_288 <= 1_000_000


def test_replay_loaded_into_a_smaller_buffer_and_sized_by_this_runs_steps(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(200)
    model.save_replay_buffer(tmp_path / "replay")
    small = JEPADreamer("MlpPolicy", "CartPole-v1", buffer_size=100, **tiny_kwargs)
    small.load_replay_buffer(tmp_path / "replay")  # more steps than the new buffer_size: kept, then a ring
    small.learn(50)
    assert len(small.replay_buffer) > len(model.replay_buffer)
    veteran = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    veteran.num_timesteps = 2_000_000  # a long-trained model fine-tuned for a few steps
    veteran.learn(100, reset_num_timesteps=False)
    assert veteran.replay_buffer.allocated < 1000  # sized by the 100 steps this call adds
