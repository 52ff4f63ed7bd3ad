"""Melody adherence: MusicGen's chroma cosine similarity between a melody and an output.

Both sides become a chromagram at 75 frames per second (the codec's frame rate, which the music manifest's
``melody`` uses) reduced to its dominant pitch class per frame (one-hot, as MusicGen's ``ChromaExtractor(argmax=
True)`` does); the score is the mean per-frame cosine over the melody's voiced frames, so it is the share of
frames whose dominant pitch class matches: 1 for the same melody, about 1/12 for unrelated audio.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import stft

from tokenwave.errors import InvalidArgumentError

FRAME_RATE = 75
FMIN, FMAX = 50.0, 4000.0


@lru_cache(maxsize=8)
def _chroma_map(sr: int, n_fft: int) -> np.ndarray:
    """``[12, n_fft // 2 + 1]`` 0/1 matrix putting each FFT bin between FMIN and FMAX into its pitch class."""
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    m = np.zeros((12, len(freqs)), dtype=np.float32)
    ok = (freqs >= FMIN) & (freqs <= FMAX)
    pc = np.round(12 * np.log2(freqs[ok] / 440.0) + 69).astype(int) % 12
    m[pc, np.flatnonzero(ok)] = 1.0
    return m


def chroma(wav: np.ndarray, sr: int, n_fft: int = 4096) -> np.ndarray:
    """Chroma energy ``[12, T]`` of a mono waveform, frame i centred at ``i / 75`` s (pitch class 0 = C)."""
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    hop = sr // FRAME_RATE
    n_fft = min(n_fft, max(256, 2 ** int(np.log2(max(len(wav), 256)))))
    _, _, z = stft(wav, nperseg=n_fft, noverlap=n_fft - hop, boundary="zeros", padded=True)
    return _chroma_map(sr, n_fft) @ (np.abs(z) ** 2)


def melody_chroma(melody: np.ndarray | list[int]) -> np.ndarray:
    """One-hot ``[12, T]`` of a MIDI pitch per 75 Hz frame (0 or below marks a rest: an all-zero column)."""
    m = np.asarray(melody, dtype=np.int64).reshape(-1)
    out = np.zeros((12, len(m)), dtype=np.float32)
    voiced = m > 0
    out[m[voiced] % 12, np.flatnonzero(voiced)] = 1.0
    return out


def _one_hot(c: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    out = np.zeros_like(c)
    loud = c.max(0) > floor
    out[c.argmax(0)[loud], np.flatnonzero(loud)] = 1.0
    return out


def chroma_cosine(melody: np.ndarray | list[int], wav: np.ndarray, sr: int) -> float:
    """Mean per-frame cosine between the dominant-pitch-class chroma of ``melody`` and of ``wav`` (mono, ``sr``
    Hz), over the melody's voiced frames. ``melody`` is either a MIDI pitch per 75 Hz frame (integers, a list or
    an integer array; 0 = rest) or a reference waveform (a float array at the same ``sr``)."""
    mel = np.asarray(melody)
    ref = melody_chroma(mel) if mel.dtype.kind in "iu" else _one_hot(chroma(mel, sr))
    est = _one_hot(chroma(wav, sr))
    n = min(ref.shape[1], est.shape[1])
    ref, est = ref[:, :n], est[:, :n]
    voiced = ref.sum(0) > 0
    if not voiced.any():
        raise InvalidArgumentError("the melody has no voiced frame", "pass a melody with notes (MIDI pitch > 0)")
    return float((ref[:, voiced] * est[:, voiced]).sum(0).mean())
