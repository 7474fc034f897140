"""Planning in the latent space at act time, and the what-if rollout it shares with `imagine`.

`imagine_outcomes` rolls the world model's prior forward under given action sequences and scores every imagined
trajectory with the model's own heads: imagined rewards and continue probabilities, and the critic's value of the
last state (a lambda-return with lambda 1, as TD-MPC2 scores its plans). `plan` searches over action sequences with
it (MPPI or CEM), seeding part of its candidates with the actor (the policy prior).
"""

from __future__ import annotations

import torch

from wm_agent.behavior import Behavior, lambda_returns
from wm_agent.config import JEPADreamerConfig
from wm_agent.distributions import mode_one_hot, sample_one_hot
from wm_agent.world_model.model import WorldModel
from wm_agent.world_model.rssm import Latent

# std range of the continuous planner's Gaussian, in [-1, 1] action units; it starts at the widest
PLAN_MIN_STD, PLAN_MAX_STD = 0.05, 1.0


def imagine_outcomes(
    world_model: WorldModel,
    behavior: Behavior,
    start: Latent,
    actions: torch.Tensor,
    generator: torch.Generator | None = None,
    actor_rows: int = 0,
    every_value: bool = True,
    sample_latents: bool = False,
) -> dict[str, torch.Tensor]:
    """Roll the prior forward from `start` (N) under model `actions` (H, N, A) and score each imagined trajectory.

    The imagined latents are the prior's most likely ones, so an outcome depends on the actions alone (the planner
    compares candidates by their actions, not by the luck of their latent draws); with `sample_latents` they are
    drawn (from `generator` when given): one possible future. The first `actor_rows` rows take their actions from
    the actor at each imagined state instead (sampled from `generator`), written into `actions`: that is how the
    planner seeds candidates with the policy prior.

    Returns ``feat`` (H + 1, N, F): the start and every imagined state; ``reward`` and ``continue`` (H, N): the reward
    of each action and the probability that the episode goes on after it; ``value``: the critic at every state
    (H + 1, N), or without `every_value` (the planner) at the last one only (1, N); ``return`` (N,): the imagined
    rewards discounted by gamma and the continue probabilities, plus the critic's value of the last state discounted
    likewise (a lambda-return with lambda 1, as TD-MPC2 scores its plans): the score the planner maximises.
    """
    cfg = behavior.cfg
    state, feats = start, [start.feat]
    for t in range(actions.shape[0]):
        if actor_rows:
            actions[t, :actor_rows] = behavior.actor(state.feat[:actor_rows]).sample(generator)
        state = world_model.rssm.img_step(state, actions[t], sample_latents, generator)
        feats.append(state.feat)
    feat = torch.stack(feats)  # (H + 1, N, F)
    # the heads read every imagined state at once; float32: on a few hundred rows bf16 autocast measured no faster
    reward = world_model.reward_head(feat[1:]).mean  # (H, N)
    cont = torch.sigmoid(world_model.cont_head(feat[1:]).squeeze(-1))  # (H, N)
    value = behavior.critic(feat if every_value else feat[-1:]).mean  # (H + 1, N) or (1, N)
    # with lambda 1 only the last value counts: the others are multiplied by 0
    returns = lambda_returns(reward, value[-1:].expand_as(feat[..., 0]), cfg.gamma * cont, 1.0)  # (H, N)
    return {"feat": feat, "reward": reward, "continue": cont, "value": value, "return": returns[0]}


def plan(
    world_model: WorldModel,
    behavior: Behavior,
    start: Latent,
    cfg: JEPADreamerConfig,
    deterministic: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The planner's next model action (E, A) for each of E envs whose filtered state is `start` (E).

    Every iteration scores `plan_samples` candidate sequences of `plan_horizon` actions per env with
    `imagine_outcomes` (its return over the return scale, plus `plan_prior_weight` times the actor's log-probability
    of the sequence), keeps the `plan_elites` best and refits the sampling distribution to them, weighted by
    exp(plan_temperature * (score - best)) ("mppi", as TD-MPC2) or equally ("cem"). The first
    iteration draws a `plan_actor_share` of the candidates from the actor along their imagined rollout; those
    sequences stay in the population, rescored, in later iterations. The rest are drawn from
      - Box actions: a Gaussian per step and dimension (mean 0, std 1 at first), clipped to [-1, 1];
      - discrete actions: independent categoricals per step and factor (uniform at first), refitted to the elites'
        weighted class frequencies with `unimix` of uniform mixed in (CEM over per-step probabilities).
    Deterministic: the first step of the refitted mean (Box) or its most frequent class (discrete). Otherwise: the
    first action of an elite drawn by its weight. Each step plans afresh (no warm start from the last step's plan),
    so `predict`'s state stays the filtered latent and the last action.
    """
    spec = behavior.actor.action_spec
    envs, samples, horizon, size = start.deter.shape[0], cfg.plan_samples, cfg.plan_horizon, spec.size
    actor_samples = round(samples * cfg.plan_actor_share)
    rows = Latent(start.deter.repeat(samples, 1), start.stoch.repeat(samples, 1))  # (P * E, ...): row p * E + e
    actions = start.deter.new_zeros(horizon, samples, envs, size)  # (H, P, E, A)
    fresh = actions[:, actor_samples:]  # (H, P - P_actor, E, A): the candidates drawn from the distribution
    if spec.discrete:
        uniform = torch.cat([torch.full((n,), 1.0 / n, device=actions.device) for n in spec.nvec])  # (A,)
        mean = uniform.expand(horizon, envs, size)  # (H, E, A): class probabilities per step and factor
    else:
        mean = actions.new_zeros(horizon, envs, size)  # (H, E, A)
        std = actions.new_full((horizon, envs, size), PLAN_MAX_STD)
    for iteration in range(cfg.plan_iterations):
        if spec.discrete:
            log_probs = mean.clamp(min=1e-8).log().unsqueeze(1).expand_as(fresh)
            fresh.copy_(torch.cat([sample_one_hot(lp, False, generator) for lp in log_probs.split(spec.nvec, -1)], -1))
        else:
            noise = torch.randn(fresh.shape, device=actions.device, generator=generator)
            fresh.copy_((mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1, 1))
        actor_rows = actor_samples * envs if iteration == 0 else 0
        candidates = actions.view(horizon, -1, size)  # (H, P * E, A)
        outcome = imagine_outcomes(world_model, behavior, rows, candidates, generator, actor_rows, every_value=False)
        score = outcome["return"] / behavior.return_norm.scale  # (P * E,), in units of the return scale
        if cfg.plan_prior_weight:
            prior = behavior.actor(outcome["feat"][:-1]).log_prob(candidates)  # (H, P * E)
            score = score + cfg.plan_prior_weight * prior.sum(0)
        score = score.view(samples, envs).nan_to_num(nan=-1e9)  # (P, E); a NaN score never wins
        elite_score, elite_index = score.topk(cfg.plan_elites, dim=0)  # (K, E), best first
        elite_actions = actions.gather(1, elite_index[None, :, :, None].expand(horizon, -1, -1, size))  # (H, K, E, A)
        if cfg.planner == "mppi":
            weight = torch.softmax(cfg.plan_temperature * (elite_score - elite_score[:1]), 0)  # (K, E)
        else:
            weight = torch.full_like(elite_score, 1.0 / cfg.plan_elites)
        mean = (weight[None, :, :, None] * elite_actions).sum(1)  # (H, E, A)
        if spec.discrete:
            mean = (1 - cfg.unimix) * mean + cfg.unimix * uniform
        else:
            spread = (weight[None, :, :, None] * (elite_actions - mean.unsqueeze(1)).square()).sum(1)
            std = spread.sqrt().clamp(PLAN_MIN_STD, PLAN_MAX_STD)
    if not deterministic:
        pick = torch.multinomial(weight.T, 1, generator=generator).squeeze(1)  # (E,)
        return elite_actions[0, pick, torch.arange(envs, device=actions.device)]
    if spec.discrete:
        return torch.cat([mode_one_hot(p) for p in mean[0].split(spec.nvec, -1)], -1)
    return mean[0]
