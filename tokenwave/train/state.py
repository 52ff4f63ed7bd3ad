"""Training state in safetensors + JSON: model weights, optimizer moments, RNG states, step. No pickles."""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tokenwave.data.manifest import atomic_write_text


def _param_names(opt: torch.optim.Optimizer, modules: dict[str, torch.nn.Module]) -> list[str | None]:
    """The name (``module/param``) of each parameter in the optimizer's state-dict order (None: not in a module)."""
    names = {id(p): f"{m}/{n}" for m, mod in modules.items() for n, p in mod.named_parameters()}
    return [names.get(id(p)) for g in opt.param_groups for p in g["params"]]


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer, modules: dict[str, torch.nn.Module]
                       ) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer moments keyed by parameter name where known (so a resume survives modules registered in another
    order), else by index."""
    sd = opt.state_dict()
    names = _param_names(opt, modules)
    tensors = {}
    for idx, st in sd["state"].items():
        key_of = names[idx] if idx < len(names) and names[idx] else str(idx)
        for key, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{name}/{key_of}/{key}"] = t.detach().cpu().contiguous()
    return tensors, {"param_groups": sd["param_groups"]}


def _restore_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict,
                       modules: dict[str, torch.nn.Module]) -> None:
    index = {n: i for i, n in enumerate(_param_names(opt, modules)) if n}
    state: dict[int, dict] = {}
    prefix = f"{name}/"
    for key, t in tensors.items():
        if key.startswith(prefix):
            param, field = key[len(prefix):].rsplit("/", 1)
            idx = int(param) if param.isdigit() else index.get(param)
            if idx is None:
                raise ValueError(f"the saved optimizer state names parameter {param!r}, which the model lacks")
            state.setdefault(idx, {})[field] = t
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_train_state(folder: str | os.PathLike, step: int, modules: dict[str, torch.nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer], rngs: dict) -> None:
    """Write ``train_state.safetensors`` and ``train_state.json`` into ``folder`` (atomically, file by file)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    meta: dict = {"step": step, "optimizers": {}, "rng": rngs,
                  "python_random": _jsonable(random.getstate())}
    for name, module in modules.items():
        tensors.update({f"module:{name}/{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()})
    for name, opt in optimizers.items():
        t, m = _flatten_optimizer(f"opt:{name}", opt, modules)
        tensors.update(t)
        meta["optimizers"][name] = m
    tensors["torch_rng"] = torch.get_rng_state()
    tmp = folder / ".train_state.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / "train_state.safetensors")
    atomic_write_text(folder / "train_state.json", json.dumps(meta) + "\n")


def load_train_state(folder: str | os.PathLike, modules: dict[str, torch.nn.Module],
                     optimizers: dict[str, torch.optim.Optimizer]) -> tuple[int, dict]:
    """Restore modules, optimizers and RNGs; returns ``(step, rng states saved by the recipe)``."""
    folder = Path(folder)
    tensors = load_file(str(folder / "train_state.safetensors"))
    meta = json.loads((folder / "train_state.json").read_text())
    for name, module in modules.items():
        prefix = f"module:{name}/"
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    for name, opt in optimizers.items():
        _restore_optimizer(f"opt:{name}", opt, tensors, meta["optimizers"][name], modules)
    torch.set_rng_state(tensors["torch_rng"])
    random.setstate(_tupled(meta["python_random"]))
    return meta["step"], meta["rng"]


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


def numpy_rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def set_numpy_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state
