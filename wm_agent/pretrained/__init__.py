"""Pretrained agents: the ones shipped in the package, local folders, and (optionally) Hugging Face Hub repos.

A pretrained agent is a folder in the huggingface_sb3 layout, named ``jepa_dreamer-{env}`` (``/`` in an env id
becomes ``-``), holding ``jepa_dreamer-{env}.zip`` (the SB3 checkpoint), ``results.json`` (env id and kwargs,
training steps, seed, eval mean and std, package versions, date, the command that trained it), ``config.json``
(the JEPADreamerConfig) and a ``README.md`` model card. `package` writes that layout.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import platform
from typing import Any

from wm_agent.common import register_project_envs
from wm_agent.files import atomic_path, atomic_write_text
from wm_agent.jepa_dreamer import JEPADreamer

SHIPPED_DIR = pathlib.Path(__file__).parent
ALGO_NAME = "jepa_dreamer"


def model_name(env_id: str) -> str:
    """``jepa_dreamer-{env}``: the folder, file and hub repo name of an agent for `env_id`."""
    return f"{ALGO_NAME}-{env_id.replace('/', '-')}"


def _read_results(folder: pathlib.Path) -> dict[str, Any]:
    path = folder / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"{folder} is not a pretrained agent folder: it has no results.json")
    return json.loads(path.read_text())


def list_pretrained() -> list[dict[str, Any]]:
    """The agents shipped with the package: env id, eval mean and std, training steps, folder."""
    agents = []
    for folder in sorted(p for p in SHIPPED_DIR.iterdir() if p.is_dir() and (p / "results.json").exists()):
        results = _read_results(folder)
        agents.append({**results, "folder": str(folder)})
    return agents


def _resolve(name_or_path: str | pathlib.Path) -> pathlib.Path:
    """A shipped env id, a local folder or zip, or a hub repo id -> the local agent folder."""
    path = pathlib.Path(name_or_path)
    if path.is_dir():
        return path
    if path.suffix == ".zip" and path.exists():
        return path.parent
    shipped = SHIPPED_DIR / model_name(str(name_or_path))
    if shipped.is_dir():
        return shipped
    if str(name_or_path).count("/") == 1 and not str(name_or_path).startswith(("wm/", ".", "/")):
        try:
            from huggingface_hub import snapshot_download
        except ImportError as error:
            raise ImportError(
                f"{name_or_path!r} looks like a Hugging Face Hub repo id; install huggingface_hub to download it"
            ) from error
        return pathlib.Path(snapshot_download(repo_id=str(name_or_path)))
    shipped_ids = [agent["env_id"] for agent in list_pretrained()]
    raise ValueError(
        f"No pretrained agent {str(name_or_path)!r}: give a shipped env id ({', '.join(shipped_ids) or 'none'}), "
        "a local agent folder or zip, or a hub repo id 'org/jepa_dreamer-ENV'"
    )


def load_pretrained(name_or_path: str | pathlib.Path, env=None, device: str = "auto", **kwargs: Any) -> JEPADreamer:
    """A ready JEPADreamer from a shipped env id (``"CartPole-v1"``), a local folder or zip, or a hub repo id.

    With `env` (an env, a VecEnv, or an env id, made with the agent's env kwargs when it is the agent's own), the
    agent can continue learning (fine-tuning); its spaces must match the agent's.
    The returned model carries the agent's metadata as ``model.pretrained_info``.
    """
    folder = _resolve(name_or_path)
    results = _read_results(folder)
    if isinstance(env, str):
        from stable_baselines3.common.env_util import make_vec_env

        register_project_envs(env)
        env_kwargs = results.get("env_kwargs", {}) if env == results["env_id"] else {}
        env = make_vec_env(env, env_kwargs=env_kwargs)
    zips = sorted(folder.glob("*.zip"))
    if len(zips) != 1:
        raise ValueError(f"{folder} should hold exactly one checkpoint .zip, found {[z.name for z in zips]}")
    model = JEPADreamer.load(zips[0], env=env, device=device, **kwargs)
    model.pretrained_info = results
    return model


def _drop_optimizer_state(checkpoint: pathlib.Path) -> None:
    """Rewrite an SB3 zip with every optimizer's per-parameter state emptied (hyperparameters kept)."""
    import io
    import zipfile

    import torch

    with zipfile.ZipFile(checkpoint) as source:
        entries = [(info, source.read(info.filename)) for info in source.infolist()]
    with zipfile.ZipFile(checkpoint, "w", zipfile.ZIP_DEFLATED) as target:
        for info, payload in entries:
            if "optimizer" in info.filename:
                state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
                state["state"] = {}
                buffer = io.BytesIO()
                torch.save(state, buffer)
                payload = buffer.getvalue()
            target.writestr(info, payload)


def package(
    model: JEPADreamer,
    folder: str | pathlib.Path,
    env_id: str,
    eval_mean: float,
    eval_std: float,
    n_eval_episodes: int,
    env_kwargs: dict[str, Any] | None = None,
    command: str = "",
    keep_optimizer_state: bool = False,
    eval_seed: int | None = None,
) -> pathlib.Path:
    """Write `model` as a pretrained agent folder (checkpoint, results.json, config.json, model card).

    Unless `keep_optimizer_state`, the Adam moments are left out of the checkpoint (a third of its size);
    fine-tuning then starts them afresh. `model` itself is not changed.
    """
    import gymnasium
    import stable_baselines3
    import torch

    from wm_agent.version import __version__

    folder = pathlib.Path(folder) / model_name(env_id)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / f"{model_name(env_id)}.zip"
    with atomic_path(checkpoint) as temporary:  # a kill mid-way leaves a previous agent whole
        model.save(temporary)
        if not keep_optimizer_state:
            _drop_optimizer_state(temporary)
    results = {
        "env_id": env_id,
        "env_kwargs": env_kwargs or {},
        "algo": ALGO_NAME,
        "n_timesteps": int(model.num_timesteps),
        "seed": model.seed,
        "eval_mean": float(eval_mean),
        "eval_std": float(eval_std),
        "n_eval_episodes": int(n_eval_episodes),
        "eval_seed": eval_seed,
        "command": command,
        "date": datetime.date.today().isoformat(),
        "versions": {
            "wm_agent": __version__,
            "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "gymnasium": gymnasium.__version__,
            "python": platform.python_version(),
        },
    }
    atomic_write_text(folder / "results.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(folder / "config.json", json.dumps(model.config.to_dict(), indent=2) + "\n")
    atomic_write_text(
        folder / "README.md",
        f"# JEPADreamer on {env_id}\n\n"
        f"Eval return {eval_mean:.1f} +/- {eval_std:.1f} over {n_eval_episodes} deterministic episodes after "
        f"{results['n_timesteps']} env steps (seed {model.seed}).\n\n"
        "```python\nfrom wm_agent import load_pretrained\n\n"
        f"model = load_pretrained({json.dumps(str(folder))})\n```\n\n"
        f"Trained with: `{command or 'see results.json'}`\n",
    )
    return folder
