"""The flow generator's one config object, saved beside its weights."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FlowConfig:
    latent_dim: int = 64           # D: the codec's continuous latent channels (75 Hz frames)
    dim: int = 256                 # transformer width (and the width of Conditioning embeddings)
    depth: int = 6
    heads: int = 4
    mlp_ratio: float = 4.0
    max_frames: int = 1500         # longest window in frames (20 s at 75 Hz); longer audio: sample_long
    cond_dropout: float = 0.1      # training: share of items with null conditioning (for CFG)
    latent_scale: float = 1.0      # the model works on latents / latent_scale (the recipe sets it from data stats)
    rope_base: float = 10_000.0
    cross_attention: bool = False  # add cross-attention to Conditioning.cross in every block
    patch: int = 1                 # frames per transformer token (2: half the sequence, ~2x faster sampling)
