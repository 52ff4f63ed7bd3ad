"""Mel filterbank and log-mel spectrogram in numpy (for plots and dataset statistics)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import stft


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular HTK-mel filters, ``[n_mels, n_fft // 2 + 1]``, each normalised to unit area (Slaney style)."""
    fmax = fmax if fmax is not None else sample_rate / 2
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower, center, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None] - lower) / np.maximum(center - lower, 1e-9)
    down = (upper - freqs[None]) / np.maximum(upper - center, 1e-9)
    fb = np.maximum(0.0, np.minimum(up, down)) * (2.0 / (upper - lower))
    fb.setflags(write=False)
    return fb.astype(np.float32)


def log_mel_spectrogram(wav: np.ndarray, sample_rate: int, n_mels: int = 80, n_fft: int = 1024, hop: int = 256,
                        eps: float = 1e-10) -> np.ndarray:
    """``log10(mel power + eps)`` of a mono ``[N]`` signal, shape ``[n_mels, frames]``."""
    _, _, z = stft(np.asarray(wav, dtype=np.float32), nperseg=n_fft, noverlap=n_fft - hop, boundary=None, padded=True)
    power = np.abs(z) ** 2
    return np.log10(mel_filterbank(sample_rate, n_fft, n_mels) @ power + eps)
