"""The ``Conditioning`` a task fills and a generator reads: prefix embeddings and/or cross-attention memory."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Conditioning:
    """``prefix [B, P, D]``: embeddings placed before the tokens (style/tag ids, phonemes, voice-prompt codes);
    ``cross [B, C, D]``: memory for cross-attention (text embeddings); ``frames [B, T, D]``: one embedding per codec
    frame (melody), added to the generator's input at the step that predicts that frame. Masks are True where valid;
    a missing mask means all valid. D is the generator's model width. ``shared``: how many leading prefix positions
    hold what other requests hold too (a voice prompt, before the sentence's phonemes): their keys and values depend
    on nothing else, so a decoding engine may compute them once and reuse them (0: none; set for one item only)."""

    prefix: torch.Tensor | None = None
    prefix_mask: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    cross_mask: torch.Tensor | None = None
    frames: torch.Tensor | None = None
    shared: int = 0

    @property
    def batch_size(self) -> int | None:
        for t in (self.prefix, self.cross, self.frames):
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

        return Conditioning(rep(self.prefix), rep(self.prefix_mask), rep(self.cross), rep(self.cross_mask),
                            rep(self.frames))

    def null_like(self, null: torch.Tensor) -> Conditioning:
        """The same shapes with every embedding replaced by the learned ``null [D]`` vector (the unconditional input)."""
        def nul(t):
            return None if t is None else null.to(t).expand_as(t)

        return Conditioning(nul(self.prefix), self.prefix_mask, nul(self.cross), self.cross_mask, nul(self.frames))

    def drop(self, keep: torch.Tensor, null: torch.Tensor) -> Conditioning:
        """Replace items where ``keep [B]`` is False by the null conditioning (classifier-free-guidance dropout)."""
        def sel(t):
            return None if t is None else torch.where(keep[:, None, None], t, null.to(t).expand_as(t))

        return Conditioning(sel(self.prefix), self.prefix_mask, sel(self.cross), self.cross_mask, sel(self.frames))

    @staticmethod
    def cat(items: list[Conditioning]) -> Conditioning:
        """Concatenate along the batch (all items must have the same fields and lengths)."""
        def cat(ts):
            return None if ts[0] is None else torch.cat(ts, dim=0)

        return Conditioning(cat([c.prefix for c in items]), cat([c.prefix_mask for c in items]),
                            cat([c.cross for c in items]), cat([c.cross_mask for c in items]),
                            cat([c.frames for c in items]))

    def frame_slice(self, start: int, stop: int) -> Conditioning:
        """The same conditioning for frames ``start:stop`` only (a window of a longer clip)."""
        if self.frames is None:
            return self
        return Conditioning(self.prefix, self.prefix_mask, self.cross, self.cross_mask, self.frames[:, start:stop])

    def frame_inputs(self, frame_index: torch.Tensor) -> torch.Tensor | None:
        """Per-frame embeddings at ``frame_index [n]`` (clamped to the frames held): ``[B, n, D]``, or None."""
        if self.frames is None:
            return None
        return self.frames[:, frame_index.clamp(0, self.frames.shape[1] - 1)]
