"""The contract every codec backend implements: tokenwave's own :class:`~tokenwave.codec.model.Codec` and the Hugging
Face EnCodec / DAC / Mimi folders (:class:`~tokenwave.codec.hf.HFCodec`). Generators, tasks, the server and the
evaluations see a codec only through these members, so any backend runs through the same pipelines.

Shapes: waveforms ``FloatTensor[B, 1, N]`` at :attr:`sample_rate`; codes ``LongTensor[B, K, T]`` at
:attr:`frame_rate` (``T = ceil(N / hop)``); latents ``FloatTensor[B, latent_dim, T]``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class AudioCodec(Protocol):
    """A neural audio codec: waveform <-> discrete codes (residual VQ, ``n_q`` codebooks) and continuous latents."""

    sample_rate: int        # Hz of the waveforms it takes and gives
    frame_rate: float       # code frames per second (75 Hz for the default codec)
    hop: int                # samples per code frame
    n_q: int                # codebooks at the highest bitrate
    codebook_size: int      # entries per codebook
    latent_dim: int         # channels of the continuous latents (what flow generators make)
    latency_samples: int    # algorithmic latency of streaming encode + decode

    def bitrate(self, n_q: int | None = None) -> float:
        """``n_q`` codebooks (default all) -> bits per second."""
        ...

    def n_q_for_kbps(self, kbps: float) -> int:
        """An operating point in kbps -> the number of codebooks giving it; an unknown one raises with the valid ones."""
        ...

    def content_hash(self) -> str:
        """What decides the codes -> 16 hex digits: a trained generator names the codec it was trained on by this."""
        ...

    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """wav [B, 1, N] -> codes LongTensor[B, n_q, ceil(N / hop)]."""
        ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] (K <= n_q) -> wav [B, 1, T * hop]."""
        ...

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, N] -> latents [B, latent_dim, ceil(N / hop)] (before quantization)."""
        ...

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """latents [B, latent_dim, T] -> wav [B, 1, T * hop]."""
        ...

    def reconstruct(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """wav [B, 1, N] -> its round trip through ``n_q`` codebooks, [B, 1, N]."""
        ...


__all__ = ["AudioCodec"]
