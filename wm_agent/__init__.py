"""wm-agent: a JEPA + Dreamer model-based agent that is a drop-in Stable-Baselines3 algorithm.

Shape letters, used in docstrings and ``# (B, T, D)`` comments throughout the package:

- B: sequences in a replayed batch (`batch_size`); T: steps per sequence (`seq_len`)
- N: a flat batch: envs when acting, imagination starts when imagining, B * T when a sequence batch is flattened
- H: imagined steps (`horizon`); K: JEPA prediction steps ahead (`jepa_horizon`)
- D: deterministic state (`deter`); S: categorical latents (`stoch`); C: classes per latent (`classes`)
- E: embedding (`embed`); F: model features fed to heads, actor and critic (D + S * C); A: encoded action size
- in image shapes only, (C, H, W) are channels, height and width, as in torch
"""

from wm_agent.config import ENV_SETTINGS, PRESETS, JEPADreamerConfig, env_settings, make_config
from wm_agent.diagnostics import open_loop_drift
from wm_agent.jepa_dreamer import JEPADreamer
from wm_agent.policies import JEPADreamerPolicy
from wm_agent.pretrained import list_pretrained, load_pretrained, package
from wm_agent.version import __version__

__all__ = [
    "JEPADreamer",
    "JEPADreamerConfig",
    "JEPADreamerPolicy",
    "ENV_SETTINGS",
    "PRESETS",
    "env_settings",
    "list_pretrained",
    "load_pretrained",
    "make_config",
    "open_loop_drift",
    "package",
    "__version__",
]
