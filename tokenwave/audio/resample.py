"""Band-limited resampling with soxr."""
from __future__ import annotations

import numpy as np
import soxr

from tokenwave.errors import SampleRateError


def resample(wav: np.ndarray, sr_in: int, sr_out: int, quality: str = "HQ") -> np.ndarray:
    """Resample ``wav`` (``[N]`` or ``[C, N]``) from ``sr_in`` Hz to ``sr_out`` Hz."""
    for name, sr in (("input", sr_in), ("output", sr_out)):
        if not isinstance(sr, (int, np.integer)) or sr <= 0 or sr > 768_000:
            raise SampleRateError(f"invalid {name} sample rate {sr!r}", "use a positive rate such as 16000, 24000 or 48000")
    if sr_in == sr_out:
        return np.asarray(wav, dtype=np.float32)
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 1:
        return soxr.resample(wav, sr_in, sr_out, quality=quality).astype(np.float32)
    return soxr.resample(wav.T, sr_in, sr_out, quality=quality).T.astype(np.float32).copy()
