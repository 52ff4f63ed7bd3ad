"""The token LM's one config object, saved beside its weights."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LMConfig:
    K: int = 8                     # codebooks
    codebook_size: int = 1024      # V; the special token is V
    pattern: str = "delay"         # flat | delay | parallel | vall-e
    dim: int = 256
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    max_len: int = 2048            # positions (prefix + steps) the KV cache holds
    cross_attention: bool = False  # add cross-attention to Conditioning.cross in every block
    cond_dropout: float = 0.1      # training: share of items with null conditioning (for CFG)
    rope_base: float = 10_000.0

    @property
    def special(self) -> int:
        return self.codebook_size
