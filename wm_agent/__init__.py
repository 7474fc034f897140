"""wm-agent: a JEPA + Dreamer model-based agent that is a drop-in Stable-Baselines3 algorithm."""

from wm_agent.config import PRESETS, JEPADreamerConfig, make_config
from wm_agent.jepa_dreamer import JEPADreamer
from wm_agent.policies import JEPADreamerPolicy
from wm_agent.pretrained import list_pretrained, load_pretrained, package
from wm_agent.version import __version__

__all__ = [
    "JEPADreamer",
    "JEPADreamerConfig",
    "JEPADreamerPolicy",
    "PRESETS",
    "list_pretrained",
    "load_pretrained",
    "make_config",
    "package",
    "__version__",
]
