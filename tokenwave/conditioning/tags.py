"""Tag / style ids -> prefix embeddings."""
from __future__ import annotations

import torch
from torch import nn

from tokenwave.conditioning.base import Conditioning


class TagConditioner(nn.Module):
    """``ids LongTensor[B, n]`` (one id per tag slot) -> ``Conditioning(prefix=[B, n, dim])``."""

    def __init__(self, n_tags: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tags, dim)

    def forward(self, ids: torch.Tensor) -> Conditioning:
        if ids.dim() == 1:
            ids = ids[:, None]
        return Conditioning(prefix=self.embed(ids))
