"""The neural audio codec (``Codec``) and Hugging Face backends (``HFCodec``), loaded by :func:`load_codec`."""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tokenwave.codec.config import CodecConfig
from tokenwave.errors import TokenwaveError
from tokenwave.paths import default_checkpoint

if TYPE_CHECKING:
    from tokenwave.codec.base import AudioCodec
    from tokenwave.codec.model import Codec

# Loaded on first use (they import torch), so `tokenwave --help` registers the codec's commands without torch.
_LAZY = {"AudioCodec": "base", "Codec": "model"}


class UnknownModelError(TokenwaveError):
    pass


def load_codec(model: str | os.PathLike | None = None) -> AudioCodec:
    """Load a codec: ``None`` -> the shipped default (``checkpoints/codec``); a tokenwave checkpoint folder; or a
    Hugging Face EnCodec / DAC / Mimi folder saved with ``save_pretrained``. All share the same interface."""
    from tokenwave.codec.hf import HFCodec, hf_model_type  # lazy: keeps --help free of torch
    from tokenwave.codec.model import Codec  # lazy: keeps --help free of torch

    path = Path(model) if model is not None else default_checkpoint("codec")
    if not path.is_dir():
        raise UnknownModelError(f"no codec model at {path}",
                                "pass --model with a tokenwave checkpoint folder or a local Hugging Face EnCodec/DAC/Mimi folder")
    if hf_model_type(path):
        return HFCodec.load(path)
    return Codec.load(path)


def __getattr__(name: str):
    """``AudioCodec`` and ``Codec``, imported on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"tokenwave.codec.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tokenwave.codec' has no attribute {name!r}")


__all__ = ["AudioCodec", "Codec", "CodecConfig", "UnknownModelError", "load_codec"]
