"""Hugging Face codecs (EnCodec, DAC, Mimi) from a local folder, behind the same interface as :class:`Codec`.

``HFCodec.load(folder)`` reads a folder written by ``save_pretrained`` (config.json + weights); nothing is fetched.
Waveforms are ``[B, 1, N]`` at the model's own ``sample_rate``; codes ``LongTensor[B, K, T]`` at ``frame_rate``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import torch

from tokenwave.codec.rates import CodecRates
from tokenwave.errors import InvalidArgumentError, TokenwaveError

HF_CODECS = ("encodec", "dac", "mimi")


class HFCodecError(TokenwaveError):
    pass


def hf_model_type(folder: str | os.PathLike) -> str | None:
    """The ``model_type`` in ``folder/config.json`` when it is one of :data:`HF_CODECS`, else None."""
    cfg = Path(folder) / "config.json"
    if not cfg.exists():
        return None
    try:
        kind = json.loads(cfg.read_text()).get("model_type")
    except json.JSONDecodeError:
        return None
    return kind if kind in HF_CODECS else None


class HFCodec(CodecRates, torch.nn.Module):
    """A Hugging Face EnCodec / DAC / Mimi folder as an :class:`~tokenwave.codec.base.AudioCodec`."""

    def __init__(self, model: torch.nn.Module, kind: str) -> None:
        super().__init__()
        self.model, self.kind = model.eval(), kind
        cfg = model.config
        self.sample_rate = int(cfg.sampling_rate)
        if kind == "encodec":
            self.hop = int(math.prod(cfg.upsampling_ratios))
            self.codebook_size = int(cfg.codebook_size)
            self.n_q = int(round(max(cfg.target_bandwidths) * 1000 / (self.sample_rate / self.hop * math.log2(self.codebook_size))))
        elif kind == "dac":
            self.hop = int(cfg.hop_length)
            self.codebook_size = int(cfg.codebook_size)
            self.n_q = int(cfg.n_codebooks)
        else:
            self.hop = int(round(self.sample_rate / cfg.frame_rate))
            self.codebook_size = int(cfg.codebook_size)
            self.n_q = int(cfg.num_quantizers)
        self.frame_rate = self.sample_rate / self.hop
        self.latent_dim = int(cfg.hidden_size)  # channels of encode_latents for all three backends

    @classmethod
    def load(cls, folder: str | os.PathLike) -> HFCodec:
        kind = hf_model_type(folder)
        if kind is None:
            raise HFCodecError(f"{folder} is not a Hugging Face EnCodec, DAC or Mimi folder",
                               "pass a folder written by save_pretrained (config.json with model_type encodec, dac or mimi)")
        try:
            import transformers  # lazy: transformers (seconds to import) only for a Hugging Face folder
        except ImportError as err:  # pragma: no cover - transformers is a dependency
            raise HFCodecError("transformers is not installed", "pip install transformers") from err
        model_cls = {"encodec": transformers.EncodecModel, "dac": transformers.DacModel, "mimi": transformers.MimiModel}[kind]
        return cls(model_cls.from_pretrained(str(folder), local_files_only=True), kind)

    @property
    def latency_samples(self) -> int:
        return self.hop

    def content_hash(self) -> str:
        """The model's config and every weight and buffer -> 16 hex digits (a SHA-256): what decides its codes (no
        fine-tuned decoders exist for these backends, so the whole model is hashed)."""
        cfg = {k: v for k, v in self.model.config.to_dict().items() if k not in ("transformers_version", "_name_or_path")}
        h = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode())
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def _pad(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.dim() != 3 or wav.shape[1] != 1:
            raise InvalidArgumentError(f"wav must be [B, 1, N] mono, got shape {tuple(wav.shape)}", "add batch and channel axes")
        pad = (-wav.shape[-1]) % self.hop
        return torch.nn.functional.pad(wav, (0, pad)) if pad else wav

    @torch.no_grad()
    def encode(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        n_q = n_q or self.n_q
        if not 1 <= n_q <= self.n_q:
            raise InvalidArgumentError(f"n_q={n_q} is out of range", f"use 1..{self.n_q}")
        wav = self._pad(wav)
        if self.kind == "encodec":
            kbps = self.bitrate(n_q) / 1000
            allowed = [float(b) for b in self.model.config.target_bandwidths]
            if not any(abs(kbps - b) < 1e-6 for b in allowed):
                raise InvalidArgumentError(f"this EnCodec model has no {kbps:g} kbps mode",
                                           f"use n_q giving one of {allowed} kbps")
            out = self.model.encode(wav, bandwidth=kbps)
            return out.audio_codes[0]
        if self.kind == "dac":
            return self.model.encode(wav, n_quantizers=n_q).audio_codes[:, :n_q]
        return self.model.encode(wav, num_quantizers=n_q).audio_codes

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        if self.kind == "encodec":
            wav = self.model.decode(codes[None], [None]).audio_values
        elif self.kind == "dac":
            wav = self.model.decode(audio_codes=codes).audio_values
        else:
            wav = self.model.decode(codes).audio_values
        return wav.reshape(codes.shape[0], 1, -1)

    @torch.no_grad()
    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        wav = self._pad(wav)
        if self.kind == "encodec":
            return self.model.encoder(wav)
        if self.kind == "dac":
            return self.model.encode(wav).quantized_representation
        return self.model.encoder(wav).latents

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "encodec":
            wav = self.model.decoder(z)
        elif self.kind == "dac":
            wav = self.model.decode(quantized_representation=z).audio_values
        else:
            wav = self.model.decoder(z).audio_values
        return wav.reshape(z.shape[0], 1, -1)

    @torch.no_grad()
    def reconstruct(self, wav: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        n = wav.shape[-1]
        out = self.decode(self.encode(wav, n_q))
        return torch.nn.functional.pad(out, (0, max(0, n - out.shape[-1])))[..., :n]
