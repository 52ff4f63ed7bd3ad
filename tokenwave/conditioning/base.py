"""The ``Conditioning`` a task fills and a generator reads: prefix embeddings and/or cross-attention memory."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Conditioning:
    """``prefix [B, P, D]``: embeddings placed before the tokens (style/tag ids, phonemes, voice-prompt codes);
    ``cross [B, C, D]``: memory for cross-attention (text embeddings, melody). Masks are True where valid; a
    missing mask means all valid. D is the generator's model width."""

    prefix: torch.Tensor | None = None
    prefix_mask: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    cross_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int | None:
        for t in (self.prefix, self.cross):
            if t is not None:
                return t.shape[0]
        return None

    @property
    def prefix_len(self) -> int:
        return 0 if self.prefix is None else self.prefix.shape[1]

    def repeat(self, n: int) -> Conditioning:
        """Each item repeated ``n`` times along the batch (for several samples per prompt)."""
        def rep(t):
            return None if t is None else t.repeat_interleave(n, dim=0)

        return Conditioning(rep(self.prefix), rep(self.prefix_mask), rep(self.cross), rep(self.cross_mask))

    def null_like(self, null: torch.Tensor) -> Conditioning:
        """The same shapes with every embedding replaced by the learned ``null [D]`` vector (the unconditional input)."""
        def nul(t):
            return None if t is None else null.to(t).expand_as(t)

        return Conditioning(nul(self.prefix), self.prefix_mask, nul(self.cross), self.cross_mask)

    def drop(self, keep: torch.Tensor, null: torch.Tensor) -> Conditioning:
        """Replace items where ``keep [B]`` is False by the null conditioning (classifier-free-guidance dropout)."""
        def sel(t):
            return None if t is None else torch.where(keep[:, None, None], t, null.to(t).expand_as(t))

        return Conditioning(sel(self.prefix), self.prefix_mask, sel(self.cross), self.cross_mask)

    @staticmethod
    def cat(items: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch (all items must have the same fields and lengths)."""
        def cat(ts):
            return None if ts[0] is None else torch.cat(ts, dim=0)

        return Conditioning(cat([c.prefix for c in items]), cat([c.prefix_mask for c in items]),
                            cat([c.cross for c in items]), cat([c.cross_mask for c in items]))
