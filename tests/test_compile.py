"""`compile=True`: both losses trace as one graph each (a graph break would leave its part eager), and a compiled
agent trains."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.conftest import SpaceEnv
from wm_agent import JEPADreamer
from wm_agent.behavior import frozen


def image_env() -> gym.Env:
    return SpaceEnv(gym.spaces.Box(0, 255, (16, 16, 3), np.uint8), gym.spaces.Discrete(2))


@pytest.mark.parametrize(
    "env, overrides",
    [
        ("CartPole-v1", {}),  # REINFORCE
        ("Pendulum-v1", {}),  # returns backpropagated through the dynamics
        (image_env, {}),  # the conv encoder in channels-last bf16
        ("CartPole-v1", {"intrinsic_scale": 1.0}),  # the ensemble's bonus
        ("Pendulum-v1", {"representation": "reconstruction", "precision": "bfloat16"}),
    ],
    ids=["discrete", "continuous", "image", "bonus", "reconstruction-bf16"],
)
def test_each_loss_traces_as_one_graph(env, overrides, tiny_kwargs):
    policy_name = "CnnPolicy" if callable(env) else "MlpPolicy"
    model = JEPADreamer(policy_name, env() if callable(env) else env, **{**tiny_kwargs, **overrides})
    model.learn(40)
    policy, cfg = model.policy, model.config
    batch = model.replay_buffer.sample(cfg.batch_size, cfg.seq_len, model.device)
    explained = torch._dynamo.explain(policy.world_model.loss)(batch)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    _, _, post = policy.world_model.loss(batch)
    start = post.detach().flatten()
    with frozen(policy.world_model):
        explained = torch._dynamo.explain(policy.behavior.frozen_model_loss)(
            policy.world_model, start, torch.ones(start.deter.shape[0])
        )
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]


@pytest.mark.parametrize(
    "backend",
    [
        "aot_eager",  # Dynamo and AOTAutograd's forward and backward graphs, run eagerly: seconds
        pytest.param("inductor", marks=pytest.mark.slow),  # what `compile=True` uses: over a minute to compile
    ],
)
def test_a_compiled_agent_trains_and_keeps_the_world_model_out_of_the_behavior_gradient(
    backend, tiny_kwargs, monkeypatch
):
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn: compile_(fn, backend=backend))
    torch._dynamo.reset()
    overrides = {"seq_len": 3, "horizon": 1, "jepa_horizon": 1}
    model = JEPADreamer("MlpPolicy", "Pendulum-v1", compile=True, **{**tiny_kwargs, **overrides})
    model.learn(24)  # the prefill only
    policy = model.policy
    world_model_before = [p.detach().clone() for p in policy.world_model.parameters()]
    actor_before = [p.detach().clone() for p in policy.behavior.actor.parameters()]
    model.learn(8, reset_num_timesteps=False)
    assert model._n_updates > 0 and model._skipped_updates == 0
    assert any(not torch.equal(a, b) for a, b in zip(world_model_before, policy.world_model.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, policy.behavior.actor.parameters()))
    # the compiled behavior loss, as `train` calls it, leaves no gradient on a world-model weight
    batch = model.replay_buffer.sample(model.config.batch_size, model.config.seq_len, model.device)
    _, _, post = policy.world_model_loss(batch)
    start = post.detach().flatten()
    policy.world_model.zero_grad(set_to_none=True)
    n_trainable = len(policy.world_model.trainable_parameters())
    loss, metrics = policy.behavior_loss(policy.world_model, start, torch.ones(start.deter.shape[0]))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(v).all() for v in metrics.values())
    assert all(p.grad is None for p in policy.world_model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.behavior.actor.parameters())
    assert len(policy.world_model.trainable_parameters()) == n_trainable  # unfrozen again
