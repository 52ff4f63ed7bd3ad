"""Overlap-add of consecutive chunks with an equal-power crossfade."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fade_curves(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power (sin/cos) fade-out and fade-in of ``n`` samples; ``out**2 + in**2 == 1``."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    return np.cos(0.5 * np.pi * t).astype(np.float32), np.sin(0.5 * np.pi * t).astype(np.float32)


def crossfade(a: np.ndarray, b: np.ndarray, overlap: int) -> np.ndarray:
    """Join ``a`` and ``b`` (``[..., N]``): the last ``overlap`` samples of ``a`` fade into the first of ``b``."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    overlap = min(overlap, a.shape[-1], b.shape[-1])
    if overlap == 0:
        return np.concatenate([a, b], axis=-1)
    fade_out, fade_in = fade_curves(overlap)
    mid = a[..., -overlap:] * fade_out + b[..., :overlap] * fade_in
    return np.concatenate([a[..., :-overlap], mid.astype(a.dtype), b[..., overlap:]], axis=-1)


def overlap_add(chunks: Sequence[np.ndarray], overlap: int) -> np.ndarray:
    """Crossfade a list of chunks, each overlapping the next by ``overlap`` samples.

    Output length is ``sum(len) - overlap * (len(chunks) - 1)`` when every chunk is at least ``overlap`` long.
    """
    if len(chunks) == 0:
        raise ValueError("overlap_add needs at least one chunk")
    out = np.asarray(chunks[0])
    for c in chunks[1:]:
        out = crossfade(out, np.asarray(c), overlap)
    return out
