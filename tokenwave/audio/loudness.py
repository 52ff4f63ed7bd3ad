"""Loudness measurement and normalisation (ITU-R BS.1770 via pyloudnorm)."""
from __future__ import annotations

import warnings

import numpy as np
import pyloudnorm

from tokenwave.errors import InvalidArgumentError


def integrated_loudness(wav: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS of a mono ``[N]`` signal; ``-inf`` for silence or clips under 0.4 s."""
    wav = np.asarray(wav, dtype=np.float64)
    if len(wav) < int(0.4 * sample_rate) + 1 or not np.any(wav):
        return float("-inf")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(wav))


def loudness_normalize(wav: np.ndarray, sample_rate: int, target_lufs: float = -20.0, peak: float = 0.99) -> np.ndarray:
    """Scale ``wav`` to ``target_lufs`` integrated loudness, then limit the peak to ``peak`` by scaling down.

    Silence and clips too short to measure (< 0.4 s) are peak-normalised instead.
    """
    if not -70.0 <= target_lufs <= 0.0:
        raise InvalidArgumentError(f"target loudness {target_lufs} LUFS is out of range", "use a value between -70 and 0, e.g. -20")
    wav = np.asarray(wav, dtype=np.float32)
    loud = integrated_loudness(wav, sample_rate)
    if np.isfinite(loud):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = wav * np.float32(10.0 ** ((target_lufs - loud) / 20.0))
    else:
        m = float(np.abs(wav).max()) if len(wav) else 0.0
        out = wav if m == 0.0 else wav * np.float32(0.5 / m)
    m = float(np.abs(out).max()) if len(out) else 0.0
    if m > peak:
        out = out * np.float32(peak / m)
    return out.astype(np.float32)
