"""The neural audio codec: 24 kHz mono <-> 75 Hz codes (RVQ, K codebooks) or continuous latents.

Encoder and decoder both run at the frame rate (a Vocos-style design): a causal STFT feeds a causal ConvNeXt
stack; the decoder's ConvNeXt stack predicts log-magnitude and phase, and an ISTFT makes the waveform. No layer
runs at the sample rate, which is what makes it fast on a CPU; every layer is causal, so streaming == offline.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random

import torch
from torch import nn

from tokenwave.checkpoint import Checkpointable
from tokenwave.codec.config import CodecConfig
from tokenwave.codec.quantizer import RVQ
from tokenwave.codec.rates import CodecRates
from tokenwave.codec.stft import CausalISTFT, CausalSTFT
from tokenwave.errors import InvalidArgumentError, SampleRateError
from tokenwave.nn import ConvNeXtStack

KIND = "codec"


class Encoder(nn.Module):
    """``wav [B, 1, N] -> latents [B, latent_dim, N / hop]``."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.stft = CausalSTFT(cfg.n_fft, cfg.hop, cfg.compress)
        self.net = ConvNeXtStack(cfg.n_fft + 2, cfg.enc_dim, cfg.enc_depth, cfg.mlp_ratio, cfg.kernel)
        self.proj = nn.Conv1d(cfg.enc_dim, cfg.latent_dim, 1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.stft(wav)
        if spec.shape[-1] == 0:  # streaming: no frame completed yet
            return spec.new_zeros(spec.shape[0], self.proj.out_channels, 0)
        return self.proj(self.net(spec))


class Decoder(nn.Module):
    """``latents [B, latent_dim, T] -> wav [B, 1, T * hop]``."""

    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.net = ConvNeXtStack(cfg.latent_dim, cfg.dec_dim, cfg.dec_depth, cfg.mlp_ratio, cfg.kernel)
        self.head = nn.Conv1d(cfg.dec_dim, cfg.n_fft + 2, 1)
        self.istft = CausalISTFT(cfg.n_fft, cfg.hop)

    def forward(self, z: torch.Tensor, frames: torch.Tensor | None = None, voice: torch.Tensor | None = None) -> torch.Tensor:
        """``frames`` (per-frame phones), ``voice``: only for a phone-informed decoder
        (:class:`tokenwave.codec.decoders.PhoneDecoder`)."""
        if frames is not None or voice is not None:
            raise InvalidArgumentError("this decoder takes no phone timings",
                                       "decode without them, or load a phone-informed decoder (`train decoder --alignments`)")
        if z.shape[-1] == 0:
            return z.new_zeros(z.shape[0], 1, 0)
        return self.istft(self.head(self.net(z)))


class Codec(CodecRates, Checkpointable, nn.Module):
    """Waveforms are ``FloatTensor[B, 1, N]`` at :attr:`sample_rate`; codes ``LongTensor[B, K, T]`` at :attr:`frame_rate`."""

    KIND = KIND
    CONFIG = CodecConfig

    def __init__(self, cfg: CodecConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or CodecConfig()
        if self.cfg.n_fft % (2 * self.cfg.hop):
            raise ValueError("n_fft must be a multiple of 2 * hop")
        self.encoder = Encoder(self.cfg)
        self.quantizer = RVQ(self.cfg)
        self.decoder = Decoder(self.cfg)

    # --- facts -------------------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.cfg.frame_rate

    @property
    def hop(self) -> int:
        return self.cfg.hop

    @property
    def n_q(self) -> int:
        return self.cfg.n_q

    @property
    def codebook_size(self) -> int:
        return self.cfg.codebook_size

    @property
    def latent_dim(self) -> int:
        return self.cfg.latent_dim

    @property
    def latency_samples(self) -> int:
        """Algorithmic latency of encode+decode in streaming: one frame to fill, plus the ISTFT overlap."""
        return self.cfg.n_fft

    def content_hash(self) -> str:
        """What decides the codes and latents -> 16 hex digits: a SHA-256 of the config and the encoder's and
        quantizer's weights and buffers. A fine-tuned decoder (:mod:`tokenwave.codec.decoders`) leaves it unchanged,
        so a generator trained on this codec's codes matches it with any of its decoders."""
        h = hashlib.sha256(json.dumps(dataclasses.asdict(self.cfg), sort_keys=True).encode())
        for part in (self.encoder, self.quantizer):
            for name, t in sorted(part.state_dict().items()):
                h.update(name.encode())
                h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    # --- offline API -------------------------------------------------------------------------------
    def _check_wav(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise InvalidArgumentError(f"wav must be [B, 1, N] mono, got shape {tuple(wav.shape)}",
                                       "add batch and channel axes: wav[None, None]")
        pad = (-wav.shape[-1]) % self.hop
        return torch.nn.functional.pad(wav, (0, pad)) if pad else wav

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, 1, N]`` at 24 kHz (right-padded to a multiple of the hop) -> ``latents [B, D, ceil(N / hop)]``."""
        return self.encoder(self._check_wav(wav))

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        """``latents [B, D, T] -> wav [B, 1, T * hop]`` (the decoder is also trained on unquantised latents)."""
        return self.decoder(z)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """``wav [B, 1, N]`` at 24 kHz -> ``codes LongTensor[B, n_q, ceil(N / hop)]`` at 75 Hz."""
        n_q = n_q or self.n_q
        if not 1 <= n_q <= self.n_q:
            raise InvalidArgumentError(f"n_q={n_q} is out of range", f"use 1..{self.n_q}")
        return self.quantizer.encode(self.encode_latents(wav), n_q)

    def codes_to_latents(self, codes: torch.Tensor) -> torch.Tensor:
        return self.quantizer.decode(codes)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, frames: torch.Tensor | None = None, voice: torch.Tensor | None = None) -> torch.Tensor:
        """``codes [B, K, T]`` (any K <= n_q) -> ``wav [B, 1, T * hop]`` at 24 kHz. ``frames``: each frame's phone
        (``LongTensor [B, 3, T]``, :func:`tokenwave.conditioning.speech.frame_inputs`) and ``voice`` (``[B, latent_dim]``),
        for a phone-informed decoder."""
        if codes.dim() != 3:
            raise InvalidArgumentError(f"codes must be [B, K, T], got shape {tuple(codes.shape)}", "add a batch axis")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.cfg.codebook_size):
            raise InvalidArgumentError("codes out of range", f"codes must lie in 0..{self.cfg.codebook_size - 1}")
        return self.decoder(self.quantizer.decode(codes), frames, voice)

    @torch.no_grad()
    def reconstruct(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """Encode and decode ``wav [B, 1, N]``, returning exactly N samples (the end is padded so it is kept whole)."""
        n = wav.shape[-1]
        padded = torch.nn.functional.pad(wav, (0, self.decoder.istft.tail))
        return self.decode(self.encode(padded, n_q))[..., :n]

    # --- training ----------------------------------------------------------------------------------
    def forward(self, wav: torch.Tensor, bypass: bool | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: ``(wav_hat [B, 1, N], codes [B, K, T], commitment loss)`` with quantizer dropout/bypass.

        ``bypass``: skip the quantizer this pass (the decoder learns unquantised latents too); None draws it from
        Python's RNG with probability ``quantizer_bypass``. Under DDP every rank must make the same choice (the
        quantizer's codebook updates are collectives), so the training recipe passes one drawn from the step."""
        z = self.encode_latents(wav)
        if bypass is None:
            bypass = self.training and random.random() < self.cfg.quantizer_bypass
        if bypass:
            return self.decoder(z), z.new_zeros(z.shape[0], 0, z.shape[-1], dtype=torch.long), z.new_zeros(())
        zq, codes, commit = self.quantizer(z)
        return self.decoder(zq), codes, commit

    def check_sample_rate(self, sr: int) -> None:
        if sr != self.sample_rate:
            raise SampleRateError(f"audio is {sr} Hz; this codec takes {self.sample_rate} Hz",
                                  f"resample first (tokenwave.audio.load_audio(path, {self.sample_rate}))")
