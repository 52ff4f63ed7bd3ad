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


def band_mask(bandwidth: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    """bandwidth [B] in Hz, freqs [F] (a bin's or a mel band's highest frequency) -> mask [B, F, 1], 1 where the
    clip's original recording holds that frequency: a loss masked by it teaches the low band of a clip recorded at a
    lower rate without teaching the codec to erase the high band."""
    return (freqs.to(bandwidth)[None, :] <= bandwidth[:, None] + 1e-3).to(bandwidth.dtype)[..., None]


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, F, T]`` over the entries ``mask [B, F, 1]`` keeps."""
    return (values * mask).sum() / (mask.sum() * values.shape[-1]).clamp_min(1.0)


def _bin_freqs(n_fft: int, sample_rate: int) -> torch.Tensor:
    return torch.arange(n_fft // 2 + 1, dtype=torch.float32) * sample_rate / n_fft


def _mel_top(sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """Each mel band's highest frequency with weight [n_mels]."""
    fb = torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels))
    freqs = _bin_freqs(n_fft, sample_rate)
    return torch.where(fb > 0, freqs[None], torch.zeros(())).amax(-1)


def mel_loss(x: torch.Tensor, y: torch.Tensor, sample_rate: int, bandwidth: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-scale log-mel L1 distance; ``bandwidth [B]`` (Hz): only the mel bands each clip's recording holds."""
    if bandwidth is None:
        return sum(F.l1_loss(log_mel(x, sample_rate, n, m), log_mel(y, sample_rate, n, m))
                   for n, m in MEL_SCALES) / len(MEL_SCALES)
    total = 0.0
    for n, m in MEL_SCALES:
        diff = (log_mel(x, sample_rate, n, m) - log_mel(y, sample_rate, n, m)).abs()
        total = total + _masked_mean(diff, band_mask(bandwidth, _mel_top(sample_rate, n, m)))
    return total / len(MEL_SCALES)


def stft_loss(x: torch.Tensor, y: torch.Tensor, bandwidth: torch.Tensor | None = None,
              sample_rate: int | None = None) -> torch.Tensor:
    """Multi-resolution STFT loss: spectral convergence + log-magnitude L1, averaged over resolutions;
    ``bandwidth [B]`` (Hz, with ``sample_rate``): only the bins each clip's recording holds."""
    total = 0.0
    for n in STFT_SCALES:
        mx, my = _mag(x, n), _mag(y, n)
        if bandwidth is None:
            # over the whole batch: a silent item would make a per-item ratio explode
            sc = torch.linalg.norm(my - mx) / torch.linalg.norm(my).clamp_min(1e-3)
            total = total + sc + F.l1_loss(mx.log(), my.log())
            continue
        m = band_mask(bandwidth, _bin_freqs(n, sample_rate))
        sc = torch.linalg.norm((my - mx) * m) / torch.linalg.norm(my * m).clamp_min(1e-3)
        total = total + sc + _masked_mean((mx.log() - my.log()).abs(), m)
    return total / len(STFT_SCALES)


def complex_stft_loss(x: torch.Tensor, y: torch.Tensor, compress: float = 0.3, bandwidth: torch.Tensor | None = None,
                      sample_rate: int | None = None) -> torch.Tensor:
    """MSE between power-law compressed complex spectra over several resolutions: unlike magnitude losses it
    penalises phase errors, which is what keeps the waveform (and SI-SDR) aligned with the input; ``bandwidth [B]``
    (Hz, with ``sample_rate``): only the bins each clip's recording holds."""
    total = 0.0
    for n in STFT_SCALES:
        win = _window(n).to(x.device)
        sx = torch.stft(x.reshape(-1, x.shape[-1]), n, n // 4, window=win, return_complex=True)
        sy = torch.stft(y.reshape(-1, y.shape[-1]), n, n // 4, window=win, return_complex=True)
        cx = sx * sx.abs().clamp_min(1e-7) ** (compress - 1)
        cy = sy * sy.abs().clamp_min(1e-7) ** (compress - 1)
        err = (cx - cy).abs().pow(2)
        total = total + (err.mean() if bandwidth is None else _masked_mean(err, band_mask(bandwidth, _bin_freqs(n, sample_rate))))
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
