"""Checkpoints: ``model.safetensors`` + ``config.json`` (a dataclass) in one folder. Loading never unpickles."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from tokenwave.errors import TokenwaveError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
T = TypeVar("T")


class CheckpointError(TokenwaveError):
    pass


def save_checkpoint(folder: str | os.PathLike, state: dict[str, torch.Tensor], config: Any, kind: str,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write weights and config atomically: a temp folder beside ``folder``, swapped in at the end."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={"kind": kind})
        cfg = {"kind": kind, "config": dataclasses.asdict(config), **(extra or {})}
        (tmp / CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")
        if folder.exists():
            for f in folder.iterdir():  # keep files we do not own (MODEL.md, plots) across saves
                if not (tmp / f.name).exists():
                    (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / f.name)
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / "x")
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def load_checkpoint(folder: str | os.PathLike, config_cls: type[T], kind: str) -> tuple[dict[str, torch.Tensor], T, dict]:
    """``(state_dict, config, raw config.json)`` from a folder written by :func:`save_checkpoint`."""
    folder = Path(folder)
    if not (folder / WEIGHTS).exists() or not (folder / CONFIG).exists():
        raise CheckpointError(f"no {kind} checkpoint in {folder} (needs {WEIGHTS} and {CONFIG})",
                              f"pass a folder written by `tokenwave train {kind}` or the shipped checkpoints/{kind}")
    raw = json.loads((folder / CONFIG).read_text())
    if raw.get("kind") != kind:
        raise CheckpointError(f"{folder} holds a {raw.get('kind')!r} checkpoint, not a {kind!r} one", "check the path")
    fields = {f.name for f in dataclasses.fields(config_cls)}
    unknown = set(raw["config"]) - fields
    if unknown:
        raise CheckpointError(f"{folder}/{CONFIG} has unknown fields {sorted(unknown)}", "upgrade tokenwave")
    try:
        state = load_file(str(folder / WEIGHTS))
    except Exception as err:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"cannot read {folder / WEIGHTS}: {err}", "the file is corrupt; re-download or retrain") from err
    return state, config_cls(**raw["config"]), raw


class Checkpointable:
    """Mixin for models with a ``cfg`` dataclass: ``save(folder)`` / ``cls.load(folder)`` through safetensors.
    Subclasses set ``KIND`` (the checkpoint kind) and ``CONFIG`` (the config dataclass)."""

    KIND: str
    CONFIG: type

    def save(self, folder: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        save_checkpoint(folder, self.state_dict(), self.cfg, self.KIND, extra)

    @classmethod
    def load(cls, folder: str | os.PathLike):
        state, cfg, _ = load_checkpoint(folder, cls.CONFIG, cls.KIND)
        model = cls(cfg)
        model.load_state_dict(state)
        return model.eval()
