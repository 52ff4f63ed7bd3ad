"""Where the embedded default checkpoints live (``checkpoints/`` at the repository root, or $TOKENWAVE_CHECKPOINTS),
and the user's cache of measured facts about this machine ($TOKENWAVE_CACHE, else $XDG_CACHE_HOME/tokenwave)."""
from __future__ import annotations

import os
from pathlib import Path


def checkpoints_dir() -> Path:
    env = os.environ.get("TOKENWAVE_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints"


def default_checkpoint(name: str) -> Path:
    return checkpoints_dir() / name


def shown_path(folder: str) -> str:
    """``folder`` as recorded in a checkpoint: ``checkpoints/...`` for the shipped ones, else as given."""
    path = Path(folder).resolve()
    root = checkpoints_dir().resolve()
    return f"checkpoints/{path.relative_to(root).as_posix()}" if path.is_relative_to(root) else str(folder)


def user_cache_dir() -> Path:
    """``$TOKENWAVE_CACHE``, else ``$XDG_CACHE_HOME/tokenwave``, else ``~/.cache/tokenwave`` (not created here)."""
    env = os.environ.get("TOKENWAVE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenwave"
