"""Loudness of speech over time: the RMS envelope the alignments and the accent detector compare, and the silence
cut that the speech datasets' clips (and a voice prompt before its accent is detected) get."""
from __future__ import annotations

import numpy as np


def envelope(x: np.ndarray, hop: int) -> np.ndarray:
    """Mono ``x [N]`` -> its RMS loudness envelope ``[N // hop]`` (frames of ``hop`` samples; never 0, so its log is
    finite)."""
    n = len(x) // hop
    return np.sqrt((x[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(1) + 1e-10)


def trim_bounds(wav: np.ndarray, sr: int, threshold_db: float = -40.0, pad_s: float = 0.05) -> tuple[int, int]:
    """Mono ``wav [N]`` at ``sr`` -> ``(start, stop)`` samples: leading and trailing 10 ms frames quieter than
    ``threshold_db`` below the peak cut, ``pad_s`` of margin kept (the clip the speech datasets keep,
    :func:`tokenwave.data.speech.trim_silence`; their alignments shift timings by it)."""
    hop = sr // 100
    n = len(wav) // hop
    if n == 0:
        return 0, len(wav)
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > np.abs(wav).max() * 10 ** (threshold_db / 20))
    if len(loud) == 0:
        return 0, len(wav)
    pad = int(pad_s * sr)
    return max(0, loud[0] * hop - pad), min(len(wav), (loud[-1] + 1) * hop + pad)
