"""A trained TTS model folder (``tokenwave train tts``): one writer (:meth:`TTSFolder.save`), one reader
(:meth:`TTSFolder.load`).

A folder holds ``model.safetensors`` + ``config.json`` (the token LM and its speech conditioner, :class:`TTSModel`;
the config's extra fields: the phoneme symbols, the length line ``duration``, an aligned model's ``phones``, the
built-in voices' names, the codec's ``codec_hash``), ``voices.safetensors`` (3 s of codes ``[K, <=225]`` per built-in
voice, int16) and optionally ``decoder/`` (:func:`tokenwave.models.folder.folder_decoder`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tokenwave.checkpoint import load_checkpoint, save_checkpoint
from tokenwave.conditioning.speech import PhonemeVocab, SpeechConditioner
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.models.folder import CODEC_HASH, check_codec, load_weights

KIND = "tts"
VOICES = "voices.safetensors"


class TTSModel(torch.nn.Module):
    """The token LM and its speech conditioner (phonemes, voice prompt, length; an aligned model's per-frame phones),
    trained and saved together."""

    def __init__(self, cfg: LMConfig, n_phonemes: int, n_phones: int = 0) -> None:
        super().__init__()
        self.lm = TokenLM(cfg)
        self.cond = SpeechConditioner(cfg.dim, n_phonemes, cfg.K, cfg.codebook_size, n_phones)

    def forward(self, codes: torch.Tensor, lengths: torch.Tensor, phonemes: list, prompts: list,
                aligned: list | None = None) -> torch.Tensor:
        """``codes [B, K, T]`` zero-padded, ``lengths [B]``, per-item phoneme ids, prompt codes ``[K, Tp]`` and (aligned
        models) frame phones ``[3, T]`` -> the mean cross-entropy of the codes (the training loss)."""
        return self.lm.loss(codes, self.cond(phonemes, prompts, lengths.tolist(), aligned), lengths)


@dataclass
class TTSFolder:
    """What a TTS model folder holds: the network, its config's extra fields (``phonemes``, ``duration``,
    ``phones``, ``train``, ``tokens``, ``validation``…) and the built-in voices (name -> codes
    ``LongTensor [K, T]``)."""

    model: TTSModel
    extra: dict
    voices: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def phonemes(self) -> PhonemeVocab:
        return PhonemeVocab(self.extra["phonemes"])

    @property
    def phones(self) -> PhonemeVocab | None:
        """An aligned model's phone vocabulary (None: a model not told each frame's phone)."""
        return PhonemeVocab(self.extra["phones"]) if self.extra.get("phones") else None

    def save(self, folder: str | os.PathLike, codec_hash: str | None) -> Path:
        """Write the folder (weights and config atomically, then the voices); ``codec_hash``: the content hash of
        the codec whose codes the model was trained on (None: unknown, not recorded)."""
        extra = {**{k: v for k, v in self.extra.items() if k not in ("kind", "config")}, "voices": sorted(self.voices),
                 **({CODEC_HASH: codec_hash} if codec_hash else {})}
        folder = save_checkpoint(folder, self.model.state_dict(), self.model.lm.cfg, KIND, extra)
        save_file({k: v.to(torch.int16).contiguous() for k, v in self.voices.items()}, str(folder / VOICES))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, codec=None) -> TTSFolder:
        """Read a folder written by :meth:`save` (the network in eval mode); ``codec``, when given, must be the one
        the model was trained on (:func:`tokenwave.models.folder.check_codec`)."""
        state, cfg, extra = load_checkpoint(folder, LMConfig, KIND)
        if codec is not None:
            check_codec(folder, extra, codec)
        model = TTSModel(cfg, len(extra["phonemes"]) + 2, len(extra["phones"]) + 2 if extra.get("phones") else 0)
        load_weights(folder, model, state)
        path = Path(folder) / VOICES
        voices = {k: v.long() for k, v in load_file(str(path)).items()} if path.exists() else {}
        return cls(model.eval(), extra, voices)


__all__ = ["KIND", "VOICES", "TTSFolder", "TTSModel"]
