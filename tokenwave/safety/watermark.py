"""Inaudible spread-spectrum watermark: a keyed ±1 pattern of small band-energy changes, detected by correlation.

Embedding (any sample rate ``sr``; waveforms are mono float32 ``[N]``):
  an STFT with a 20 ms hop ``H = sr / 50`` and a 40 ms sqrt-Hann window (50 % overlap, so with no change the
  inverse STFT gives back the input exactly). The 150 Hz..7 kHz range is cut into ``BANDS`` mel-spaced bands; the
  key draws a ±1 chip for every (band, frame mod ``PERIOD``) and each tile's STFT coefficients are scaled by
  ``10 ** (±ALPHA_DB / 20)``. The mark therefore lives in band energies at 50 frames per second below 7 kHz, which
  is what perceptual codecs (Opus, MP3) keep, what resampling to 16 kHz keeps, and what a gain change or added noise
  moves only a little. Because the pattern repeats every ``PERIOD`` frames (1.28 s), any 3 s excerpt holds it all.

Detection (any rate; the input is resampled to 16 kHz):
  log band energies on a hop/4 grid, detrended (each tile minus the mean of its time neighbours, which removes the
  content's slow envelope and any gain), silent tiles dropped and the rest clipped to 1.5x their median size. For each of the 4 sub-hop phases and ``PERIOD``
  circular shifts the residuals are correlated with the key's pattern; the same correlations with ``NULL_KEYS``
  random patterns give the null mean and spread, so the score ``z`` is calibrated on the file itself (the key's
  pattern is as independent of unmarked content as the random ones). ``score`` is the largest ``z`` over the
  ``4 * PERIOD`` candidates and ``p_value`` its one-sided Gaussian tail, Šidák-corrected for the search;
  ``present`` is ``p_value < P_THRESHOLD``.
  Speed and tempo changes: when the audio as it is shows no mark, the tiles are re-sampled in time by each of a
  grid of scales within ±``MAX_STRETCH`` (a 2 % resample or a 5 % time-stretch moves the 20 ms frames, which folding
  by the period would smear) and searched again; each search gets half the false-positive budget (Bonferroni), the
  second Šidák-corrected for its ``scales * 4 * PERIOD`` candidates.

``WatermarkStream`` embeds chunk by chunk (20 ms latency) and gives the same samples as ``embed_watermark``.
"""
from __future__ import annotations

import functools
import hashlib
import math
from typing import NamedTuple

import numpy as np

from tokenwave.audio.resample import resample
from tokenwave.errors import InvalidArgumentError

DEFAULT_KEY = "tokenwave-watermark-v1"
HOP_SECONDS = 0.02
BANDS = 32
F_LOW, F_HIGH = 150.0, 7000.0
PERIOD = 64  # frames (1.28 s)
ALPHA_DB = 1.0
DETECT_RATE = 16000
PHASES = 4
NULL_KEYS = 64
SILENCE_DB = 50.0  # tiles more than this below the loudest tile of their band carry nothing
P_THRESHOLD = 1e-3
CLIP_MEDIANS = 1.5  # residuals are clipped to this many times their median magnitude
MIN_SECONDS = 1.0
MAX_STRETCH = 0.06        # speed / tempo changes searched: up to 6 % faster or slower
SCALE_DRIFT_FRAMES = 1.5  # grid step: a scale between two searched ones drifts under this many frames end to end
MIN_SCALE_STEP = 0.004    # (at most ~30 scales, for audio of 7.5 s or more)


class WatermarkResult(NamedTuple):
    """``present``: ``p_value < threshold``; ``p_value``: chance of a score this high on unmarked audio;
    ``score``: the best candidate's z (standard deviations above the file's own null)."""

    present: bool
    p_value: float
    score: float


def _key_seed(key: str | int) -> int:
    return int.from_bytes(hashlib.sha256(str(key).encode()).digest()[:8], "little")


def key_pattern(key: str | int = DEFAULT_KEY) -> np.ndarray:
    """The key's chips: float32 ±1 ``[BANDS, PERIOD]``."""
    rng = np.random.default_rng(_key_seed(key))
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(BANDS, PERIOD))


@functools.lru_cache(maxsize=1)
def _null_patterns() -> np.ndarray:
    rng = np.random.default_rng(20261130)
    return rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(NULL_KEYS, BANDS, PERIOD))


def _mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def band_edges() -> np.ndarray:
    """``BANDS + 1`` edges in Hz, mel-spaced between ``F_LOW`` and ``F_HIGH``."""
    m = np.linspace(_mel(F_LOW), _mel(F_HIGH), BANDS + 1)
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


def _bin_bands(n_fft: int, sr: int) -> np.ndarray:
    """Band index of every rfft bin (``-1`` outside the marked range)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    idx = np.searchsorted(band_edges(), freqs, side="right") - 1
    idx[(freqs < F_LOW) | (freqs >= F_HIGH)] = -1
    return idx


def _hop(sr: int) -> int:
    if not isinstance(sr, (int, np.integer)) or sr < 2 * F_HIGH:
        raise InvalidArgumentError(f"cannot watermark audio at {sr!r} Hz", f"use a rate of at least {2 * F_HIGH:.0f} Hz")
    return int(round(HOP_SECONDS * sr))


def _window(hop: int) -> np.ndarray:
    return np.sqrt(np.hanning(2 * hop + 1)[:-1]).astype(np.float64)  # periodic sqrt-Hann: w^2 sums to 1 at hop


def _gains(key: str | int, hop: int, sr: int, first_frame: int, n_frames: int, alpha_db: float) -> np.ndarray:
    """Per-bin gain ``[n_frames, n_fft // 2 + 1]`` of frames ``first_frame ..`` (frame t is centred on sample t*hop)."""
    bands = _bin_bands(2 * hop, sr)
    chips = key_pattern(key)[:, (first_frame + np.arange(n_frames)) % PERIOD].T  # [T, BANDS]
    g = np.ones((n_frames, len(bands)))
    inside = bands >= 0
    g[:, inside] = 10.0 ** (alpha_db * chips[:, bands[inside]] / 20.0)
    return g


def _check_wav(wav: np.ndarray) -> np.ndarray:
    x = np.asarray(wav, dtype=np.float32)
    if sum(d > 1 for d in x.shape) > 1:
        raise InvalidArgumentError(f"expected a mono waveform, got shape {x.shape}", "pass a [N] array (mix down first)")
    return x.reshape(-1)


def embed_watermark(wav: np.ndarray, sr: int, key: str | int = DEFAULT_KEY, alpha_db: float = ALPHA_DB) -> np.ndarray:
    """Mark mono ``wav [N]`` at ``sr`` Hz with ``key``; returns float32 ``[N]`` (same length, not re-clipped)."""
    x = _check_wav(wav).astype(np.float64)
    n = len(x)
    if n == 0:
        return x.astype(np.float32)
    hop = _hop(sr)
    win = _window(hop)
    n_frames = n // hop + 2
    padded = np.zeros((n_frames + 1) * hop)
    padded[hop: hop + n] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::hop][:n_frames] * win
    spec = np.fft.rfft(frames, axis=1) * _gains(key, hop, sr, 0, n_frames, alpha_db)
    out_frames = np.fft.irfft(spec, n=2 * hop, axis=1) * win
    y = np.zeros_like(padded)
    for half in (0, 1):  # overlap-add: frame t covers padded[t*hop : (t+2)*hop]
        y[half * hop: half * hop + n_frames * hop] += out_frames[:, half * hop:(half + 1) * hop].reshape(-1)
    return y[hop: hop + n].astype(np.float32)


class WatermarkStream:
    """Chunk-wise embedding with ``hop`` samples (20 ms) of latency: ``push(chunk) -> marked samples so far``,
    ``flush()`` for the rest. The concatenated output equals ``embed_watermark`` of the whole input."""

    def __init__(self, sr: int, key: str | int = DEFAULT_KEY, alpha_db: float = ALPHA_DB) -> None:
        self.sr, self.key, self.alpha_db = sr, key, alpha_db
        self.hop = _hop(sr)
        self._win = _window(self.hop)
        self._buf = np.zeros(self.hop)  # input not yet framed, starting at frame `_frame`'s first sample
        self._tail = np.zeros(self.hop)  # second half of the last frame's output, waiting for the next frame
        self._frame = 0
        self._n_in = 0
        self._n_out = 0
        self._n_raw = 0

    def _frames(self, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hop = self.hop
        n_frames = (len(buf) - hop) // hop
        if n_frames <= 0:
            return np.zeros(0), buf
        frames = np.lib.stride_tricks.sliding_window_view(buf, 2 * hop)[::hop][:n_frames] * self._win
        spec = np.fft.rfft(frames, axis=1) * _gains(self.key, hop, self.sr, self._frame, n_frames, self.alpha_db)
        out = np.fft.irfft(spec, n=2 * hop, axis=1) * self._win
        y = out[:, :hop].copy()
        y[0] += self._tail
        y[1:] += out[:-1, hop:]
        self._tail = out[-1, hop:].copy()
        self._frame += n_frames
        return y.reshape(-1), buf[n_frames * hop:]

    def push(self, chunk: np.ndarray) -> np.ndarray:
        chunk = _check_wav(chunk).astype(np.float64)
        self._n_in += len(chunk)
        y, self._buf = self._frames(np.concatenate([self._buf, chunk]))
        return self._emit(y)

    def _emit(self, y: np.ndarray) -> np.ndarray:
        # raw output sample i is input sample i - hop (the first hop samples belong to the leading pad)
        skip = max(0, self.hop - self._n_raw)
        self._n_raw += len(y)
        out = y[min(skip, len(y)):][: self._n_in - self._n_out]
        self._n_out += len(out)
        return out.astype(np.float32)

    def flush(self) -> np.ndarray:
        """The last ``hop`` samples (the input's end padded with silence)."""
        y, self._buf = self._frames(np.concatenate([self._buf, np.zeros(2 * self.hop)]))
        return self._emit(y)


def _tile_energies(x: np.ndarray, sr: int) -> tuple[np.ndarray, int]:
    """Log band energies ``[BANDS, J]`` on a hop/PHASES grid (frame j centred on sample j*hop/PHASES)."""
    hop = _hop(sr)
    step = hop // PHASES
    win = np.hanning(2 * hop + 1)[:-1]
    padded = np.concatenate([np.zeros(hop), x.astype(np.float64), np.zeros(2 * hop)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, 2 * hop)[::step]
    n = (len(x) + hop) // step
    power = np.abs(np.fft.rfft(frames[:n] * win, axis=1)) ** 2
    bands = _bin_bands(2 * hop, sr)
    onehot = (bands[:, None] == np.arange(BANDS)[None]).astype(np.float64)  # [F, BANDS]
    energy = power @ onehot / np.maximum(onehot.sum(0), 1)
    return 10.0 * np.log10(energy.T + 1e-12), n


def _residuals(logE: np.ndarray) -> np.ndarray:
    """Detrended tiles per phase: ``[PHASES, BANDS, T]`` (zeros for silent or missing tiles)."""
    out = []
    j_max = logE.shape[1]
    t_max = j_max // PHASES
    for ph in range(PHASES):
        L = logE[:, ph::PHASES][:, :t_max]
        r = np.zeros_like(L)
        r[:, 1:-1] = L[:, 1:-1] - 0.5 * (L[:, :-2] + L[:, 2:])
        loud = L > (L.max(axis=1, keepdims=True) - SILENCE_DB)
        keep = np.zeros_like(loud)
        keep[:, 1:-1] = loud[:, 1:-1] & loud[:, :-2] & loud[:, 2:]
        r = np.where(keep, r, 0.0)
        if keep.any():  # clip onsets and decays, whose big residuals are content, not mark (a robust correlator)
            limit = CLIP_MEDIANS * np.median(np.abs(r[keep]))
            r = np.clip(r, -limit, limit)
        out.append(r)
    return np.stack(out)


def _fold(res: np.ndarray) -> np.ndarray:
    """Sum residual frames by frame index mod PERIOD: ``[PHASES, BANDS, PERIOD]``."""
    ph, b, t = res.shape
    pad = (-t) % PERIOD
    return np.pad(res, ((0, 0), (0, 0), (0, pad))).reshape(ph, b, -1, PERIOD).sum(2)


@functools.lru_cache(maxsize=8)
def _spectrum(key: str | int | None) -> np.ndarray:
    """rfft over the period of the key's pattern ``[1, B, P/2+1]``, or of the null patterns (``key`` None)."""
    return np.fft.rfft(_null_patterns() if key is None else key_pattern(key)[None], axis=-1)


def _circular_corr(folded: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``c[k, phase, s] = sum_b sum_p folded[phase, b, p] * patterns[k, b, (p + s) % PERIOD]`` for the patterns
    whose :func:`_spectrum` is ``W [K, B, P/2+1]``."""
    F = np.fft.rfft(folded, axis=-1)  # [PH, B, P/2+1]
    cross = np.einsum("hbf,kbf->khf", np.conj(F), W)
    return np.fft.irfft(cross, n=PERIOD, axis=-1)


def _stretch(logE: np.ndarray, scale: float) -> np.ndarray:
    """Tiles of audio played ``scale`` times as long -> tiles on the original grid (linear interpolation in time)."""
    J = logE.shape[1]
    pos = np.arange(int((J - 1) / scale) + 1) * scale
    i0 = np.minimum(pos.astype(int), J - 2)
    w = pos - i0
    return logE[:, i0] * (1.0 - w) + logE[:, i0 + 1] * w


def time_scales(n_frames: int) -> np.ndarray:
    """The time scales searched besides 1: log-spaced over ``1 / (1 + MAX_STRETCH) .. 1 + MAX_STRETCH``, finely
    enough that a scale between two of them drifts the pattern by under a frame across ``n_frames`` frames."""
    step = max(SCALE_DRIFT_FRAMES / max(n_frames, 1), MIN_SCALE_STEP)
    k = int(np.ceil(np.log1p(MAX_STRETCH) / step))
    scales = np.exp(np.arange(-k, k + 1) * step)
    return scales[scales != 1.0]


def _z(logE: np.ndarray, key: str | int) -> np.ndarray | None:
    """z of the key's pattern for every (phase, shift) candidate, against the file's own null; None if silent."""
    folded = _fold(_residuals(logE))
    c_key = _circular_corr(folded, _spectrum(key))[0]  # [PH, P]
    c_null = _circular_corr(folded, _spectrum(None))  # [K, PH, P]
    mu = c_null.mean(axis=(0, 2))
    sd = c_null.std(axis=(0, 2))
    if not np.all(sd > 0):
        return None
    return (c_key - mu[:, None]) / sd[:, None]


def _sidak(score: float, trials: int) -> float:
    p_single = 0.5 * math.erfc(score / math.sqrt(2.0))
    return float(-math.expm1(trials * math.log1p(-p_single))) if p_single < 1 else 1.0


def detect_watermark(wav: np.ndarray, sr: int, key: str | int = DEFAULT_KEY,
                     threshold: float = P_THRESHOLD) -> WatermarkResult:
    """Look for ``key``'s mark in mono ``wav [N]`` at ``sr`` Hz (at least ``MIN_SECONDS``; any excerpt works).

    Two searches, each given half of the false-positive budget (Bonferroni): the audio as it is (``PHASES *
    PERIOD`` candidates), and the audio sped up or slowed down (resampled, or time-stretched with its pitch kept)
    by any of :func:`time_scales` (that many times more candidates)."""
    x = _check_wav(wav)
    if len(x) < MIN_SECONDS * sr:
        raise InvalidArgumentError(f"{len(x) / sr:.2f} s is too short to look for a watermark",
                                   f"pass at least {MIN_SECONDS:g} s of audio")
    if sr != DETECT_RATE:
        x = resample(x, sr, DETECT_RATE)
    logE, _ = _tile_energies(x, DETECT_RATE)
    z = _z(logE, key)
    if z is None:
        return WatermarkResult(False, 1.0, 0.0)
    score = float(z.max())
    p_value = min(1.0, 2.0 * _sidak(score, z.size))
    scales = time_scales(logE.shape[1] // PHASES)
    if len(scales) and p_value >= threshold:  # only needed when the audio as it is does not show the mark
        stretched = [zs.max() for zs in (_z(_stretch(logE, s), key) for s in scales) if zs is not None]
        if stretched and max(stretched) > score:
            score = float(max(stretched))
            p_value = min(p_value, 2.0 * _sidak(score, z.size * len(scales)))
    p_value = min(1.0, max(p_value, 0.0))
    return WatermarkResult(bool(p_value < threshold), p_value, score)
