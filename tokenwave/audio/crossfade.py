"""Overlap-add of consecutive chunks with an equal-power (or equal-gain) crossfade."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def fade_curves(n: int, power: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Equal-power (sin/cos) fade-out and fade-in of ``n`` samples; ``out**2 + in**2 == 1``. With
    ``power=False`` the equal-gain (raised-cosine, cos**2/sin**2) pair, ``out + in == 1``: the one for two chunks
    of the same signal (e.g. windows that continue each other), which equal-power would swell by up to 3 dB."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / max(n, 1)
    fade_out, fade_in = np.cos(0.5 * np.pi * t), np.sin(0.5 * np.pi * t)
    if not power:
        fade_out, fade_in = fade_out**2, fade_in**2
    return fade_out.astype(np.float32), fade_in.astype(np.float32)


def crossfade(a: np.ndarray, b: np.ndarray, overlap: int, power: bool = True) -> np.ndarray:
    """Join ``a`` and ``b`` (``[..., N]``): the last ``overlap`` samples of ``a`` fade into the first of ``b``
    (equal-power fades, or equal-gain with ``power=False``; see :func:`fade_curves`)."""
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    overlap = min(overlap, a.shape[-1], b.shape[-1])
    if overlap == 0:
        return np.concatenate([a, b], axis=-1)
    fade_out, fade_in = fade_curves(overlap, power)
    mid = a[..., -overlap:] * fade_out + b[..., :overlap] * fade_in
    return np.concatenate([a[..., :-overlap], mid.astype(a.dtype), b[..., overlap:]], axis=-1)


def overlap_add(chunks: Sequence[np.ndarray], overlap: int, power: bool = True) -> np.ndarray:
    """Crossfade a list of chunks, each overlapping the next by ``overlap`` samples.

    Output length is ``sum(len) - overlap * (len(chunks) - 1)`` when every chunk is at least ``overlap`` long.
    """
    if len(chunks) == 0:
        raise ValueError("overlap_add needs at least one chunk")
    out = np.asarray(chunks[0])
    for c in chunks[1:]:
        out = crossfade(out, np.asarray(c), overlap, power)
    return out
