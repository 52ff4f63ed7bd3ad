"""Reconstruction losses and fidelity measures on ``[B, 1, N]`` waveforms (torch, differentiable)."""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from tokenwave.audio.spectrogram import mel_filterbank

MEL_SCALES = ((512, 64), (1024, 80), (2048, 128))  # (n_fft, n_mels); hop = n_fft // 4
STFT_SCALES = (512, 1024, 2048)


@lru_cache(maxsize=8)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def _mag(wav: torch.Tensor, n_fft: int) -> torch.Tensor:
    spec = torch.stft(wav.reshape(-1, wav.shape[-1]), n_fft, n_fft // 4, window=_window(n_fft).to(wav.device),
                      return_complex=True)
    return spec.abs().clamp_min(1e-7)


def log_mel(wav: torch.Tensor, sample_rate: int, n_fft: int = 1024, n_mels: int = 80) -> torch.Tensor:
    """``log10`` mel power spectrogram ``[B, n_mels, frames]``, the same filterbank as the numpy one."""
    fb = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)).to(wav)
    return torch.log10(fb @ _mag(wav, n_fft) ** 2 + 1e-5)


def mel_distance(x: torch.Tensor, y: torch.Tensor, sample_rate: int) -> float:
    """Mean absolute log10-mel difference (1024-point FFT, 80 mels) of two ``[B, 1, N]`` waveforms."""
    with torch.no_grad():
        return float((log_mel(x, sample_rate) - log_mel(y, sample_rate)).abs().mean())


def mel_loss(x: torch.Tensor, y: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Multi-scale log-mel L1 distance."""
    return sum(F.l1_loss(log_mel(x, sample_rate, n, m), log_mel(y, sample_rate, n, m)) for n, m in MEL_SCALES) / len(MEL_SCALES)


def stft_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over resolutions."""
    total = 0.0
    for n in STFT_SCALES:
        mx, my = _mag(x, n), _mag(y, n)
        # over the whole batch: a silent item would make a per-item ratio explode
        sc = torch.linalg.norm(my - mx) / torch.linalg.norm(my).clamp_min(1e-3)
        total = total + sc + F.l1_loss(mx.log(), my.log())
    return total / len(STFT_SCALES)


def complex_stft_loss(x: torch.Tensor, y: torch.Tensor, compress: float = 0.3) -> torch.Tensor:
    """MSE between power-law compressed complex spectra over several resolutions: unlike magnitude losses it
    penalises phase errors, which is what keeps the waveform (and SI-SDR) aligned with the input."""
    total = 0.0
    for n in STFT_SCALES:
        win = _window(n).to(x.device)
        sx = torch.stft(x.reshape(-1, x.shape[-1]), n, n // 4, window=win, return_complex=True)
        sy = torch.stft(y.reshape(-1, y.shape[-1]), n, n // 4, window=win, return_complex=True)
        cx = sx * sx.abs().clamp_min(1e-7) ** (compress - 1)
        cy = sy * sy.abs().clamp_min(1e-7) ** (compress - 1)
        total = total + (cx - cy).abs().pow(2).mean()
    return total / len(STFT_SCALES)


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item of ``[B, 1, N]`` (higher is better)."""
    est = estimate.reshape(estimate.shape[0], -1)
    ref = reference.reshape(reference.shape[0], -1)
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    scale = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * torch.log10(target.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps) + eps)
