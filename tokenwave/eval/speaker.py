"""Speaker similarity: a speaker-embedding model trained by the project (``tokenwave train speaker``) on its speech
dataset, shipped in ``checkpoints/eval/speaker``. Embeddings are unit-norm; similarity is their cosine.

The equal-error rate on speakers held out of training (:func:`equal_error_rate`) says what a cosine means: the
checkpoint's MODEL.md reports it, and so does ``tokenwave eval tts`` beside the similarity to the prompt.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.checkpoint import Checkpointable
from tokenwave.eval.encoder import AudioEncoder, EncoderConfig, mel_windows
from tokenwave.paths import default_checkpoint


@dataclass
class SpeakerConfig(EncoderConfig):
    n_speakers: int = 0       # training speakers (the classifier head; not used for embeddings)
    crop_frames: int = 200    # training crop: 2 s of log-mel frames
    margin: float = 0.2       # additive angular margin of the AAM-softmax loss
    scale: float = 30.0


class SpeakerEncoder(nn.Module, Checkpointable):
    KIND = "speaker"
    CONFIG = SpeakerConfig

    def __init__(self, cfg: SpeakerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = AudioEncoder(cfg)
        self.classes = nn.Parameter(torch.randn(max(cfg.n_speakers, 1), cfg.emb_dim) * 0.01)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, T]`` -> unit-norm embeddings ``[B, emb_dim]``."""
        return F.normalize(self.encoder(mel), dim=-1)

    def loss(self, mel: torch.Tensor, speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """AAM-softmax loss and accuracy of a batch with speaker indices ``[B]``."""
        cos = self(mel) @ F.normalize(self.classes, dim=-1).T
        target = F.one_hot(speaker, cos.shape[-1]).bool()
        theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
        logits = self.cfg.scale * torch.where(target, torch.cos(theta + self.cfg.margin), cos)
        return F.cross_entropy(logits, speaker), (cos.argmax(-1) == speaker).float().mean()

    @torch.no_grad()
    def embed_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """One clip's log-mel ``[n_mels, T]`` -> unit-norm ``[emb_dim]`` (mean of its windows' embeddings)."""
        return F.normalize(self(mel_windows(mel, self.cfg.crop_frames)).mean(0), dim=-1)

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """A mono waveform at ``sr`` Hz -> unit-norm float32 ``[emb_dim]``."""
        return self.embed_mel(self.encoder.wav_mel(wav, sr)).numpy().astype(np.float32)

    def similarity(self, a_wav: np.ndarray, a_sr: int, b_wav: np.ndarray, b_sr: int) -> float:
        """Cosine of the two clips' embeddings (1: the same voice)."""
        return float(np.dot(self.embed(a_wav, a_sr), self.embed(b_wav, b_sr)))


def load_speaker_encoder(path: str | os.PathLike | None = None) -> SpeakerEncoder:
    """The speaker encoder in ``path`` (default: the shipped ``checkpoints/eval/speaker``)."""
    return _load(str(Path(path) if path else default_checkpoint("eval/speaker")))


@lru_cache(maxsize=4)
def _load(path: str) -> SpeakerEncoder:
    return SpeakerEncoder.load(path)


def equal_error_rate(embeddings: np.ndarray, speakers: list[str]) -> dict[str, float]:
    """EER over every pair of ``embeddings [N, D]`` (unit-norm): the rate at which the same-speaker and
    different-speaker cosines cross. Returns ``eer`` (0..1), its ``threshold`` and the mean cosines of both kinds."""
    emb = np.asarray(embeddings, dtype=np.float64)
    scores = emb @ emb.T
    labels = np.array(speakers)[:, None] == np.array(speakers)[None, :]
    iu = np.triu_indices(len(emb), k=1)
    s, same = scores[iu], labels[iu]
    if same.all() or not same.any():
        raise ValueError("an EER needs pairs of the same speaker and of different speakers")
    order = np.argsort(-s)
    s, same = s[order], same[order]
    far = np.cumsum(~same) / (~same).sum()        # accepted impostors at each threshold (descending)
    frr = 1 - np.cumsum(same) / same.sum()        # rejected genuine pairs
    i = int(np.argmin(np.abs(far - frr)))
    return {"eer": float((far[i] + frr[i]) / 2), "threshold": float(s[i]),
            "same_speaker_cosine": float(s[same].mean()), "other_speaker_cosine": float(s[~same].mean())}
