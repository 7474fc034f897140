"""Coloured exploration noise: its statistics, how the actor samples with it, and collection with it on."""

import numpy as np
import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env

from wm_agent import JEPADreamer
from wm_agent.config import make_config
from wm_agent.distributions import BoundedNormal, sample_one_hot
from wm_agent.exploration import ColoredNoise, powerlaw_noise


def lag_correlation(x: np.ndarray, lag: int) -> float:
    return float(np.mean(x[..., lag:] * x[..., :-lag]))


@pytest.mark.parametrize("length", [200, 201])
def test_powerlaw_noise_is_standard_normal_and_correlated_by_its_colour(length):
    rng = np.random.default_rng(0)
    white, pink, red = (powerlaw_noise(beta, (3000,), length, rng) for beta in (0.0, 1.0, 2.0))
    for x in (white, pink, red):
        assert x.shape == (3000, length)
        assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05
    assert abs(lag_correlation(white, 1)) < 0.02
    assert 0.5 < lag_correlation(pink, 1) < lag_correlation(red, 1)
    assert lag_correlation(pink, 10) > 0.2  # pink noise's correlation decays slowly


def test_colored_noise_starts_a_fresh_sequence_with_each_episode():
    noise = ColoredNoise(1.0, n_envs=2, dims=3, length=50, rng=np.random.default_rng(0))
    first = noise(np.array([True, True]))
    assert first.shape == (2, 3)
    sequences = noise.sequences.copy()
    noise(np.array([False, True]))  # env 1 begins a new episode: only its sequence is redrawn
    assert np.array_equal(noise.sequences[0], sequences[0])
    assert not np.array_equal(noise.sequences[1], sequences[1])
    assert list(noise.position) == [2, 1]
    for _ in range(60):  # past the sequence's length, env 0 draws a new one
        noise(np.array([False, False]))
    assert noise.position[0] <= 50


def test_given_noise_samples_the_same_distribution():
    log_probs = torch.tensor([0.2, 0.5, 0.3]).log().expand(20000, 3)
    normal_draws = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    one_hot = sample_one_hot(log_probs, False, uniform=torch.special.ndtr(normal_draws))
    assert torch.allclose(one_hot.mean(0), torch.tensor([0.2, 0.5, 0.3]), atol=0.02)
    low, high = torch.full((1, 1), -3.0), torch.full((1, 1), 3.0)  # the draw's rank picks the class
    assert sample_one_hot(log_probs[:1], False, uniform=torch.special.ndtr(low)).argmax().item() == 0
    assert sample_one_hot(log_probs[:1], False, uniform=torch.special.ndtr(high)).argmax().item() == 2
    normal = BoundedNormal(torch.zeros(2, 1), torch.zeros(2, 1), 0.1, 1.0)
    noise = torch.tensor([[0.5], [-10.0]])
    assert torch.allclose(normal.sample(noise=noise), (normal.loc + normal.scale * noise).clamp(-1, 1))


class RecordActions(BaseCallback):
    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.actions = after, []

    def _on_step(self) -> bool:
        if self.num_timesteps > self.after and not self.locals["dones"][0]:
            self.actions.append(int(self.locals["actions"][0]))
        return True


@pytest.mark.parametrize("beta", [1.0, 4.0])
def test_the_collecting_actor_holds_its_actions_longer_with_colored_noise(beta, tiny_kwargs):
    """Acrobot's 3 actions from a barely trained (near-uniform) actor: white draws switch about 2/3 of the time."""

    def switch_rate(beta: float) -> float:
        kwargs = {**tiny_kwargs, "train_ratio": 1, "exploration_noise_beta": beta}
        model = JEPADreamer("MlpPolicy", make_vec_env("Acrobot-v1", seed=0), **kwargs)
        record = RecordActions(after=kwargs["learning_starts"])
        model.learn(600, callback=record)
        return float(np.mean(np.diff(record.actions) != 0))

    white, colored = switch_rate(0.0), switch_rate(beta)
    assert white > 0.5
    assert colored < 0.7 * white


def test_exploration_noise_settings_are_checked_and_not_saved(tmp_path, tiny_kwargs):
    with pytest.raises(ValueError, match="exploration_noise_beta"):
        make_config(exploration_noise_beta=-1.0)
    with pytest.raises(ValueError, match="exploration_noise_length"):
        make_config(exploration_noise_length=1)
    model = JEPADreamer("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "exploration_noise_beta": 1.0})
    model.learn(40)  # past the prefill: continuous actions sampled with the noise
    assert model._exploration_noise is not None
    model.save(tmp_path / "agent")
    loaded = JEPADreamer.load(tmp_path / "agent", env="Pendulum-v1")
    assert loaded.config.exploration_noise_beta == 1.0 and loaded._exploration_noise is None
    loaded.learn(10, reset_num_timesteps=False)
    assert loaded._exploration_noise is not None


def test_pink_noise_takes_an_untrained_actor_up_the_mountain():
    """The benchmark behind the setting: the initial actor's wide normal, white against pink noise."""
    from benchmarks.exploration import play

    white, _ = play("MountainCarContinuous-v0", "white", 6)
    pink, _ = play("MountainCarContinuous-v0", "pink", 6)
    assert white == 0 and pink >= 2


def test_an_ensemble_disagrees_where_it_was_not_trained():
    """The property the exploration bonus rests on: members fitted to the same data agree on it, not off it."""
    from wm_agent.world_model.heads import EnsembleHead

    torch.manual_seed(0)
    ensemble = EnsembleHead(members=5, in_size=32, hidden=32, layers=2, out_size=4)
    optimizer = torch.optim.Adam(ensemble.parameters(), lr=3e-3)
    # like latent states: the replay's use some features, a new state others (the MLPs' LayerNorm makes the scale of
    # an input, as against its direction, nearly invisible)
    seen = torch.cat([torch.randn(256, 16), torch.zeros(256, 16)], -1)
    unseen = torch.cat([torch.zeros(256, 16), torch.randn(256, 16)], -1)
    target = seen[:, :4].sin()
    for _ in range(300):
        loss = (ensemble(seen) - target).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        assert ensemble.disagreement(unseen).mean() > 10 * ensemble.disagreement(seen).mean()


def test_the_disagreement_is_the_members_standard_deviation():
    """The two-pass spread equals torch's std over the members, values and gradients, to float32 rounding."""
    from wm_agent.world_model.heads import EnsembleHead

    torch.manual_seed(0)
    ensemble = EnsembleHead(members=5, in_size=8, hidden=16, layers=2, out_size=4)
    x = torch.randn(3, 7, 8, requires_grad=True)
    ours = ensemble.disagreement(x)
    reference = ensemble(x).std(0).mean(-1)
    assert ours.shape == (3, 7)
    torch.testing.assert_close(ours, reference)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    (reference_grad,) = torch.autograd.grad(reference.sum(), x)
    torch.testing.assert_close(grad, reference_grad)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_the_disagreement_bonus_trains_and_is_saved(env_id, tmp_path, tiny_kwargs):
    from stable_baselines3.common.logger import configure

    with pytest.raises(ValueError, match="ensemble_size"):
        make_config(intrinsic_scale=1.0, ensemble_size=1)
    with pytest.raises(ValueError, match="intrinsic_scale"):
        make_config(intrinsic_scale=-0.1)
    default = JEPADreamer("MlpPolicy", env_id, **tiny_kwargs)
    assert not hasattr(default.policy.world_model, "ensemble")

    model = JEPADreamer("MlpPolicy", env_id, **{**tiny_kwargs, "intrinsic_scale": 1.0})
    model.set_logger(configure(str(tmp_path / "csv"), ["csv"]))
    before = [p.detach().clone() for p in model.policy.world_model.ensemble.parameters()]
    model.learn(220, log_interval=1)  # logs are written at episode ends: Pendulum-v1 ends one at 200
    after = list(model.policy.world_model.ensemble.parameters())
    assert any(not torch.equal(b, a) for b, a in zip(before, after))  # the model optimizer trains the ensemble
    rows = (tmp_path / "csv" / "progress.csv").read_text().splitlines()
    header, last = rows[0].split(","), rows[-1].split(",")
    novelty = float(last[header.index("train/imagined_novelty")])
    assert novelty > 0 and np.isfinite(novelty)
    assert "train/ensemble_loss" in header

    model.save(tmp_path / "agent")
    loaded = JEPADreamer.load(tmp_path / "agent", env=env_id)
    for saved, restored in zip(after, loaded.policy.world_model.ensemble.parameters()):
        torch.testing.assert_close(saved, restored)
