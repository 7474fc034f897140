"""The sequence replay: frames stored at the model's resolution, disk-backed (memory-mapped) arrays, save and load."""

from __future__ import annotations

import gc
import pickle
from collections import namedtuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.save_util import save_to_pkl

import envs  # noqa: F401  (registers wm/PixelCartPole-v0)
from tests.conftest import SpaceEnv
from wm_agent import JEPADreamer
from wm_agent.replay import SequenceReplay
from wm_agent.spaces import resize_frames

FRAMES_96 = spaces.Box(0, 255, (96, 96, 3), np.uint8)  # channel-last, larger than the model's 64 x 64


def frame_env(space: spaces.Space, n_envs: int = 1):
    return make_vec_env(lambda: SpaceEnv(space, spaces.Discrete(2), length=7), n_envs=n_envs, seed=0)


def fill(replay: SequenceReplay, steps: int, seed: int = 0) -> None:
    """Random steps into every stream, with an episode start now and then."""
    rng = np.random.default_rng(seed)
    n = replay.n_streams
    for _ in range(steps):
        obs = {
            name: rng.integers(0, 256, (n, *value.shape[2:])).astype(value.dtype) for name, value in replay.obs.items()
        }
        replay.add(obs, rng.random((n, replay.action.shape[2]), np.float32), rng.random(n), rng.random(n) < 0.1,
                   rng.random(n) < 0.1)  # fmt: skip


def test_resize_frames_is_one_function_of_the_pixels():
    frames = torch.randint(0, 256, (5, 3, 84, 96), dtype=torch.uint8)  # (N, C, H, W)
    resized = resize_frames(frames, 64)
    assert resized.shape == (5, 3, 64, 64) and resized.dtype == torch.uint8
    # the same pixels frame by frame, channel by channel, and for 2-D grayscale frames
    assert torch.equal(torch.cat([resize_frames(f[None], 64) for f in frames]), resized)
    assert torch.equal(resize_frames(frames[:, 1], 64), resized[:, 1])
    # within rounding of the float resize that acting used before frames were stored resized: older agents act
    # on the same inputs to half a grey level
    before = F.interpolate(frames.float() / 255 - 0.5, size=(64, 64), mode="bilinear", antialias=True)
    assert (resized.float() / 255 - 0.5 - before).abs().max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(
    "space",
    [
        FRAMES_96,
        spaces.Box(0, 255, (1, 32, 40), np.uint8),  # channel-first, smaller and not square
        spaces.Box(0, 255, (48, 48), np.uint8),  # 2-D grayscale
        spaces.Dict({"image": FRAMES_96, "vec": spaces.Box(-1, 1, (2,), np.float32)}),
    ],
    ids=["hwc96", "chw_small", "grayscale", "dict"],
)
def test_replay_stores_frames_at_model_resolution_and_acting_sees_the_same(space, tiny_kwargs):
    model = JEPADreamer("MultiInputPolicy", frame_env(space, n_envs=2), **tiny_kwargs)
    model.learn(40)
    replay, obs_spec = model.replay_buffer, model.policy.obs_spec
    image = obs_spec.image_keys[0].name
    assert replay.obs[image].shape[-2:] == (64, 64) and replay.obs[image].dtype == np.uint8
    assert replay.stored_shapes() == obs_spec.stored_shapes(64)
    # what the policy acts on next is the last step each stream stored
    last = (replay.pos - 1) % replay.capacity
    for name, value in model._last_model_obs.items():
        np.testing.assert_array_equal(value, replay.obs[name][np.arange(2), last])
    # predict's raw frames go through the same resize: the model's inputs are those training replays
    raw = {k: torch.as_tensor(v) for k, v in obs_spec.as_dict(model._last_obs).items()}
    stored = {k: torch.as_tensor(v) for k, v in model._last_model_obs.items()}
    for name, value in obs_spec.preprocess(raw, 64).items():
        assert torch.equal(value, obs_spec.preprocess(stored, 64)[name])


def test_a_replay_of_other_frame_sizes_does_not_load(tmp_path, tiny_kwargs):
    small = JEPADreamer("CnnPolicy", frame_env(FRAMES_96), image_size=32, **tiny_kwargs)
    small.learn(30)
    small.save_replay_buffer(tmp_path / "replay")
    model = JEPADreamer("CnnPolicy", frame_env(FRAMES_96), **tiny_kwargs)
    with pytest.raises(ValueError, match=r"stores observation 'obs' as \(3, 32, 32\).*image_size=64"):
        model.load_replay_buffer(tmp_path / "replay")


def test_memory_mapped_replay_samples_the_batches_of_one_in_memory(tmp_path):
    shapes = {"image": ((3, 16, 16), np.dtype(np.uint8)), "vec": ((2,), np.dtype(np.float32))}
    in_memory = SequenceReplay(400, 2, shapes, 3, seed=5, initial=8)
    mapped = SequenceReplay(400, 2, shapes, 3, seed=5, initial=8, directory=tmp_path / "replays")
    for replay in (in_memory, mapped):
        fill(replay, 250)  # grows from 4 steps per stream to the 200 of its capacity, then wraps
    assert isinstance(mapped.obs["image"], np.memmap) and mapped.allocated == in_memory.allocated == 200
    for _ in range(5):
        a, b = in_memory.sample(6, 10, torch.device("cpu")), mapped.sample(6, 10, torch.device("cpu"))
        assert all(torch.equal(a.obs[k], b.obs[k]) for k in a.obs)
        assert all(torch.equal(x, y) for x, y in zip(a[1:], b[1:]))
    # plain .npy files numpy reads; the folder goes with the replay
    folder = mapped.directory
    assert folder.parent == tmp_path / "replays"
    np.testing.assert_array_equal(np.load(folder / "obs.0.image.npy", mmap_mode="r"), in_memory.obs["image"])
    np.testing.assert_array_equal(np.load(folder / "is_first.npy"), in_memory.is_first)
    with pytest.raises(TypeError, match="save_replay_buffer"):
        pickle.dumps(mapped)
    del mapped, replay
    gc.collect()
    assert not folder.exists()


def test_learn_with_replay_dir_on_pixels_then_save_and_load(tmp_path, tiny_kwargs):
    env = make_vec_env("wm/PixelCartPole-v0", n_envs=2, seed=0)
    model = JEPADreamer("CnnPolicy", env, replay_dir=str(tmp_path / "disk"), **tiny_kwargs)
    model.learn(80)
    replay = model.replay_buffer
    assert model._n_updates > 0 and isinstance(replay.obs["obs"], np.memmap)
    assert replay.directory.parent == tmp_path / "disk"
    model.save_replay_buffer(tmp_path / "saved")
    filled = int(replay.count.max())
    for replay_dir in (None, str(tmp_path / "again")):  # loads into memory, or memory-mapped where replay_dir says
        fresh = JEPADreamer("CnnPolicy", env, replay_dir=replay_dir, **tiny_kwargs)
        fresh.load_replay_buffer(tmp_path / "saved")
        loaded = fresh.replay_buffer
        assert isinstance(loaded.obs["obs"], np.memmap) == (replay_dir is not None)
        np.testing.assert_array_equal(loaded.obs["obs"], replay.obs["obs"][:, :filled])
        np.testing.assert_array_equal(loaded.pos, replay.pos)
        fresh.learn(20)  # and it grows again
        assert len(loaded) > len(replay)


def test_replay_that_would_not_fit_the_disk_raises_before_training(monkeypatch, tmp_path, tiny_kwargs):
    import wm_agent.jepa_dreamer as jepa_dreamer

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(jepa_dreamer.shutil, "disk_usage", lambda path: usage(10**7, 10**7 - 10**6, 10**6))
    model = JEPADreamer("CnnPolicy", frame_env(FRAMES_96), buffer_size=100_000, replay_dir=str(tmp_path), **tiny_kwargs)
    with pytest.raises(MemoryError, match=r"GB of disk space in .* set buffer_size to at most"):
        model.learn(1000)
    assert model.num_timesteps == 0 and model.replay_buffer is None


def test_replay_too_large_to_load_into_memory_names_replay_dir(monkeypatch, tmp_path, tiny_kwargs):
    import wm_agent.jepa_dreamer as jepa_dreamer

    model = JEPADreamer("CnnPolicy", frame_env(FRAMES_96), **tiny_kwargs)
    model.learn(30)
    model.save_replay_buffer(tmp_path / "replay.pkl")
    monkeypatch.setattr(jepa_dreamer, "available_memory_bytes", lambda: 10_000)
    with pytest.raises(MemoryError, match="set replay_dir"):
        model.load_replay_buffer(tmp_path / "replay.pkl")


def test_replay_pickled_by_an_older_version_loads_only_when_trusted(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(50)
    save_to_pkl(tmp_path / "old.pkl", model.replay_buffer)  # how save_replay_buffer wrote it in wm-agent 0.1
    fresh = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    with pytest.raises(ValueError, match="pickled by wm-agent 0.1 .* allow_pickle=True"):
        fresh.load_replay_buffer(tmp_path / "old.pkl")
    fresh.load_replay_buffer(tmp_path / "old.pkl", allow_pickle=True)
    assert len(fresh.replay_buffer) == len(model.replay_buffer) and fresh.replay_buffer.directory is None
    fresh.learn(20)


def test_a_replay_file_holds_no_pickle_and_a_cut_one_is_refused(tmp_path, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(50)
    model.save_replay_buffer(tmp_path / "replay")
    payload = (tmp_path / "replay.pkl").read_bytes()
    assert b"\x80\x05" not in payload[:200] and payload.startswith(b"WM-AGENT REPLAY")  # JSON header, raw arrays
    (tmp_path / "cut.pkl").write_bytes(payload[: len(payload) - 100])
    with pytest.raises(ValueError, match="cut short"):
        model.load_replay_buffer(tmp_path / "cut.pkl")
    saved = model.replay_buffer
    with open(tmp_path / "replay.pkl", "rb") as file:  # from an open file too: read into memory
        model.load_replay_buffer(file)
    assert model.replay_buffer is not saved and len(model.replay_buffer) == len(saved)
    filled = int(saved.count.max())
    np.testing.assert_array_equal(model.replay_buffer.obs["obs"][:, :filled], saved.obs["obs"][:, :filled])
    np.testing.assert_array_equal(model.replay_buffer.action[:, :filled], saved.action[:, :filled])
