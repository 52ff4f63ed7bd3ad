"""The codec's one config object, saved beside its weights."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CodecConfig:
    sample_rate: int = 24_000
    hop: int = 320                 # 75 Hz frames
    n_fft: int = 1280              # analysis/synthesis window: 4 frames
    compress: float = 0.3          # power-law compression of the input spectrum
    enc_dim: int = 256
    enc_depth: int = 4
    dec_dim: int = 384
    dec_depth: int = 6
    mlp_ratio: float = 3.0
    kernel: int = 7
    latent_dim: int = 64           # continuous latents (flow matching) and the RVQ's space
    n_q: int = 8                   # codebooks
    codebook_size: int = 1024
    ema_decay: float = 0.99
    dead_code_threshold: float = 2.0
    kmeans_iters: int = 10
    quantizer_bypass: float = 0.1  # training: share of steps decoding unquantised latents (for decode_latents)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop
