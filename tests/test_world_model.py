"""World model and behavior internals: gradient isolation, JEPA target, anti-collapse, distributions, returns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from wm_agent import JEPADreamer
from wm_agent.behavior import ReturnNormalizer, lambda_returns
from wm_agent.diagnostics import effective_rank
from wm_agent.distributions import TwoHot, sample_one_hot, softmax, symexp, symlog, two_hot, unimix_logits
from wm_agent.world_model.heads import symlog_bins
from wm_agent.world_model.losses import kl_balance, vicreg_terms


@pytest.fixture
def trained(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs)
    model.learn(80)
    return model


def sample_batch(model):
    cfg = model.config
    return model.replay_buffer.sample(cfg.batch_size, cfg.seq_len, model.device)


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])  # REINFORCE and dynamics backprop
def test_behavior_losses_do_not_touch_world_model(env_id, tiny_kwargs):
    trained = JEPADreamer("MlpPolicy", env_id, **tiny_kwargs)
    trained.learn(80)
    policy = trained.policy
    world_model = policy.world_model
    _, _, post = world_model.loss(sample_batch(trained))
    start = post.detach().flatten()
    before = [p.detach().clone() for p in world_model.parameters()]
    n_trainable = len(world_model.trainable_parameters())
    for p in world_model.parameters():
        p.grad = None
    loss, _ = policy.behavior.loss(world_model, start, torch.ones(start.deter.shape[0]))
    loss.backward()
    assert all(p.grad is None for p in world_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.behavior.actor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.behavior.critic.parameters())
    # and a full training step of actor and critic leaves every world-model weight as it was
    policy.actor_optimizer.step()
    policy.critic_optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(before, world_model.parameters()))
    assert len(world_model.trainable_parameters()) == n_trainable  # unfrozen again after imagination


@pytest.mark.parametrize(
    "overrides, terms",
    [
        ({}, {"dyn", "rep", "reward", "cont", "jepa", "jepa_multistep", "variance", "covariance", "inverse"}),
        ({"anti_collapse": "barlow"}, {"dyn", "rep", "reward", "cont", "jepa", "jepa_multistep", "barlow", "inverse"}),
        ({"representation": "reconstruction"}, {"dyn", "rep", "reward", "cont", "recon"}),
    ],
    ids=["jepa", "barlow", "reconstruction"],
)
def test_each_total_loss_is_the_scaled_sum_of_its_logged_terms(overrides, terms, tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "Pendulum-v1", **{**tiny_kwargs, "kl_rep_scale": 0.3, **overrides})
    model.learn(60)
    policy = model.policy
    parts = [policy.world_model, policy.behavior]
    loss, metrics, post = policy.world_model.loss(sample_batch(model))
    start = post.detach().flatten()
    behavior_loss, behavior_metrics = policy.behavior.loss(policy.world_model, start, torch.ones(start.deter.shape[0]))
    for part, total, logged, names in zip(parts, (loss, behavior_loss), (metrics, behavior_metrics),
                                          (terms, {"policy", "entropy", "value", "slow_value"})):  # fmt: skip
        assert {name for name in part.loss_scales if f"{name}_loss" in logged} == names
        expected = sum(part.loss_scales[name] * logged[f"{name}_loss"] for name in names)
        torch.testing.assert_close(total.detach(), expected)
    assert policy.world_model.loss_scales["rep"] == 0.3
    torch.testing.assert_close(metrics["model_loss"], loss.detach())


def test_jepa_target_gets_no_gradient(trained):
    world_model = trained.policy.world_model
    loss, _, _ = world_model.loss(sample_batch(trained))
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in world_model.target_encoder.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in world_model.encoder.parameters())
    assert not any(p is q for p in world_model.trainable_parameters() for q in world_model.target_encoder.parameters())


def test_ema_target_update(tiny_kwargs):
    model = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs, jepa_target_rate=1.0)
    world_model = model.policy.world_model
    with torch.no_grad():
        for p in world_model.encoder.parameters():
            p.add_(torch.randn_like(p))
    assert not all(
        torch.equal(a, b) for a, b in zip(world_model.encoder.parameters(), world_model.target_encoder.parameters())
    )
    world_model.update_target()
    for a, b in zip(world_model.encoder.parameters(), world_model.target_encoder.parameters()):
        assert torch.equal(a, b)

    slow = JEPADreamer("MlpPolicy", "CartPole-v1", **tiny_kwargs, jepa_target_rate=0.25).policy.world_model
    target_before = [p.clone() for p in slow.target_encoder.parameters()]
    with torch.no_grad():
        for p in slow.encoder.parameters():
            p.add_(1.0)
    slow.update_target()
    for online, target, old in zip(slow.encoder.parameters(), slow.target_encoder.parameters(), target_before):
        torch.testing.assert_close(target, 0.75 * old + 0.25 * online)


def test_collapsed_encoder_gives_large_anti_collapse_loss_with_gradient(trained):
    """An encoder squeezed to an (almost) constant output is penalised, and the penalty's gradient reaches it.

    (At an exactly constant output every variance gradient is zero by symmetry, so the test squeezes by 1e-4.)
    """
    world_model = trained.policy.world_model
    obs = world_model.preprocess(sample_batch(trained).obs, 2)
    healthy_variance, _ = vicreg_terms(world_model.encoder(obs))
    with torch.no_grad():
        world_model.encoder.out.weight.mul_(1e-4)
    world_model.zero_grad()
    variance, covariance = vicreg_terms(world_model.encoder(obs))
    assert variance.item() > 0.95  # every dimension's std is ~0, far under the target of 1
    assert variance.item() > healthy_variance.item() + 0.1
    variance.backward()
    assert world_model.encoder.out.weight.grad.abs().sum() > 0

    healthy = torch.randn(4096, 16) * 1.5
    healthy_variance, healthy_covariance = vicreg_terms(healthy)
    assert healthy_variance.item() < 0.01 and healthy_covariance.item() < 0.05


def test_effective_rank():
    assert effective_rank(torch.randn(4096, 16)) > 15
    assert effective_rank(torch.randn(64, 1) * torch.ones(1, 16)) < 1.1  # every embedding on one line


def test_jepa_loss_reports_collapse_metrics(trained):
    _, metrics, _ = trained.policy.world_model.loss(sample_batch(trained))
    for key in ("jepa_loss", "jepa_multistep_loss", "jepa_copy_last_baseline", "embed_rank", "inverse_accuracy"):
        assert torch.isfinite(metrics[key]), key
    assert metrics["embed_rank"] > 1.0


def test_symlog_two_hot_roundtrip():
    x = torch.tensor([-1000.0, -3.2, 0.0, 0.5, 7.0, 12345.0])
    torch.testing.assert_close(symexp(symlog(x)), x)
    bins = symlog_bins(255)
    encoded = two_hot(symlog(x), bins)
    torch.testing.assert_close(encoded.sum(-1), torch.ones(6))
    assert ((encoded > 0).sum(-1) <= 2).all()
    # a distribution whose logits put all mass on the two-hot encoding decodes to the value itself
    dist = TwoHot(torch.log(encoded + 1e-12), bins)
    torch.testing.assert_close(dist.mean, x, rtol=1e-3, atol=1e-3)


def test_unimix_keeps_every_class_possible():
    logits = torch.tensor([[100.0, -100.0, -100.0, -100.0]])
    probs = unimix_logits(logits, 0.01).exp()
    assert probs.min() >= 0.01 / 4 - 1e-7
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))
    samples = sample_one_hot(unimix_logits(torch.zeros(20000, 4), 0.0), straight_through=False)
    np.testing.assert_allclose(samples.mean(0).numpy(), 0.25, atol=0.02)


def test_kl_free_bits():
    logits = torch.randn(5, 4, 3).log_softmax(-1)
    dyn, rep, raw = kl_balance(logits, logits.clone(), free=1.0)
    torch.testing.assert_close(raw, torch.zeros(5), atol=1e-6, rtol=0)
    torch.testing.assert_close(dyn, torch.ones(5))  # a KL under the free nats is clipped up to them
    other = (torch.randn(5, 4, 3) * 5).log_softmax(-1)
    dyn, rep, raw = kl_balance(logits, other, free=0.0)
    torch.testing.assert_close(dyn, rep)
    assert (raw > 0).all()


def test_lambda_returns_match_hand_computation():
    reward = torch.tensor([[1.0], [2.0]])
    value = torch.tensor([[0.0], [10.0], [20.0]])
    discount = torch.tensor([[0.9], [0.5]])
    lam = 0.8
    r1 = 2.0 + 0.5 * 20.0
    r0 = 1.0 + 0.9 * ((1 - lam) * 10.0 + lam * r1)
    torch.testing.assert_close(lambda_returns(reward, value, discount, lam), torch.tensor([[r0], [r1]]))
    # lam = 0 is one-step TD, discount 0 cuts the future (a terminal)
    torch.testing.assert_close(lambda_returns(reward, value, torch.zeros(2, 1), 0.0), reward)


def test_two_hot_log_prob_reads_the_two_bins_of_the_dense_encoding():
    bins = symlog_bins(255)
    logits = torch.randn(7, 255, requires_grad=True)
    target = torch.tensor([-500.0, -2.0, 0.0, 0.3, 9.0, 1e9, 40.0])
    dense = (two_hot(symlog(target), bins) * logits.log_softmax(-1)).sum(-1)
    gathered = TwoHot(logits, bins).log_prob(target)
    torch.testing.assert_close(gathered, dense)
    grad_dense = torch.autograd.grad(dense.sum(), logits)[0]
    torch.testing.assert_close(torch.autograd.grad(gathered.sum(), logits)[0], grad_dense)


@pytest.mark.parametrize("classes", [2, 8, 255])  # the hand-written short-row softmax and torch's
def test_softmax_matches_torch_and_survives_large_logits(classes):
    logits = torch.randn(64, 16, classes) * 30 + 500.0
    torch.testing.assert_close(softmax(logits), logits.softmax(-1))
    mixed = unimix_logits(logits, 0.01)
    torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(64, 16))
    assert torch.isfinite(mixed).all()


@pytest.mark.parametrize("sample", [True, False])
def test_observe_equals_step_by_step_filtering(trained, sample):
    """The posterior's embedding half computed for the whole sequence gives the step-by-step filter, with sampled
    latents or with their modes."""
    world_model, cfg = trained.policy.world_model, trained.config
    batch = sample_batch(trained)
    embed = world_model.encoder(world_model.preprocess(batch.obs, 2)).reshape(cfg.batch_size, cfg.seq_len, -1)
    torch.manual_seed(0)
    post, post_log_probs, _ = world_model.rssm.observe(embed, batch.action, batch.is_first, sample)
    torch.manual_seed(1 if not sample else 0)  # the modes do not depend on the random stream
    state = world_model.rssm.initial(cfg.batch_size, embed.device)
    for t in range(cfg.seq_len):
        state, log_probs = world_model.rssm.obs_step(
            state, batch.action[:, t], embed[:, t], batch.is_first[:, t], sample
        )
        torch.testing.assert_close(state.deter, post.deter[:, t])
        torch.testing.assert_close(state.stoch, post.stoch[:, t])
        torch.testing.assert_close(log_probs, post_log_probs[:, t])
    if not sample:
        modes = post_log_probs.argmax(-1)  # (B, T, S)
        assert torch.equal(post.stoch.reshape(*modes.shape, -1).argmax(-1), modes)


def test_two_hot_log_prob_broadcasts_and_keeps_float64():
    bins = symlog_bins(255)
    logits = torch.randn(4, 3, 255, dtype=torch.float64)
    target = torch.tensor([0.5, -2.0, 30.0], dtype=torch.float64)  # broadcast over the leading 4
    log_prob = TwoHot(logits, bins).log_prob(target)
    assert log_prob.shape == (4, 3) and log_prob.dtype == torch.float64
    dense = (two_hot(symlog(target), bins.double()) * logits.log_softmax(-1)).sum(-1)
    torch.testing.assert_close(log_prob, dense)


def test_return_normalizer_ignores_a_non_finite_batch():
    norm = ReturnNormalizer(0.99, (0.05, 0.95))
    norm.update(torch.linspace(-3.0, 7.0, 100))
    low, high = norm.low.clone(), norm.high.clone()
    norm.update(torch.full((100,), float("nan")))
    assert torch.equal(norm.low, low) and torch.equal(norm.high, high)


def test_every_config_field_is_documented():
    """Each field of JEPADreamerConfig has a docstring (the string under it), which is what users read to tune."""
    import ast
    import inspect

    from wm_agent.config import JEPADreamerConfig

    body = ast.parse(inspect.getsource(JEPADreamerConfig)).body[0].body
    documented = {
        field.target.id
        for field, after in zip(body, body[1:])
        if isinstance(field, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
    }
    fields = {field.name for field in dataclasses.fields(JEPADreamerConfig)}
    assert fields - documented == set()
