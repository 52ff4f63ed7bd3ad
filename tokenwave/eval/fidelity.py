"""Fidelity of an estimate to a reference: mono float32 ``[N]`` numpy waveforms at one sample rate (24 kHz here).

Spectral distances (lower is better): ``mel_distance`` (mean |log10-mel| difference, 1024-point FFT, 80 mels) and
``stft_distance`` (multi-resolution STFT: spectral convergence + log-magnitude L1). Waveform and perceptual scores
(higher is better): ``si_sdr`` (dB), ``pesq_wb`` (ITU-T P.862.2 wide-band MOS-LQO, 1.04..4.64, at 16 kHz) and
``stoi`` (0..1, computed by pystoi at its own 10 kHz rate). PESQ and STOI are defined for speech only.
Lengths differ by a few samples after some codecs; every function trims both signals to the shorter one.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from tokenwave.audio.resample import resample
from tokenwave.codec import losses
from tokenwave.errors import InvalidArgumentError

PESQ_RATE = 16000


class PesqResult(NamedTuple):
    """``value`` is the PESQ score, or ``None`` with ``reason`` saying why it could not be computed."""

    value: float | None
    reason: str | None = None


def align(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both as mono float32 ``[N]`` trimmed to the shorter length."""
    ref, est = mono(ref), mono(est)
    n = min(len(ref), len(est))
    if n == 0:
        raise InvalidArgumentError("cannot compare an empty waveform", "pass non-empty reference and estimate")
    return ref[:n], est[:n]


def mono(x: np.ndarray) -> np.ndarray:
    """A mono waveform ``[N]`` (or ``[1, 1, N]``, any shape with one axis longer than 1) -> float32 ``[N]``; a typed
    error for more than one channel."""
    x = np.asarray(x, dtype=np.float32)
    if sum(d > 1 for d in x.shape) > 1:
        raise InvalidArgumentError(f"expected a mono waveform, got shape {x.shape}", "pass a [N] (or [1, 1, N]) array")
    return x.reshape(-1)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))[None, None]


def mel_distance(ref: np.ndarray, est: np.ndarray, sr: int) -> float:
    """Mean absolute log10-mel difference (0 for identical signals; lower is better)."""
    ref, est = align(ref, est)
    return losses.mel_distance(_t(est), _t(ref), sr)


def stft_distance(ref: np.ndarray, est: np.ndarray) -> float:
    """Multi-resolution STFT distance (spectral convergence + log-magnitude L1 at 512/1024/2048 points)."""
    ref, est = align(ref, est)
    with torch.no_grad():
        return float(losses.stft_loss(_t(est), _t(ref)))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (higher is better)."""
    ref, est = align(ref, est)
    return float(losses.si_sdr(_t(est), _t(ref))[0])


def pesq_wb(ref: np.ndarray, est: np.ndarray, sr: int) -> PesqResult:
    """Wide-band PESQ after resampling both to 16 kHz; ``PesqResult(None, reason)`` if PESQ refuses the pair
    (for instance no utterance detected in a silent or very short reference)."""
    from pesq import pesq  # lazy: optional backend (pesq, the `eval` extra)

    ref, est = align(ref, est)
    r16, e16 = resample(ref, sr, PESQ_RATE), resample(est, sr, PESQ_RATE)
    if not np.any(r16):
        return PesqResult(None, "the reference is silent")
    try:
        with np.errstate(all="ignore"):
            return PesqResult(float(pesq(PESQ_RATE, r16.astype(np.float64), e16.astype(np.float64), "wb")))
    except Exception as err:  # pesq raises its own NoUtterancesError / BufferTooShortError / cypesq errors
        detail = err.args[0] if err.args else ""
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
        return PesqResult(None, f"{type(err).__name__}: {detail}".strip(": "))


def stoi(ref: np.ndarray, est: np.ndarray, sr: int, extended: bool = False) -> float:
    """Short-time objective intelligibility (0..1); pystoi resamples to 10 kHz and drops silent frames itself."""
    from pystoi import stoi as _stoi  # lazy: optional backend (pystoi, the `eval` extra)

    ref, est = align(ref, est)
    return float(_stoi(ref.astype(np.float64), est.astype(np.float64), sr, extended=extended))


def fidelity(ref: np.ndarray, est: np.ndarray, sr: int, speech: bool) -> dict[str, float | str | None]:
    """Every metric for one pair: ``mel_distance``, ``stft_distance``, ``si_sdr`` and, when ``speech``, ``pesq_wb``
    (``None`` plus ``pesq_wb_error`` if it cannot be computed) and ``stoi``."""
    ref, est = align(ref, est)
    out: dict[str, float | str | None] = {
        "mel_distance": mel_distance(ref, est, sr),
        "stft_distance": stft_distance(ref, est),
        "si_sdr": si_sdr(ref, est),
    }
    if speech:
        p = pesq_wb(ref, est, sr)
        out["pesq_wb"] = p.value
        if p.reason:
            out["pesq_wb_error"] = p.reason
        out["stoi"] = stoi(ref, est, sr)
    return out
