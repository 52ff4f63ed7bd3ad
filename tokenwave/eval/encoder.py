"""The audio encoder the project's eval models share (speaker encoder, tagger, CLAP-style audio tower).

``wav [B, N]`` at 16 kHz -> log-mel ``[B, 64, T]`` (100 frames per second, level-normalised, so a gain change does
not move the embedding) -> strided conv (50 Hz) -> ConvNeXt stack -> mean+std pooling over time -> linear ->
``[B, emb_dim]``. Small on purpose: it trains on 2 CPU cores in minutes and ships in a few MB.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from tokenwave.audio.resample import resample
from tokenwave.audio.spectrogram import mel_filterbank
from tokenwave.eval.fidelity import mono
from tokenwave.nn import ConvNeXtStack

RATE = 16_000
"""Input sample rate of every eval encoder, in Hz."""


@dataclass
class EncoderConfig:
    n_mels: int = 64
    n_fft: int = 512
    hop: int = 160           # 100 mel frames per second at 16 kHz
    dim: int = 128
    depth: int = 4
    emb_dim: int = 128


class LogMel(nn.Module):
    """``wav [B, N]`` at 16 kHz -> level-normalised ``log(mel power)`` ``[B, n_mels, T]`` (T = N // hop + 1)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(RATE, cfg.n_fft, cfg.n_mels).copy()), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wav, self.cfg.n_fft, self.cfg.hop, window=self.window, return_complex=True).abs() ** 2
        mel = torch.log(torch.einsum("mf,bft->bmt", self.fb, spec) + 1e-6)
        return mel - mel.mean(dim=(1, 2), keepdim=True)


class AudioEncoder(nn.Module):
    """Log-mel ``[B, n_mels, T]`` -> embedding ``[B, emb_dim]`` (not normalised; heads and losses decide)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mel = LogMel(cfg)
        self.down = nn.Conv1d(cfg.n_mels, cfg.dim, kernel_size=4, stride=2, padding=1)
        self.stack = ConvNeXtStack(cfg.dim, cfg.dim, cfg.depth, kernel=5)
        self.proj = nn.Linear(2 * cfg.dim, cfg.emb_dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        h = self.stack(self.down(mel))
        stats = torch.cat([h.mean(-1), h.std(-1, unbiased=False)], dim=-1)
        return self.proj(stats)

    @torch.no_grad()
    def embed_windows(self, mel: torch.Tensor, frames: int) -> torch.Tensor:
        """One clip's log-mel ``[n_mels, T]`` -> ``[W, emb_dim]``: the embeddings of its windows of ``frames`` frames
        (half-overlapping, the way the model was trained; a short clip is tiled to one window)."""
        return self(mel_windows(mel, frames))

    @torch.no_grad()
    def wav_mel(self, wav: np.ndarray, sr: int) -> torch.Tensor:
        """A mono numpy waveform at ``sr`` Hz -> its log-mel ``[n_mels, T]`` at 16 kHz."""
        return self.mel(wav_tensor(wav, sr))[0]


def mel_windows(mel: torch.Tensor, frames: int) -> torch.Tensor:
    """``[n_mels, T]`` -> ``[W, n_mels, frames]`` half-overlapping windows, each level-normalised; a clip shorter
    than ``frames`` is tiled to fill one window (as the training crops are)."""
    if mel.shape[-1] < frames:
        mel = mel.repeat(1, -(-frames // mel.shape[-1]))[:, :frames]
    hop = max(1, frames // 2)
    starts = list(range(0, mel.shape[-1] - frames + 1, hop))
    if starts[-1] != mel.shape[-1] - frames:
        starts.append(mel.shape[-1] - frames)
    w = torch.stack([mel[:, s: s + frames] for s in starts])
    return w - w.mean(dim=(1, 2), keepdim=True)


def wav_tensor(wav: np.ndarray, sr: int, min_seconds: float = 0.5) -> torch.Tensor:
    """Mono float32 ``[1, N]`` at 16 kHz, zero-padded to ``min_seconds``."""
    x = mono(wav)
    x = resample(x, sr, RATE) if sr != RATE else x
    n = int(min_seconds * RATE)
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
