"""All hyperparameters of JEPADreamer in one dataclass, with size presets (DreamerV3 style)."""

from __future__ import annotations

import dataclasses
import difflib
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from wm_agent.precision import PRECISIONS

PLANNERS = ("none", "mppi", "cem")


@dataclass
class JEPADreamerConfig:
    """Every setting of the agent, each documented below. Start from a preset (`make_config` / `PRESETS`: "small" is
    these defaults) and override fields by name: ``JEPADreamer("MlpPolicy", env, train_ratio=64)``.

    The settings to tune first: `train_ratio` (compute per env step), `learning_starts`, `model_lr`, `actor_lr`,
    `critic_lr`, `horizon` and `gamma`. Shape letters in the docs follow the legend in `wm_agent`'s docstring.
    """

    # --- sizes ---
    deter: int = 128
    """Size D of the GRU's deterministic state."""
    stoch: int = 16
    """Number S of categorical latent variables in the stochastic state."""
    classes: int = 8
    """Classes C of each categorical latent (the stochastic state is S one-hots of C)."""
    hidden: int = 128
    """Width of every MLP layer (encoder, heads, actor, critic)."""
    mlp_layers: int = 2
    """Hidden layers of every MLP."""
    embed: int = 128
    """Size E of the encoder's output, the JEPA embedding."""
    cnn_depth: int = 16
    """Channels of the first conv layer of the image encoder; the next stages have 2, 3, 4 and 4 times as many."""
    image_size: int = 64
    """Images are resized to this square size (a multiple of 16) before they are stored and acted on."""
    precision: str = "auto"
    """"auto": bf16 autocast for the convolutions and the behavior heads over all imagined states where the hardware
    computes bf16 natively, float32 elsewhere; "float32"; or "bfloat16" (the whole update under bf16 autocast).
    A seed gives the same run on one machine in every mode."""
    compile: bool = False
    """torch.compile the two loss functions (each one graph, forward and backward). On a 2-core CPU: 1.4x faster
    updates on vectors, 1.1x on images, after 2.5 to 4 minutes of compiling on first use (about 20 s once torch's
    on-disk cache holds the graphs), so it pays on runs of 30k env steps and more (benchmarks/RESULTS.md). A seed
    gives the same compiled run every time, but not the eager run: the compiled graphs draw their own random
    numbers and fuse the arithmetic."""

    # --- replay and update schedule ---
    buffer_size: int = 1_000_000
    """Env steps kept in the sequence replay (all envs together); the oldest are overwritten beyond it."""
    batch_size: int = 16
    """Sequences B per update."""
    seq_len: int = 32
    """Steps T per replayed sequence."""
    train_ratio: float = 128.0
    """Replayed steps per env step: the compute spent per env step (higher: more sample-efficient, slower)."""
    learning_starts: int = 1000
    """Env steps of random actions (see `prefill_repeat_prob`) before the first update."""
    prefill_repeat_prob: float = 0.75
    """Chance that a random prefill step repeats its env's previous action: longer random walks reach states that
    uniform draws never do (Acrobot's goal: 11 of 20 random episodes at 0.75, none uniform), at no cost measured on
    CartPole-v1 and Pendulum-v1 (benchmarks/RESULTS.md); 0 draws every prefill action afresh."""
    exploration_noise_beta: float = 1.0
    """Colour of the noise the actor samples its actions with while collecting (after the prefill): the exponent
    of its 1/f^beta power spectrum. 0 draws afresh at every step; 1 (pink) and 2 (red) correlate successive draws,
    so exploration holds a direction for a while. Each action's distribution stays the actor's either way.
    Measured against 0 (benchmarks/RESULTS.md): Acrobot-v1 -94.6 against -274 at 10k, CartPole-v1 and
    Pendulum-v1 unchanged at 10k."""
    intrinsic_scale: float = 0.0
    """Weight of an exploration bonus added to every imagined reward: the disagreement (standard deviation over the
    members) of `ensemble_size` heads that each predict the next step's layer-normalised embedding from a state and
    action (Plan2Explore's signal), trained on replay. It is high where the replay holds little like the imagined
    transition, so the actor seeks such states; it fades as they are learned. 0 builds no ensemble. Costs a fifth to
    a quarter of the training speed of the small preset (0.83x env steps/s on vectors, 0.76x on continuous actions,
    benchmarks/RESULTS.md): the members read every imagined state."""
    ensemble_size: int = 5
    """Members of the disagreement ensemble (used when `intrinsic_scale` > 0)."""
    exploration_noise_length: int = 1000
    """Steps of each coloured-noise sequence (its lowest frequency); an env's sequence also starts afresh with
    every episode."""
    pretrain_updates: int = 0
    """Extra updates on the prefill data at the first training step."""
    replay_dir: str | None = None
    """Folder for a disk-backed (memory-mapped) replay, for long image runs; None keeps the replay in memory."""

    # --- world model ---
    representation: str = "jepa"
    """"jepa" (predict the target encoder's embeddings) or "reconstruction" (a decoder predicts the observation)."""
    model_lr: float = 3e-4
    """Adam learning rate of the world model."""
    model_grad_clip: float = 100.0
    """Maximum global gradient norm of a world-model update."""
    unimix: float = 0.01
    """Share of the uniform distribution mixed into every categorical (latents and discrete actions)."""
    kl_free: float = 1.0
    """Free nats per step: KL below this is not penalised. It bounds how much new information a step's posterior may
    hold beyond what the prior predicts. Where every observation brings information the prior cannot predict (a
    random target or cue), 1 nat leaves it blurred for longer in the sampled latents that the reward head learns
    from: on wm/DelayedReward-v0 at delay 0, 3.0 solved it on 3 seeds of 3 from 7.5k, 1.0 on 2 of 3 at 10k
    (benchmarks/RESULTS.md). DreamerV3's value, kept: 3.0 on the suite (3 seeds) lost a CartPole-v1 seed at 10k and
    MountainCarContinuous-v0 outright."""
    kl_dyn_scale: float = 0.5
    """Weight of the dynamics loss, KL(sg(posterior) || prior): trains the prior."""
    kl_rep_scale: float = 0.1
    """Weight of the representation loss, KL(posterior || sg(prior)): keeps the posterior predictable."""
    reward_scale: float = 1.0
    """Weight of the reward head's two-hot loss."""
    cont_scale: float = 1.0
    """Weight of the continue head's (episode goes on) loss."""
    num_bins: int = 255
    """Two-hot bins for reward and value, spread over symlog [-20, 20]."""

    # --- JEPA ---
    jepa_target: str = "ema"
    """Encoder of the prediction targets: "ema" (a slow copy of the online encoder) or "stopgrad" (the online one)."""
    jepa_target_rate: float = 0.05
    """Fraction of the online weights mixed into the EMA target per update (1 makes it a copy)."""
    jepa_horizon: int = 3
    """K: the open-loop prior also predicts the target embeddings k = 1..K steps ahead (0: same step only)."""
    jepa_scale: float = 1.0
    """Weight of the JEPA prediction losses (same step and k steps ahead)."""
    anti_collapse: str = "vicreg"
    """Term that keeps embeddings from collapsing: "vicreg" (variance + covariance), "barlow" (Barlow Twins), "none"."""
    var_scale: float = 1.0
    """Weight of VICReg's variance term (each embedding dimension's std kept near 1)."""
    cov_scale: float = 0.04
    """Weight of VICReg's covariance term (embedding dimensions decorrelated)."""
    barlow_redundancy: float = 5e-3
    """Barlow Twins' weight of the off-diagonal (redundancy) part of its loss."""
    inverse_scale: float = 1.0
    """Weight of the inverse-dynamics head: the embeddings of t and t + 1 predict the action taken between them."""

    # --- behavior (imagination) ---
    horizon: int = 15
    """Imagined steps H per rollout of the actor-critic."""
    gamma: float | None = None
    """Discount of imagined returns. None (the default): set from the env's episode limit when the agent is built, by
    `discount_for_episode_limit` (0.997 beyond 500 steps, 0.99 otherwise); the agent's config then holds the value."""
    lam: float = 0.95
    """Lambda of the lambda-returns (0: one-step bootstrap, 1: Monte Carlo over the horizon)."""
    actor_lr: float = 3e-5
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critic (measured: 1e-4 lags on CartPole, 3e-4 holds 500 on 3 seeds)."""
    ac_grad_clip: float = 100.0
    """Maximum gradient norm of the actor's and of the critic's update (each clipped on its own)."""
    max_skipped_updates: int = 10
    """Updates in a row skipped for a NaN or inf loss or gradient before learn() stops with FloatingPointError."""
    entropy_scale: float = 3e-4
    """Weight of the actor's entropy bonus (on normalised returns)."""
    slow_critic_rate: float = 0.02
    """Fraction of the critic's weights mixed into the slow critic per update."""
    slow_critic_scale: float = 1.0
    """Weight of the critic's regulariser toward the slow critic's prediction."""
    return_norm_decay: float = 0.99
    """Decay of the running percentiles that normalise returns for the actor."""
    return_norm_percentiles: tuple[float, float] = (0.05, 0.95)
    """Returns are divided by the spread between these percentiles (at least 1), as in DreamerV3."""
    min_std: float = 0.1
    """Lowest std of the continuous actor's normal (in [-1, 1] action units)."""
    max_std: float = 1.0
    """Highest std of the continuous actor's normal."""
    imagine_starts: int = 256
    """Posterior states sampled as imagination starts N per update (0: all B * T)."""

    # --- planning at act time (predict) ---
    planner: str = "none"
    """How `predict` picks actions: "none" (the actor alone), "mppi" or "cem" (plan over action sequences in the
    latent space before each action, seeded with actor samples, scored by imagined rewards, continues and the critic
    at the horizon; Box actions are sampled from a Gaussian, discrete ones from per-step categoricals; see
    `wm_agent.planning`). "mppi" weighs the elites by their score, "cem" equally. Only `predict` (and so evaluation)
    plans: `learn` collects with the actor. Settable on load: ``JEPADreamer.load(path, planner="mppi")``."""
    plan_horizon: int = 3
    """Imagined steps of every candidate action sequence the planner scores."""
    plan_samples: int = 64
    """Candidate action sequences scored per planner iteration (per env)."""
    plan_iterations: int = 2
    """Planner iterations: each samples candidates from the distribution refitted to the last one's elites."""
    plan_elites: int = 8
    """Best-scoring candidates the planner refits its distribution to."""
    plan_temperature: float = 10.0
    """MPPI: elites are weighted by exp(temperature * (score - best) / return scale), the scale being the actor's
    return normalizer (so the setting does not depend on the env's reward scale). CEM weighs elites equally."""
    plan_actor_share: float = 0.25
    """Share of the candidates drawn from the actor along their imagined rollout (the policy prior); the rest come
    from the planner's distribution (a Gaussian for Box actions, per-step categoricals for discrete ones)."""
    plan_prior_weight: float = 1.0
    """Weight of the policy prior in the planner's score: score = return / return scale + weight * sum over the
    plan's steps of the actor's log-probability of its actions. Where the model sees no clear difference between
    plans (within noise), the actor's choice wins; 0 scores by the imagined return alone."""

    def __post_init__(self) -> None:
        self._check_types()
        if self.max_skipped_updates < 1:
            raise ValueError(f"max_skipped_updates must be at least 1, got {self.max_skipped_updates}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.representation not in ("jepa", "reconstruction"):
            raise ValueError(f"representation must be 'jepa' or 'reconstruction', got {self.representation!r}")
        if self.jepa_target not in ("ema", "stopgrad"):
            raise ValueError(f"jepa_target must be 'ema' or 'stopgrad', got {self.jepa_target!r}")
        if self.anti_collapse not in ("vicreg", "barlow", "none"):
            raise ValueError(f"anti_collapse must be 'vicreg', 'barlow' or 'none', got {self.anti_collapse!r}")
        if not 0 < self.jepa_target_rate <= 1:
            raise ValueError(f"jepa_target_rate must be in (0, 1], got {self.jepa_target_rate}")
        if not 0.0 <= self.prefill_repeat_prob < 1.0:
            raise ValueError(f"prefill_repeat_prob must be in [0, 1), got {self.prefill_repeat_prob}")
        if self.intrinsic_scale < 0.0 or self.ensemble_size < 2:
            raise ValueError(
                f"intrinsic_scale must be at least 0 and ensemble_size at least 2 (a disagreement needs two "
                f"members), got {self.intrinsic_scale} and {self.ensemble_size}"
            )
        if not 0.0 <= self.exploration_noise_beta <= 4.0:
            raise ValueError(f"exploration_noise_beta must be in [0, 4], got {self.exploration_noise_beta}")
        if self.exploration_noise_length < 2:
            raise ValueError(f"exploration_noise_length must be at least 2, got {self.exploration_noise_length}")
        if self.gamma is not None and not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1] (or None: from the env's episode limit), got {self.gamma}")
        if self.train_ratio <= 0:
            raise ValueError(f"train_ratio must be positive, got {self.train_ratio}")
        if self.seq_len < 2 or self.batch_size < 1:
            raise ValueError("seq_len must be >= 2 and batch_size >= 1")
        if self.image_size % 16 or self.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 16 (four stride-2 stages), got {self.image_size}")
        if not 0 <= self.jepa_horizon < self.seq_len:
            raise ValueError(f"jepa_horizon must be in [0, seq_len={self.seq_len}), got {self.jepa_horizon}")
        if self.planner not in PLANNERS:
            raise ValueError(f"planner must be one of {PLANNERS}, got {self.planner!r}")
        if self.plan_horizon < 1 or self.plan_iterations < 1:
            raise ValueError(f"plan_horizon and plan_iterations must be at least 1, got {self.plan_horizon} and "
                             f"{self.plan_iterations}")  # fmt: skip
        if not 1 <= self.plan_elites <= self.plan_samples:
            raise ValueError(
                f"plan_elites must be in [1, plan_samples={self.plan_samples}], got {self.plan_elites}: lower "
                "plan_elites or raise plan_samples"
            )
        if not 0.0 <= self.plan_actor_share <= 1.0:
            raise ValueError(f"plan_actor_share must be in [0, 1], got {self.plan_actor_share}")
        if self.plan_prior_weight < 0:
            raise ValueError(f"plan_prior_weight must be at least 0, got {self.plan_prior_weight}")
        if self.plan_temperature <= 0:
            raise ValueError(f"plan_temperature must be positive, got {self.plan_temperature}")

    def _check_types(self) -> None:
        """Raise a TypeError naming the field that holds a value of the wrong type (``hidden=128.5``,
        ``model_lr="fast"``), which would otherwise fail deep inside torch or numpy. Whole floats in int fields
        (``buffer_size=1e6``) and numpy scalars become Python ints and floats, so the config stays plain JSON."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, os.PathLike):  # replay_dir=pathlib.Path(...)
                value = os.fspath(value)
                setattr(self, field.name, value)
            kind, _, optional = field.type.partition(" | ")  # "float | None" -> "float", "None"
            if value is None and optional == "None":
                continue
            if kind.startswith("tuple"):
                fits = isinstance(value, (tuple, list)) and all(_is_number(v, "float") for v in value)
            else:
                fits = _is_number(value, kind) if kind in ("int", "float") else isinstance(value, _PLAIN_TYPES[kind])
            if not fits:
                raise TypeError(
                    f"{field.name} must be {kind}{' or None' if optional else ''}, got {value!r} "
                    f"({type(value).__name__})"
                )
            if isinstance(value, (tuple, list)):
                setattr(self, field.name, tuple(float(v) if isinstance(v, np.generic) else v for v in value))
            elif kind == "int" and not isinstance(value, int):
                setattr(self, field.name, int(value))
            elif isinstance(value, np.generic):
                setattr(self, field.name, value.item())

    @property
    def feat_size(self) -> int:
        """Size of the model state fed to the heads, actor and critic: deterministic + flattened stochastic."""
        return self.deter + self.stoch * self.classes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_PLAIN_TYPES = {"bool": (bool, np.bool_), "str": str}  # annotation -> accepted types (numbers: `_is_number`)


def _is_number(value: Any, kind: str) -> bool:
    """Whether `value` is an int (``kind="int"``: whole floats such as ``1e6`` count) or a real number (``"float"``);
    booleans are neither."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return False
    return kind == "float" or isinstance(value, numbers.Integral) or float(value).is_integer()


# Each preset's changes to the defaults: mostly sizes and the compute budget; "large" also lowers the learning rates,
# as DreamerV3 does for its large models. "small" is the default, chosen for a 2-core laptop CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(  # unit tests and smoke runs
        deter=32, stoch=4, classes=4, hidden=32, mlp_layers=1, embed=32, cnn_depth=4, batch_size=4, seq_len=8,
        train_ratio=32, learning_starts=32, horizon=5, jepa_horizon=2, plan_horizon=3, plan_samples=32, plan_elites=4,
    ),
    "small": dict(),  # the dataclass defaults
    "medium": dict(  # a GPU, or a patient CPU
        deter=512, stoch=32, classes=16, hidden=512, mlp_layers=2, embed=512, cnn_depth=32, seq_len=64,
        imagine_starts=0,
    ),
    "large": dict(  # a GPU: about DreamerV3's 12M size
        deter=2048, stoch=32, classes=16, hidden=256, mlp_layers=3, embed=1024, cnn_depth=32, seq_len=64,
        imagine_starts=0, model_lr=1e-4, actor_lr=3e-5, critic_lr=3e-5,
    ),
}  # fmt: skip


# The last resort of "one default for every env": settings that an env needs and the default cannot take without
# costing others, each entry with the measurement that put it here (benchmarks/RESULTS.md). Applied as the zoo applies
# its tables: by `wm-agent train` and the compare harness, and by users through `env_settings`; the constructor does
# not read it, so `JEPADreamer(policy, env)` is the same agent on every env but for the discount, which the env's time
# limit sets (`discount_for_episode_limit`).
ENV_SETTINGS: dict[str, dict[str, Any]] = {
    # the ensemble-disagreement bonus: -100 by 10k on 3 seeds of 3 (-77.7 / -95.3 / -80.4 with its two-pass std;
    # -82.4 / -79.4 / -88.7 before), where the defaults reach it on 2 of 3 (-115.0 / -87.3 / -81.4); not yet measured
    # as a default on the rest of the suite.
    "Acrobot-v1": {"intrinsic_scale": 1.0},
    # velocity from positions wants twice the model training per env step: 500.0 / 500.0 / 500.0 at 10k on seeds 0-2,
    # where the defaults end at 348.0 / 236.5 / 449.3 (`wm-agent tune`'s best trial, which also changed 6 other
    # settings, 491.0 / 500.0 / 500.0)
    "wm/CartPoleNoVel-v0": {"train_ratio": 256},
    # twice the replay ratio, with the discount its 1,000-step limit gives (0.997): 200 first at 40k on seeds 0, 1
    # and 2 (212.2 / 235.0 / 202.7), where the default ratio first reaches it at 60k / 80k / 100k and the best SB3
    # baseline (DQN, the zoo's settings) at 90k on 2 seeds of 3
    "LunarLander-v3": {"train_ratio": 256},
}


LONG_EPISODE_STEPS = 500
"""Episode limits longer than this get DreamerV3's discount from `discount_for_episode_limit`."""


def discount_for_episode_limit(max_episode_steps: int | None) -> float:
    """The discount `gamma=None` stands for, from the env's time limit (its `TimeLimit`'s, `common.episode_limit`).

    DreamerV3's 0.997 (a horizon of about 333 steps) where episodes may last longer than `LONG_EPISODE_STEPS`: the
    reward that matters there can be hundreds of steps away (MountainCarContinuous-v0's goal, LunarLander-v3's
    landing), and 0.99 discounts it to almost nothing. 0.99 for shorter limits and for envs without one.
    Measured (benchmarks/RESULTS.md, "The discount"): 0.997 reaches MountainCarContinuous-v0's 90 by 20k on 3 seeds of
    3 where 0.99 loses the goal, and LunarLander-v3's 200 at 60k / 80k / 100k where 0.99 does at 60k / 90k / not by
    100k; on the 500-step CartPole-v1 and Acrobot-v1 it cost a seed each at 10k. No smooth rule of the kind TD-MPC2
    uses (1 - 5 / limit, clipped) fits both sides, hence the step.
    """
    if max_episode_steps is not None and max_episode_steps > LONG_EPISODE_STEPS:
        return 0.997
    return 0.99


def env_settings(env_id: str) -> dict[str, Any]:
    """The settings `ENV_SETTINGS` holds for ``env_id`` (a copy; empty for an env it does not name), to pass as
    overrides: ``JEPADreamer("MlpPolicy", env_id, **env_settings(env_id))``."""
    return dict(ENV_SETTINGS.get(env_id, {}))


# Fields added after 0.1, with the value that reproduces how an agent saved without them behaved (their class
# default may differ): agents saved before `precision` existed ran in float32.
ADDED_FIELD_OLD_VALUES: dict[str, Any] = {"precision": "float32", "exploration_noise_beta": 0.0}


def upgrade_config(config: JEPADreamerConfig) -> JEPADreamerConfig:
    """A config unpickled from an older version, completed in place (see `ADDED_FIELD_OLD_VALUES`)."""
    for name, old_value in ADDED_FIELD_OLD_VALUES.items():
        if name not in vars(config):
            setattr(config, name, old_value)
    return config


def config_from_dict(values: dict[str, Any]) -> JEPADreamerConfig:
    """The config a checkpoint's JSON describes (`JEPADreamerConfig.to_dict`), checked as a new one is.

    Fields it lacks take their old value (`ADDED_FIELD_OLD_VALUES`) or their default; unknown fields raise.
    """
    fields = {f.name: f for f in dataclasses.fields(JEPADreamerConfig)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ValueError(
            f"The saved config has setting(s) {sorted(unknown)} that this wm-agent does not know: it was saved by a "
            "newer version; upgrade wm-agent to load it"
        )
    values = {**{k: v for k, v in ADDED_FIELD_OLD_VALUES.items() if k not in values}, **values}
    # JSON has no tuples: restore them where the field's default is one
    values = {k: tuple(v) if isinstance(fields[k].default, tuple) else v for k, v in values.items()}
    return JEPADreamerConfig(**values)


def unknown_settings_error(unknown: Iterable[str], known: Iterable[str], where_to_look: str) -> TypeError:
    """The TypeError for keyword names that are not settings, each with the closest known name (a typo's fix)."""
    known = list(known)
    close = {name: difflib.get_close_matches(name, known, n=1) for name in sorted(unknown)}
    hints = "".join(f" ({name}: did you mean {match[0]!r}?)" for name, match in close.items() if match)
    return TypeError(f"Unknown JEPADreamer setting(s) {sorted(unknown)}{hints}; {where_to_look}")


def make_config(preset: str = "small", **overrides: Any) -> JEPADreamerConfig:
    """Build a config from a size preset, then apply keyword overrides (unknown names raise)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(JEPADreamerConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise unknown_settings_error(unknown, fields, "see wm_agent.JEPADreamerConfig")
    return JEPADreamerConfig(**{**PRESETS[preset], **overrides})
