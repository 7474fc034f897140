"""Tests for the ``envs`` package: registration, both env checkers, determinism, spaces and settings."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import envs
from envs.scripted import CartPoleController, ConstantPolicy, CueMemoryPolicy, MatchTargetPolicy, PendulumController

HAS_ALE = importlib.util.find_spec("ale_py") is not None and importlib.util.find_spec("cv2") is not None
needs_ale = pytest.mark.skipif(not HAS_ALE, reason="ale-py / opencv not installed (pip install 'wm-agent[atari]')")

# id -> (observation shape, observation dtype, action space); what docs/ENVS.md and the docstrings promise.
EXPECTED = {
    "wm/PixelCartPole-v0": ((64, 64, 3), np.uint8, gym.spaces.Discrete(2)),
    "wm/PixelPendulum-v0": ((64, 64, 3), np.uint8, gym.spaces.Box(-2.0, 2.0, (1,), np.float32)),
    "wm/Atari-v0": ((64, 64, 3), np.uint8, gym.spaces.Discrete(6)),
    "wm/Pong-v0": ((64, 64, 3), np.uint8, gym.spaces.Discrete(6)),
    "wm/Breakout-v0": ((64, 64, 3), np.uint8, gym.spaces.Discrete(4)),
    "wm/CartPoleNoVel-v0": ((4,), np.float32, gym.spaces.Discrete(2)),
    "wm/PendulumNoVel-v0": ((3,), np.float32, gym.spaces.Box(-2.0, 2.0, (1,), np.float32)),
    "wm/CueMemory-v0": ((3,), np.float32, gym.spaces.Discrete(2)),
    "wm/SlipperyChain-v0": ((7,), np.float32, gym.spaces.Discrete(2)),
    "wm/DelayedReward-v0": ((2,), np.float32, gym.spaces.Discrete(2)),
    "wm/DistractorCartPole-v0": ((64, 64, 3), np.uint8, gym.spaces.Discrete(2)),
    "wm/CartPoleVariant-v0": ((4,), np.float32, gym.spaces.Discrete(2)),
    "wm/PendulumVariant-v0": ((3,), np.float32, gym.spaces.Box(-2.0, 2.0, (1,), np.float32)),
}
ATARI_IDS = ("wm/Atari-v0", "wm/Pong-v0", "wm/Breakout-v0")
IDS = [pytest.param(i, marks=needs_ale) if i in ATARI_IDS else i for i in envs.ENV_IDS]


def rollout(env: gym.Env, seed: int, actions: list) -> tuple[list[np.ndarray], list[float], list[bool]]:
    """Observations, rewards and done flags under a fixed action sequence, resetting (unseeded) on episode end."""
    obs, _ = env.reset(seed=seed)
    observations, rewards, dones = [obs], [], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(float(reward))
        dones.append(terminated or truncated)
        if terminated or truncated:
            obs, _ = env.reset()
            observations.append(obs)
    return observations, rewards, dones


def run_policy(env: gym.Env, policy, seed: int) -> tuple[float, int]:
    """Return and length of one episode."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    total, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total, steps, done = total + float(reward), steps + 1, terminated or truncated
    return total, steps


# ----------------------------------------------------------------------------------------------- registration


def test_every_id_is_registered_on_import():
    assert set(envs.ENV_IDS) == set(EXPECTED)
    for env_id in envs.ENV_IDS:
        assert env_id in gym.registry
    importlib.reload(envs)  # registering twice must not raise or warn about overrides
    assert all(env_id.startswith("wm/") for env_id in envs.ENV_IDS)


@pytest.mark.parametrize(("preset", "expected"), [(None, "dummy"), ("offscreen", "offscreen")])
def test_headless_video_driver_is_set_without_clobbering(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}
    if preset:
        env["SDL_VIDEODRIVER"] = preset
    code = "import os, envs; print(os.environ['SDL_VIDEODRIVER'])"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_a_pixel_run_stops_on_sigterm():
    """SDL's own SIGTERM handler would turn `kill`/`timeout` into a quit event that nobody reads (seen: a pixel
    CartPole training run survived `kill`)."""
    pytest.importorskip("pygame")
    env = {k: v for k, v in os.environ.items() if k != "SDL_NO_SIGNAL_HANDLERS"}
    code = (
        "import os, signal, time, envs, gymnasium as gym\n"
        "e = gym.make('wm/PixelCartPole-v0'); e.reset(seed=0); e.step(0)\n"
        "os.kill(os.getpid(), signal.SIGTERM); time.sleep(10); print('survived')"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == -15 and "survived" not in out.stdout, (out.returncode, out.stdout, out.stderr)


@pytest.mark.parametrize("env_id", envs.ENV_IDS)
def test_entry_point_docstring_states_spaces_and_reward(env_id):
    entry_point = gym.registry[env_id].entry_point
    module, name = entry_point.split(":")
    doc = getattr(importlib.import_module(module), name).__doc__ or ""
    assert "observation" in doc.lower() or "obs " in doc.lower(), entry_point
    assert "reward" in doc.lower(), entry_point
    assert "action" in doc.lower(), entry_point


# ----------------------------------------------------------------------------------------------- checkers


@pytest.mark.parametrize("env_id", IDS)
def test_passes_gymnasium_env_checker(env_id):
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is different from the unwrapped version.*")
        gym_check_env(env)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_passes_sb3_env_checker(env_id):
    env = gym.make(env_id)
    sb3_check_env(env, warn=True)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_spaces_are_as_documented(env_id):
    env = gym.make(env_id)
    shape, dtype, action_space = EXPECTED[env_id]
    assert env.observation_space.shape == shape
    assert env.observation_space.dtype == dtype
    assert env.action_space == action_space
    obs, _ = env.reset(seed=0)
    assert obs.shape == shape and obs.dtype == dtype
    assert env.observation_space.contains(obs)
    env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_trajectory(env_id):
    env = gym.make(env_id)
    env.action_space.seed(123)
    n = 40 if env.observation_space.dtype == np.uint8 else 300
    actions = [env.action_space.sample() for _ in range(n)]
    obs_a, rew_a, done_a = rollout(env, 7, actions)
    obs_b, rew_b, done_b = rollout(env, 7, actions)
    assert len(obs_a) == len(obs_b)
    for a, b in zip(obs_a, obs_b):
        np.testing.assert_array_equal(a, b)
    assert rew_a == rew_b and done_a == done_b
    # ...and a different seed gives a different trajectory somewhere.
    others = [rollout(env, seed, actions)[0] for seed in (8, 9, 10)]
    assert any(len(o) != len(obs_a) or any(not np.array_equal(x, y) for x, y in zip(o, obs_a)) for o in others)
    env.close()


# ----------------------------------------------------------------------------------------------- pixels


def test_pixel_obs_is_the_resized_render():
    env = gym.make("wm/PixelCartPole-v0")
    obs, _ = env.reset(seed=0)
    assert env.render_mode == "rgb_array"
    frame = env.render()
    assert frame.shape == (400, 600, 3)
    import cv2

    np.testing.assert_array_equal(obs, cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA))
    assert obs.min() < 100 and obs.max() == 255  # something is drawn on the white background
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"size": 32}, (32, 32, 3)),
        ({"grayscale": True}, (64, 64, 1)),
        ({"frame_stack": 4}, (64, 64, 12)),
        ({"grayscale": True, "frame_stack": 3}, (64, 64, 3)),
    ],
)
def test_pixel_env_options(kwargs, shape):
    env = envs.make_pixel_env("CartPole-v1", **kwargs)
    assert env.observation_space.shape == shape
    obs, _ = env.reset(seed=0)
    assert obs.shape == shape and obs.dtype == np.uint8
    sb3_check_env(env)


def test_frame_stack_keeps_the_newest_frame_last():
    stacked = envs.make_pixel_env("CartPole-v1", frame_stack=2)
    plain = envs.make_pixel_env("CartPole-v1")
    stacked.reset(seed=3)
    plain.reset(seed=3)
    frames = [plain.step(1)[0] for _ in range(6)]  # one CartPole step can move less than a 64x64 pixel
    for _ in range(6):
        obs_s, *_ = stacked.step(1)
    np.testing.assert_array_equal(obs_s[..., :3], frames[-2])
    np.testing.assert_array_equal(obs_s[..., 3:], frames[-1])
    assert not np.array_equal(frames[0], frames[-1])


def test_pixel_env_rejects_human_render_mode():
    with pytest.raises(ValueError, match="rgb_array"):
        envs.make_pixel_env("CartPole-v1", render_mode="human")


# ----------------------------------------------------------------------------------------------- distractors


def _paired_rollouts(strength: float, kind: str = "shapes", steps: int = 15):
    plain = gym.make("wm/PixelCartPole-v0")
    noisy = gym.make("wm/DistractorCartPole-v0", distractor_strength=strength, distractor=kind)
    obs_p, _ = plain.reset(seed=5)
    obs_d, _ = noisy.reset(seed=5)
    pairs = [(obs_p, obs_d, 0.0, 0.0)]
    for t in range(steps):
        action = t % 2
        obs_p, r_p, term_p, _, _ = plain.step(action)
        obs_d, r_d, term_d, _, _ = noisy.step(action)
        assert term_p == term_d
        pairs.append((obs_p, obs_d, r_p, r_d))
    return pairs


def test_distractor_strength_zero_is_the_plain_pixel_env():
    for obs_p, obs_d, r_p, r_d in _paired_rollouts(0.0):
        np.testing.assert_array_equal(obs_p, obs_d)
        assert r_p == r_d


@pytest.mark.parametrize("kind", ["shapes", "noise"])
def test_distractor_changes_only_the_background(kind):
    moved = []
    previous = None
    for obs_p, obs_d, r_p, r_d in _paired_rollouts(1.0, kind):
        assert r_p == r_d
        foreground = np.any(obs_p != 255, axis=-1)
        assert foreground.sum() > 20
        np.testing.assert_array_equal(obs_d[foreground], obs_p[foreground])  # task pixels unchanged
        assert (obs_d[~foreground] != 255).any(axis=-1).mean() > 0.1  # background visibly covered
        if previous is not None:
            moved.append(np.abs(obs_d[~foreground].astype(int) - previous[~foreground].astype(int)).sum())
        previous = obs_d
    assert min(moved) > 0  # the distractor moves every step


def test_distractor_strength_scales_the_background_change():
    diffs = []
    for strength in (0.25, 0.5, 1.0):
        obs_p, obs_d, _, _ = _paired_rollouts(strength, steps=3)[-1]
        diffs.append(np.abs(obs_d.astype(int) - obs_p.astype(int)).mean())
    assert 0 < diffs[0] < diffs[1] < diffs[2]
    with pytest.raises(ValueError):
        gym.make("wm/DistractorCartPole-v0", distractor_strength=1.5)


# ----------------------------------------------------------------------------------------------- partial observability


@pytest.mark.parametrize(("novel_id", "full_id", "zeroed"), [
    ("wm/CartPoleNoVel-v0", "CartPole-v1", [1, 3]),
    ("wm/PendulumNoVel-v0", "Pendulum-v1", [2]),
])  # fmt: skip
def test_novel_hides_exactly_the_velocities(novel_id, full_id, zeroed):
    novel, full = gym.make(novel_id), gym.make(full_id)
    novel.action_space.seed(0)
    actions = [novel.action_space.sample() for _ in range(30)]
    obs_n, rew_n, _ = rollout(novel, 4, actions)
    obs_f, rew_f, _ = rollout(full, 4, actions)
    kept = [i for i in range(obs_f[0].shape[0]) if i not in zeroed]
    for a, b in zip(obs_n, obs_f):
        assert np.all(a[zeroed] == 0)
        np.testing.assert_array_equal(a[kept], b[kept])
    assert any(np.any(b[zeroed] != 0) for b in obs_f)
    assert rew_n == rew_f


def test_novel_needs_memory():
    env = gym.make("wm/CartPoleNoVel-v0")
    assert run_policy(env, CartPoleController(memory=True), seed=0)[0] == 500
    assert run_policy(env, CartPoleController(memory=False), seed=0)[0] < 100
    pend = gym.make("wm/PendulumNoVel-v0")
    with_memory = [run_policy(pend, PendulumController(memory=True), seed=s)[0] for s in range(5)]
    without = [run_policy(pend, PendulumController(memory=False), seed=s)[0] for s in range(5)]
    assert np.mean(with_memory) > -300 and np.mean(without) < -700


@pytest.mark.parametrize("delay", [0, 5, 30])
def test_cue_memory_delay_and_reward(delay):
    env = gym.make("wm/CueMemory-v0", delay=delay, n_cues=3)
    for seed in range(6):
        obs, info = env.reset(seed=seed)
        assert obs[info["cue"]] == 1 and obs[:-1].sum() == 1
        for _ in range(delay):
            obs, reward, terminated, _, _ = env.step(0)
            assert reward == 0 and not terminated
            if obs[-1] == 0:
                assert not obs.any()  # the cue is gone during the delay
        assert obs[-1] == 1  # query shown
        _, reward, terminated, _, _ = env.step(info["cue"])
        assert terminated and reward == 1.0
    assert run_policy(env, CueMemoryPolicy(memory=True), seed=3) == (1.0, delay + 1)
    wrong = {run_policy(env, CueMemoryPolicy(memory=False), seed=s)[0] for s in range(20)}
    assert wrong == {1.0, -1.0}


# ----------------------------------------------------------------------------------------------- stochasticity


def test_slippery_chain_noise_level_is_the_slip_rate():
    for noise in (0.0, 0.25, 0.5):
        env = gym.make("wm/SlipperyChain-v0", noise=noise)
        env.reset(seed=0)
        slips = []
        for _ in range(4000):
            _, _, terminated, truncated, info = env.step(1)
            slips.append(info["slipped"])
            if terminated or truncated:
                env.reset()
        assert abs(np.mean(slips) - noise) < 0.03, noise


def test_slippery_chain_outcomes_are_bimodal_and_scores_match_theory():
    env = gym.make("wm/SlipperyChain-v0", noise=0.25)
    obs, _ = env.reset(seed=0)
    start = int(np.argmax(obs))
    nxt = set()
    for seed in range(40):
        env.reset(seed=seed)
        obs, *_ = env.step(1)
        nxt.add(int(np.argmax(obs)))
    assert nxt == {start - 1, start + 1}
    assert run_policy(gym.make("wm/SlipperyChain-v0", noise=0.0), ConstantPolicy(1), seed=0) == (1.0, 3)
    returns = [run_policy(env, ConstantPolicy(1), seed=s)[0] for s in range(400)]
    expected = envs.SlipperyChainEnv(noise=0.25).always_right_score()
    assert abs(expected - 0.929) < 1e-3
    assert abs(np.mean(returns) - expected) < 0.08


# ----------------------------------------------------------------------------------------------- time scales


@pytest.mark.parametrize("delay", [0, 3, 25])
def test_delayed_reward_arrives_delay_steps_later(delay):
    env = gym.make("wm/DelayedReward-v0", delay=delay, n_decisions=16)
    obs, _ = env.reset(seed=1)
    rewards = []
    done = False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(MatchTargetPolicy()(obs))
        rewards.append(reward)
        done = terminated or truncated
    assert len(rewards) == 16 + delay
    assert rewards[:delay] == [0.0] * delay and rewards[delay:] == [1.0] * 16
    # A wrong first action is punished exactly `delay` steps later, and nowhere else.
    obs, _ = env.reset(seed=1)
    first = [1 - int(np.argmax(obs))] + [None] * (15 + delay)
    rewards = []
    for action in first:
        action = MatchTargetPolicy()(obs) if action is None else action
        obs, reward, *_ = env.step(action)
        rewards.append(reward)
    assert rewards[delay] == -1.0 and sum(rewards) == 14.0


# ----------------------------------------------------------------------------------------------- domain variants


def test_cartpole_variant_defaults_match_cartpole():
    actions = [0, 1, 1, 0, 1] * 8
    default, _, _ = rollout(gym.make("wm/CartPoleVariant-v0"), 2, actions)
    reference, _, _ = rollout(gym.make("CartPole-v1"), 2, actions)
    for a, b in zip(default, reference):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("setting", [{"length": 1.5}, {"masspole": 1.0}, {"gravity": 20.0}, {"force_mag": 3.0}])
def test_cartpole_variant_physics_changes_dynamics(setting):
    actions = [1] * 8
    default, _, _ = rollout(gym.make("wm/CartPoleVariant-v0"), 2, actions)
    env = gym.make("wm/CartPoleVariant-v0", **setting)
    variant, _, _ = rollout(env, 2, actions)
    np.testing.assert_array_equal(default[0], variant[0])  # same initial state
    assert not np.allclose(default[-1], variant[-1])
    _, info = env.reset(seed=0)
    for name, value in setting.items():
        assert info["physics"][name] == value


def test_variant_ranges_are_sampled_per_episode_and_seeded():
    env = gym.make("wm/CartPoleVariant-v0", length=(0.25, 1.0), gravity=(5.0, 15.0))
    lengths = [env.reset(seed=s)[1]["physics"]["length"] for s in range(10)]
    assert all(0.25 <= v <= 1.0 for v in lengths) and len(set(lengths)) == 10
    assert env.reset(seed=3)[1]["physics"] == env.reset(seed=3)[1]["physics"]
    assert env.unwrapped.polemass_length == pytest.approx(0.1 * env.unwrapped.length)
    with pytest.raises(ValueError):
        gym.make("wm/CartPoleVariant-v0", length=(0.1, 0.2, 0.3))


def test_pendulum_variant_physics_changes_dynamics():
    actions = [np.array([0.5], dtype=np.float32)] * 10
    default, _, _ = rollout(gym.make("wm/PendulumVariant-v0"), 0, actions)
    reference, _, _ = rollout(gym.make("Pendulum-v1"), 0, actions)
    np.testing.assert_array_equal(default[-1], reference[-1])
    for setting in ({"g": 15.0}, {"m": 2.0}, {"l": 0.5}):
        variant, _, _ = rollout(gym.make("wm/PendulumVariant-v0", **setting), 0, actions)
        assert not np.allclose(default[-1], variant[-1]), setting


# ----------------------------------------------------------------------------------------------- Atari


@needs_ale
def test_atari_preprocessing_settings():
    env = envs.make_atari("Breakout", grayscale=True)
    assert env.observation_space.shape == (64, 64, 1)
    obs, info = env.reset(seed=0)
    frame = info["episode_frame_number"]
    obs, _, _, _, info = env.step(1)
    assert info["episode_frame_number"] - frame == 4  # frame skip 4
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    stacked = envs.make_atari("Pong", frame_stack=4)
    assert stacked.observation_space.shape == (4, 64, 64, 3)


@needs_ale
def test_atari_life_loss_setting():
    def first_end(terminal_on_life_loss):
        env = envs.make_atari("Breakout", terminal_on_life_loss=terminal_on_life_loss, noop_max=0)
        _, info = env.reset(seed=0)
        lives = info["lives"]
        for t in range(3000):
            _, _, terminated, truncated, info = env.step(1)  # FIRE, then the ball is missed
            if info["lives"] < lives or terminated or truncated:
                return t, info["lives"], terminated
        raise AssertionError("no life lost")

    _, lives, terminated = first_end(True)
    assert terminated and lives == 4
    _, lives, terminated = first_end(False)
    assert not terminated and lives == 4


@needs_ale
def test_atari_sticky_actions_setting_changes_outcomes():
    def trajectory(p):
        env = envs.make_atari("Pong", sticky_action_prob=p, noop_max=0)
        env.reset(seed=0)
        return [env.step(a % 6)[0] for a in range(60)]

    no_sticky, sticky = trajectory(0.0), trajectory(0.25)
    assert any(not np.array_equal(a, b) for a, b in zip(no_sticky, sticky))


@needs_ale
def test_atari_vector_env():
    vec = envs.make_atari_vector("MsPacman", num_envs=2)
    single = envs.make_atari("MsPacman")
    assert vec.single_observation_space == single.observation_space
    assert vec.single_action_space == single.action_space
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8
    obs, reward, terminated, truncated, _ = vec.step(vec.action_space.sample())
    assert obs.shape == (2, 64, 64, 3) and reward.shape == (2,)
    assert vec.observation_space.contains(obs)
    vec.close()
    for kwargs, shape in (({"grayscale": True}, (3, 64, 64, 1)), ({"frame_stack": 4}, (3, 4, 64, 64, 3))):
        vec = envs.make_atari_vector("Pong", num_envs=3, **kwargs)
        assert vec.reset(seed=0)[0].shape == shape == vec.observation_space.shape
        assert vec.single_observation_space == envs.make_atari("Pong", **kwargs).observation_space
        vec.close()
    with pytest.raises(ValueError, match="unknown Atari game"):
        envs.make_atari_vector("NotAGame")
    assert len(envs.ATARI_100K_GAMES) == 26 and envs.ATARI_100K_STEPS == 100_000


@pytest.mark.parametrize("env_id", ["wm/CueMemory-v0", "wm/SlipperyChain-v0", "wm/DelayedReward-v0"])
def test_small_envs_render_their_observation(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (16, 16 * obs.shape[0], 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame[8, 8::16, 0], np.rint(255 * obs).astype(np.uint8))
    no_render = gym.make(env_id)
    no_render.reset(seed=0)
    assert no_render.render() is None
