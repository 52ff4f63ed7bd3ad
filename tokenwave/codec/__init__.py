"""The neural audio codec (``Codec``) and Hugging Face backends (``HFCodec``), loaded by :func:`load_codec`."""
from __future__ import annotations

import os
from pathlib import Path

from tokenwave.codec.base import AudioCodec
from tokenwave.codec.config import CodecConfig
from tokenwave.codec.model import Codec
from tokenwave.errors import TokenwaveError
from tokenwave.paths import default_checkpoint


class UnknownModelError(TokenwaveError):
    pass


def load_codec(model: str | os.PathLike | None = None) -> AudioCodec:
    """Load a codec: ``None`` -> the shipped default (``checkpoints/codec``); a tokenwave checkpoint folder; or a
    Hugging Face EnCodec / DAC / Mimi folder saved with ``save_pretrained``. All share the same interface."""
    from tokenwave.codec.hf import HFCodec, hf_model_type

    path = Path(model) if model is not None else default_checkpoint("codec")
    if not path.is_dir():
        raise UnknownModelError(f"no codec model at {path}",
                                "pass --model with a tokenwave checkpoint folder or a local Hugging Face EnCodec/DAC/Mimi folder")
    if hf_model_type(path):
        return HFCodec.load(path)
    return Codec.load(path)


__all__ = ["AudioCodec", "Codec", "CodecConfig", "UnknownModelError", "load_codec"]
