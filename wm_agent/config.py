"""All hyperparameters of JEPADreamer in one dataclass, with size presets (DreamerV3 style)."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from wm_agent.precision import PRECISIONS


@dataclass
class JEPADreamerConfig:
    """Every setting of the agent. Presets (`PRESETS`) change only the sizes and the compute budget."""

    # --- sizes ---
    deter: int = 128  # GRU (deterministic) state size
    stoch: int = 16  # number of categorical latents
    classes: int = 8  # classes per categorical latent
    hidden: int = 128  # width of every MLP
    mlp_layers: int = 2  # layers of the encoder, heads, actor and critic MLPs
    embed: int = 128  # encoder output size (the JEPA embedding)
    cnn_depth: int = 16  # channels of the first conv layer; multiplied by 2, 3, 4, 4
    image_size: int = 64  # images are resized to this square size on the device
    precision: str = "auto"  # "auto": bf16 autocast for the convolutions and the behavior heads over all imagined
    # states where the hardware computes bf16 natively, float32 elsewhere; "float32"; or "bfloat16" (the whole
    # update under bf16 autocast). A seed gives the same run on one machine in every mode.
    compile: bool = False  # torch.compile the two loss functions; start-up takes minutes on a CPU (see RESULTS.md)

    # --- replay and update schedule ---
    buffer_size: int = 1_000_000  # env steps kept in the sequence replay
    batch_size: int = 16  # sequences per update
    seq_len: int = 32  # steps per sequence
    train_ratio: float = 128.0  # replayed steps per env step (compute vs sample efficiency)
    learning_starts: int = 1000  # env steps with random actions (see prefill_repeat_prob) before the first update
    prefill_repeat_prob: float = 0.0  # chance a prefill step repeats its env's last random action
    pretrain_updates: int = 0  # extra updates on the prefill data at the first training step
    replay_dir: str | None = None  # folder for a disk-backed (memory-mapped) replay, for long image runs; None: memory

    # --- world model ---
    representation: str = "jepa"  # "jepa" (predict target embeddings) or "reconstruction" (decoder)
    model_lr: float = 3e-4
    model_grad_clip: float = 100.0
    unimix: float = 0.01
    kl_free: float = 1.0  # free nats per step (KL below this is not penalised)
    kl_dyn_scale: float = 0.5
    kl_rep_scale: float = 0.1
    reward_scale: float = 1.0
    cont_scale: float = 1.0
    num_bins: int = 255  # two-hot bins for reward and value, spread over symlog [-20, 20]

    # --- JEPA ---
    jepa_target: str = "ema"  # "ema" (slow copy of the online encoder) or "stopgrad" (the online encoder, no grad)
    jepa_target_rate: float = 0.05  # fraction of the online weights mixed into the target per update (1 = copy)
    jepa_horizon: int = 3  # predict target embeddings k = 1..K steps ahead through the open-loop prior
    jepa_scale: float = 1.0
    anti_collapse: str = "vicreg"  # "vicreg" (variance + covariance), "barlow" (Barlow Twins) or "none"
    var_scale: float = 1.0
    cov_scale: float = 0.04
    barlow_redundancy: float = 5e-3
    inverse_scale: float = 1.0  # inverse-dynamics head: embeddings of t and t+1 predict the action

    # --- behavior (imagination) ---
    horizon: int = 15
    gamma: float = 0.99  # measured: learns CartPole/Pendulum faster than DreamerV3's 0.997 at our budgets
    lam: float = 0.95
    actor_lr: float = 3e-5
    critic_lr: float = 3e-4  # measured: 1e-4 lags (CartPole falls back after 5k steps), 3e-4 holds 500 on 3 seeds
    ac_grad_clip: float = 100.0
    max_skipped_updates: int = 10  # updates in a row skipped for a NaN/inf loss or gradient before learn() stops
    entropy_scale: float = 3e-4
    slow_critic_rate: float = 0.02
    slow_critic_scale: float = 1.0  # critic regulariser toward the slow critic's prediction
    return_norm_decay: float = 0.99
    return_norm_percentiles: tuple[float, float] = (0.05, 0.95)
    min_std: float = 0.1
    max_std: float = 1.0
    imagine_starts: int = 256  # posterior states used as imagination starts (0 = all B*T)

    def __post_init__(self) -> None:
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
        if self.train_ratio <= 0:
            raise ValueError(f"train_ratio must be positive, got {self.train_ratio}")
        if self.seq_len < 2 or self.batch_size < 1:
            raise ValueError("seq_len must be >= 2 and batch_size >= 1")
        if self.image_size % 16 or self.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 16 (four stride-2 stages), got {self.image_size}")
        if not 0 <= self.jepa_horizon < self.seq_len:
            raise ValueError(f"jepa_horizon must be in [0, seq_len={self.seq_len}), got {self.jepa_horizon}")

    @property
    def feat_size(self) -> int:
        """Size of the model state fed to the heads, actor and critic: deterministic + flattened stochastic."""
        return self.deter + self.stoch * self.classes

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Sizes for each preset. "small" is the default: chosen for a 2-core laptop CPU.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(  # unit tests and smoke runs
        deter=32, stoch=4, classes=4, hidden=32, mlp_layers=1, embed=32, cnn_depth=4, batch_size=4, seq_len=8,
        train_ratio=32, learning_starts=32, horizon=5, jepa_horizon=2,
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


# Fields added after 0.1, with the value that reproduces how an agent saved without them behaved (their class
# default may differ): agents saved before `precision` existed ran in float32.
ADDED_FIELD_OLD_VALUES: dict[str, Any] = {"precision": "float32"}


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


def make_config(preset: str = "small", **overrides: Any) -> JEPADreamerConfig:
    """Build a config from a size preset, then apply keyword overrides (unknown names raise)."""
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(JEPADreamerConfig)}
    unknown = set(overrides) - fields
    if unknown:
        close = {name: difflib.get_close_matches(name, fields, n=1) for name in sorted(unknown)}
        hints = "".join(f" ({name}: did you mean {match[0]!r}?)" for name, match in close.items() if match)
        raise TypeError(f"Unknown JEPADreamer setting(s) {sorted(unknown)}{hints}; see wm_agent.JEPADreamerConfig")
    return JEPADreamerConfig(**{**PRESETS[preset], **overrides})
