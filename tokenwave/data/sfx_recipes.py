"""Procedural sound-effect recipes: each ``recipe(rng, params, sr=24000) -> float32 [N]``.

A recipe renders ``round(params["duration"] * sr)`` samples from its parameters (see ``tokenwave.data.sfx``
for the parameter spaces), using only ``rng`` for randomness, so the same rng state and params give the
same audio. Techniques: filtered noise, impulse trains through resonator banks (modal synthesis), FM and
additive tones. Every recipe applies the common ``reverb`` (wet amount, 0 = dry) and ``room`` (T60 in
seconds) params, then removes DC, fades the ends and scales the peak to 0.9.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np
from scipy.signal import butter, fftconvolve, istft, lfilter, sosfilt, stft

from tokenwave import SAMPLE_RATE

Recipe = Callable[[np.random.Generator, dict, int], np.ndarray]
#: Family name -> recipe, filled by ``@_recipe`` in definition order.
RECIPES: dict[str, Recipe] = {}


# ---------------------------------------------------------------- signal helpers

def _n(params: dict, sr: int) -> int:
    return max(1, int(round(float(params["duration"]) * sr)))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to unit RMS (unchanged if silent)."""
    r = _rms(x)
    return x / r if r > 0 else x


def _mix(x: np.ndarray, y: np.ndarray, rel_db: float) -> np.ndarray:
    """``x`` plus ``y`` at ``rel_db`` dB RMS relative to ``x``."""
    return x + _unit(y) * _rms(x) * 10.0 ** (rel_db / 20.0)


def _filt(x: np.ndarray, kind: str, freq: float | Sequence[float], sr: int, order: int = 2) -> np.ndarray:
    """Butterworth ``lowpass`` / ``highpass`` / ``bandpass``, cut-offs clamped inside (20 Hz, 0.45 sr)."""
    clamp = lambda f: float(np.clip(f, 20.0, 0.45 * sr))  # noqa: E731
    wn = (clamp(freq[0]), max(clamp(freq[1]), clamp(freq[0]) * 1.05)) if kind == "bandpass" else clamp(freq)
    return sosfilt(butter(order, wn, btype=kind, fs=sr, output="sos"), x)


def _pulses(n: int, times: np.ndarray, amps: np.ndarray | float, sr: int) -> np.ndarray:
    """An impulse train of length ``n`` with ``amps`` at ``times`` (seconds); times outside are dropped."""
    times = np.atleast_1d(np.asarray(times, dtype=np.float64))
    amps = np.broadcast_to(np.asarray(amps, dtype=np.float64), times.shape)
    idx = np.round(times * sr).astype(np.int64)
    keep = (idx >= 0) & (idx < n)
    out = np.zeros(n)
    np.add.at(out, idx[keep], amps[keep])
    return out


def _burst(rng: np.random.Generator, ms: float, decay_ms: float, sr: int) -> np.ndarray:
    """A short exponentially decaying noise burst (an excitation kernel)."""
    m = max(2, int(ms * sr / 1000))
    return rng.standard_normal(m) * np.exp(-np.arange(m) / (decay_ms * sr / 1000))


def _conv(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return fftconvolve(x, kernel)[: len(x)]


def _modes(exc: np.ndarray, freqs: Sequence[float], decays: Sequence[float], amps: Sequence[float], sr: int) -> np.ndarray:
    """Excite damped resonators (``decays`` = 1/e times in seconds) with ``exc``: modal synthesis."""
    out = np.zeros(len(exc))
    for f, d, a in zip(freqs, decays, amps):
        if not 20.0 < f < 0.45 * sr:
            continue
        r = np.exp(-1.0 / (d * sr))
        w = 2 * np.pi * f / sr
        out += a * lfilter([np.sin(w)], [1.0, -2 * r * np.cos(w), r * r], exc)
    return out


def _smooth(rng: np.random.Generator, n: int, rate: float, sr: int) -> np.ndarray:
    """Slow random modulation in [-1, 1] with about ``rate`` new targets a second (cosine-interpolated)."""
    k = int(np.ceil(n / sr * rate)) + 2
    pts = rng.uniform(-1.0, 1.0, k)
    pos = np.arange(n) * (k - 1) / max(n, 1)
    i = np.minimum(pos.astype(np.int64), k - 2)
    frac = (1 - np.cos(np.pi * (pos - i))) / 2
    return pts[i] * (1 - frac) + pts[i + 1] * frac


def _brown(rng: np.random.Generator, n: int) -> np.ndarray:
    """Red (leaky-integrated) noise, unit RMS."""
    return _unit(lfilter([1.0], [1.0, -0.995], rng.standard_normal(n)))


def _swept_band(x: np.ndarray, sr: int, center: np.ndarray | float, width_oct: float, nperseg: int = 512) -> np.ndarray:
    """Band-pass ``x`` around a centre frequency that may move per sample, as a Gaussian (in octaves) STFT mask."""
    n = len(x)
    f, t, z = stft(x, fs=sr, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    fc = np.interp(t * sr, np.arange(n), np.broadcast_to(np.asarray(center, dtype=np.float64), (n,)))
    octs = np.log2(np.maximum(f, 1.0)[:, None] / fc[None, :])
    _, y = istft(z * np.exp(-0.5 * (octs / width_oct) ** 2), fs=sr, nperseg=nperseg, noverlap=nperseg * 3 // 4)
    return np.pad(y, (0, max(0, n - len(y))))[:n]


def _tone(freq: np.ndarray, sr: int, harmonics: Sequence[float] = (1.0,), phase0: float = 0.0) -> np.ndarray:
    """Additive tone following ``freq`` (Hz per sample); harmonics above 0.45 sr are muted per sample."""
    ph = phase0 + 2 * np.pi * np.cumsum(freq) / sr
    out = np.zeros(len(freq))
    for h, a in enumerate(harmonics, 1):
        if a:
            out += a * np.sin(h * ph) * (h * freq < 0.45 * sr)
    return out


def reverb(rng: np.random.Generator, x: np.ndarray, sr: int, room: float, wet: float) -> np.ndarray:
    """Convolution reverb with a synthetic impulse response: noise decaying to -60 dB over ``room`` seconds,
    darker in its tail (high frequencies die faster, as in real rooms). ``wet`` in [0, 1]."""
    room = float(np.clip(room, 0.1, 5.0))
    m = int(min(room * 1.2, 5.0) * sr)
    t = np.arange(m) / sr
    bright = rng.standard_normal(m) * np.exp(-6.91 * t / (0.4 * room))
    dark = _filt(rng.standard_normal(m), "lowpass", 3000, sr) * np.exp(-6.91 * t / room)
    ir = bright + 2.0 * dark
    ir[: int(0.012 * sr)] = 0.0  # pre-delay: the first reflection arrives after the direct sound
    ir /= np.sqrt(np.sum(ir**2)) + 1e-12
    return (1 - wet) * x + wet * fftconvolve(x, ir)[: len(x)]


def _finish(x: np.ndarray, sr: int) -> np.ndarray:
    x = np.nan_to_num(np.asarray(x, dtype=np.float64))
    x = x - x.mean()
    fi, fo = min(len(x) // 4, int(0.003 * sr)), min(len(x) // 4, int(0.05 * sr))
    if fi:
        x[:fi] *= np.linspace(0, 1, fi)
    if fo:
        x[-fo:] *= np.linspace(1, 0, fo)
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return (x * (0.9 / peak) if peak > 0 else x).astype(np.float32)


def _recipe(core: Callable[[np.random.Generator, dict, int], np.ndarray]) -> Recipe:
    """Register ``core`` under its name, wrapped with the common reverb and finishing; the raw core stays
    reachable as ``.__wrapped__`` (used for background layers)."""

    @functools.wraps(core)
    def render(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
        x = np.asarray(core(rng, params, sr), dtype=np.float64)
        wet = float(params.get("reverb", 0.0))
        if wet > 0:
            x = reverb(rng, x, sr, float(params.get("room", 1.0)), wet)
        return _finish(x, sr)

    RECIPES[core.__name__] = render
    return render


def _layer(name: str, rng: np.random.Generator, params: dict, sr: int, **overrides) -> np.ndarray:
    """Raw (unfinished, dry) render of another family, as a background layer of the same duration."""
    return RECIPES[name].__wrapped__(rng, {"duration": params["duration"], **overrides}, sr)


# ---------------------------------------------------------------- recipes

_RAIN_BED = {"tin roof": (1800, 9000), "leaves": (700, 6000), "window": (2500, 10000), "pavement": (300, 7000)}


@_recipe
def rain(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Noise bed for the unresolved drops plus individual drops shaped by the surface they hit."""
    n, inten, surface = _n(params, sr), float(params["intensity"]), params["surface"]
    bed = _filt(rng.standard_normal(n), "bandpass", _RAIN_BED[surface], sr) * (1 + 0.25 * _smooth(rng, n, 0.7, sr))
    k = rng.poisson(float(params["density"]) * (0.4 + inten) * n / sr) + 1
    imp = _pulses(n, rng.uniform(0, n / sr, k), rng.lognormal(0, 0.6, k), sr)
    if surface == "tin roof":  # metal sheet: ringing pings
        drops = _modes(imp, rng.uniform(1200, 5500, 5), rng.uniform(0.02, 0.08, 5), rng.uniform(0.3, 1, 5), sr)
        drops += 0.3 * _unit(_filt(imp, "highpass", 4000, sr)) * _rms(drops)
    elif surface == "window":  # glass: short bright ticks
        drops = _modes(imp, rng.uniform(2500, 7000, 3), rng.uniform(0.004, 0.012, 3), rng.uniform(0.5, 1, 3), sr)
    elif surface == "leaves":
        drops = _filt(_conv(imp, _burst(rng, 12, 3, sr)), "bandpass", (900, 5000), sr)
    else:
        drops = _filt(_conv(imp, _burst(rng, 20, 5, sr)), "bandpass", (400, 7000), sr)
    x = _unit(bed) * (0.3 + 0.9 * inten) + 0.8 * _unit(drops)
    if params.get("layer") == "thunder":
        x = _mix(x, _layer("thunder", rng, params, sr, distance=rng.uniform(0.6, 0.85)), -2.0)
    return x


@_recipe
def wind(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Noise through a band-pass whose centre and level follow a slow gust envelope."""
    n, s, g = _n(params, sr), float(params["strength"]), float(params["gustiness"])
    gust = _smooth(rng, n, 0.3 + 0.9 * g, sr)
    env = np.clip(0.6 + 0.3 * s + 0.5 * g * gust, 0.05, None)
    center = (250 + 700 * s) * 2.0 ** (0.8 * g * gust)
    x = _unit(_swept_band(rng.standard_normal(n), sr, center, 0.9)) * env**1.5
    x += 0.6 * (0.3 + 0.7 * s) * _unit(_filt(rng.standard_normal(n), "lowpass", 120, sr)) * env
    if params.get("whistle") == "yes":  # air over an edge: a narrow band riding the gusts
        x += 0.4 * _unit(_swept_band(rng.standard_normal(n), sr, 3 * center, 0.04, nperseg=2048)) * (env / env.max()) ** 2
    if params.get("layer") == "rain":
        x = _mix(x, _layer("rain", rng, params, sr, intensity=rng.uniform(0.2, 0.45), density=60.0,
                           surface=str(rng.choice(["leaves", "pavement"]))), -6.0)
    return x


@_recipe
def footsteps(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Heel and toe impacts at the pace, through a surface model: grain clouds, wooden modes or hard clicks."""
    n, pace, count, surface = _n(params, sr), float(params["pace"]), int(params["count"]), params["surface"]
    period = 1.0 / pace
    steps = rng.uniform(0.15, 0.5) + period * np.arange(count) + rng.normal(0, 0.03 * period, count)
    amps = rng.uniform(0.7, 1.0, count) * np.where(np.arange(count) % 2, 0.85, 1.0)
    toes = steps + rng.uniform(0.04, 0.09, count) * min(1.0, 1.6 * period)
    heel, toe = _pulses(n, steps, amps, sr), _pulses(n, toes, 0.5 * amps, sr)
    if surface in ("gravel", "snow"):  # a cloud of tiny grain impacts per step
        m = rng.integers(40, 120, count) if surface == "gravel" else rng.integers(80, 200, count)
        spread = 0.045 if surface == "gravel" else 0.07
        gt = np.concatenate([s + rng.gamma(1.5, spread, k) for s, k in zip(steps, m)])
        ga = np.concatenate([a * rng.lognormal(0, 0.7, k) for a, k in zip(amps, m)])
        band = (900, 7000) if surface == "gravel" else (300, 3500)
        grains = _filt(_pulses(n, gt, ga, sr), "bandpass", band, sr)
        thud = _filt(_conv(heel + toe, _burst(rng, 30, 8, sr)), "lowpass", 200, sr)
        return _unit(grains) + 0.4 * _unit(thud)
    if surface == "wood":
        f1 = rng.uniform(90, 140)
        body = _modes(heel + toe, [f1, f1 * 2.3, rng.uniform(500, 800)], [0.09, 0.05, 0.025], [1, 0.6, 0.4], sr)
        click = _filt(_conv(heel, _burst(rng, 2, 0.5, sr)), "highpass", 2000, sr)
        return _unit(body) + 0.4 * _unit(click)
    clack = _filt(_conv(heel + toe, _burst(rng, 4, 1, sr)), "highpass", 1200, sr)  # concrete
    thud = _modes(heel, [rng.uniform(55, 75), rng.uniform(100, 130)], [0.03, 0.02], [1, 0.5], sr)
    scuff = _filt(_conv(toe, _burst(rng, 40, 12, sr)), "bandpass", (1500, 6000), sr)
    return _unit(clack) + 0.5 * _unit(thud) + 0.25 * _unit(scuff)


@_recipe
def knock(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Knuckle bursts in groups exciting the modes of a wooden or metal door."""
    n, rate, knocks, groups = _n(params, sr), float(params["rate"]), int(params["knocks"]), int(params["groups"])
    times, t = [], rng.uniform(0.15, 0.4)
    for _ in range(groups):
        for _ in range(knocks):
            times.append(t)
            t += rng.uniform(0.9, 1.1) / rate
        t += rng.uniform(0.8, 1.6)
    exc = _conv(_pulses(n, np.array(times), rng.uniform(0.8, 1.0, len(times)), sr), _burst(rng, 1.5, 0.4, sr))
    if params["material"] == "wood":
        freqs = [rng.uniform(80, 120), rng.uniform(170, 240), rng.uniform(320, 450), rng.uniform(650, 1000), rng.uniform(1400, 2200)]
        body = _modes(exc, freqs, [0.10, 0.07, 0.045, 0.025, 0.012], [1, 0.8, 0.6, 0.35, 0.2], sr)
    else:
        ratios = np.array([1, 2.32, 4.25, 6.63, 9.38, 12.1]) * (1 + rng.uniform(-0.02, 0.02, 6))
        body = _modes(exc, rng.uniform(180, 400) * ratios, rng.uniform(0.4, 1.0) * np.array([1, 0.8, 0.6, 0.45, 0.3, 0.2]),
                      [1, 0.8, 0.6, 0.5, 0.35, 0.25], sr)
    return _unit(body) + 0.25 * _unit(_filt(exc, "highpass", 2500, sr))


_BELL_RATIOS = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01, 4.1, 5.4, 6.8])  # hum, prime, tierce, quint, nominal...
_BELL_AMPS = np.array([0.5, 0.8, 0.7, 0.35, 1.0, 0.45, 0.35, 0.3, 0.2, 0.12, 0.08])


@_recipe
def bell(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Modal synthesis of a church-style bell: inharmonic partials, higher ones decaying faster, each split into
    a beating pair; struck once or repeatedly."""
    n, pitch, decay = _n(params, sr), float(params["pitch"]), float(params["decay"])
    ratios = _BELL_RATIOS * (1 + float(params["inharmonic"]) * rng.uniform(-0.06, 0.06, len(_BELL_RATIOS)))
    t = np.arange(n) / sr
    h = np.zeros(n)
    for r, a in zip(ratios, _BELL_AMPS):
        f = pitch * r
        if f >= 0.45 * sr:
            continue
        env = a * np.exp(-t / (decay * r**-0.9))
        beat = rng.uniform(0.2, 1.5)
        h += env * 0.5 * (np.sin(2 * np.pi * (f - beat / 2) * t + rng.uniform(0, 6.3))
                          + np.sin(2 * np.pi * (f + beat / 2) * t + rng.uniform(0, 6.3)))
    click = _filt(_burst(rng, 5, 1.2, sr), "highpass", 2000, sr)
    h[: len(click)] += 0.3 * click * np.abs(h).max() / (np.abs(click).max() + 1e-12)
    t0 = rng.uniform(0.05, 0.3)
    if params["mode"] == "ringing":
        strikes = t0 + np.cumsum(np.r_[0.0, rng.uniform(0.92, 1.08, 40) / float(params["strike_rate"])])
    else:
        strikes = np.array([t0])
    return _conv(_pulses(n, strikes, rng.uniform(0.75, 1.0, len(strikes)), sr), h)


@_recipe
def engine(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Firing pulses at rpm/60 * cylinders/2 (with per-cylinder imbalance) through exhaust and body resonances,
    plus crank hum and intake noise; ``revving`` sweeps from idle up to ``rpm`` and back a few times."""
    n, rpm, cyl = _n(params, sr), float(params["rpm"]), int(params["cylinders"])
    dur, t = n / sr, np.arange(n) / sr
    if params["mode"] == "revving":
        idle = min(rpm * 0.5, rng.uniform(700, 1000))
        bump = np.zeros(n)
        for c in np.sort(rng.uniform(0.2, max(0.3, dur - 1.2), rng.integers(1, 4))):
            rise, hold, fall = rng.uniform(0.12, 0.25), rng.uniform(0.1, 0.4), rng.uniform(0.3, 0.6)
            d = t - c
            b = np.where(d < 0, 0.0, 1 - np.exp(-np.maximum(d, 0) / rise)) * np.exp(-np.maximum(d - hold, 0) / fall)
            bump = np.maximum(bump, b)
        rpm_t = idle + (rpm - idle) * bump / max(bump.max(), 1e-9)
    else:
        rpm_t = rpm * (1 + 0.015 * _smooth(rng, n, 2.0, sr))
    phase = np.cumsum(rpm_t / 60 * cyl / 2) / sr
    idx = np.flatnonzero(np.diff(np.floor(phase))) + 1
    k = len(idx)
    amps = rng.uniform(0.8, 1.2, cyl)[np.arange(k) % cyl] * (1 + 0.08 * rng.standard_normal(k)) * np.sqrt(rpm_t[idx] / rpm)
    imp = np.zeros(n)
    imp[idx] = amps
    pulse = _conv(imp, np.exp(-np.arange(int(0.015 * sr)) / (0.003 * sr)) * (1 + 0.5 * rng.standard_normal(int(0.015 * sr))))
    exhaust = _filt(pulse, "lowpass", 250 + rpm / 12, sr)
    body = _modes(pulse, [rng.uniform(70, 130), rng.uniform(180, 300)], [0.03, 0.02], [0.6, 0.3], sr)
    crank = _tone(rpm_t / 60, sr, (1.0, 0.5))
    intake = _filt(rng.standard_normal(n), "highpass", 1500, sr) * (rpm_t / 6000)
    return _unit(exhaust) + 0.5 * _unit(body) + 0.1 * crank + 0.15 * intake


_SIREN_RATE = {"wail": (0.12, 0.5), "yelp": (2.0, 5.0), "hilo": (0.6, 1.5)}  # sweeps per second at speed 0 .. 1


@_recipe
def siren(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Frequency-modulated buzzy tone (odd-heavy harmonics) through a horn band-pass: a slow wail, a fast yelp or
    two alternating hi-lo tones; distance darkens it."""
    n, mode, speed, base = _n(params, sr), params["mode"], float(params["speed"]), float(params["base"])
    lo, hi = _SIREN_RATE[mode]
    rate, t = lo + (hi - lo) * speed, np.arange(n) / sr
    start = rng.uniform(0, 1)
    if mode == "wail":
        s, span = 0.5 - 0.5 * np.cos(2 * np.pi * (rate * t + start)), 2.2
    elif mode == "yelp":
        s, span = np.mod(rate * t + start, 1.0) ** 0.6, 2.2
    else:
        s, span = _filt((np.sin(2 * np.pi * (rate * t + start)) > 0).astype(float), "lowpass", 30, sr), 1.33
    wave = _tone(base * span**s, sr, (1.0, 0.4, 0.5, 0.2, 0.3, 0.1, 0.18, 0.05))
    x = _filt(wave, "bandpass", (300, 5000), sr)
    d = float(params["distance"])
    x = _filt(x, "lowpass", 800 + 5000 * (1 - d), sr)
    return _mix(x, _filt(rng.standard_normal(n), "lowpass", 1500, sr), -30 + 12 * d)


@_recipe
def clock(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Alternating tick and tock escapement clicks (small metal modes) over a wooden case resonance."""
    n, tempo, pitch, tock = _n(params, sr), float(params["tempo"]), float(params["pitch"]), float(params["tock_ratio"])
    k = int(n / sr * tempo) + 2
    times = rng.uniform(0.05, 0.3) + np.arange(k) / tempo * (1 + rng.normal(0, 0.004, k))
    amps = rng.uniform(0.85, 1.0, k)
    ticks, tocks = _pulses(n, times[0::2], amps[0::2], sr), _pulses(n, times[1::2], 0.8 * amps[1::2], sr)
    ratios, decays, a = np.array([1, 2.71, 4.95]), [0.012, 0.008, 0.005], [1, 0.6, 0.3]
    x = _modes(ticks, pitch * ratios, decays, a, sr) + _modes(tocks, pitch * tock * ratios, decays, a, sr)
    case = _modes(ticks + tocks, [rng.uniform(250, 450), rng.uniform(700, 1000)], [0.04, 0.02], [0.5, 0.3], sr)
    click = _filt(_conv(ticks + tocks, _burst(rng, 1, 0.3, sr)), "highpass", 3000, sr)
    return _unit(x) + 0.5 * _unit(case) + 0.2 * _unit(click)


@_recipe
def drip(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Water drops: a tiny impact click plus the rising-pitch 'plink' of the bubble each drop traps."""
    n, rate, pitch, reg = _n(params, sr), float(params["rate"]), float(params["pitch"]), float(params["regularity"])
    x = np.zeros(n)
    t = rng.uniform(0.1, 0.5)
    while t < n / sr - 0.1:
        i, m = int(t * sr), int(rng.uniform(0.04, 0.1) * sr)
        tt = np.arange(m) / sr
        f0, rise, tau = pitch * rng.uniform(0.9, 1.1), rng.uniform(0.5, 1.5), rng.uniform(0.012, 0.035)
        y = np.sin(2 * np.pi * np.cumsum(f0 * (1 + rise * tt / tt[-1])) / sr) * np.exp(-tt / tau) * (1 - np.exp(-tt / 0.001))
        y[:24] += 0.15 * rng.standard_normal(min(24, m)) * np.exp(-np.arange(min(24, m)) / 6)
        seg = x[i : i + m]
        seg += rng.uniform(0.6, 1.0) * y[: len(seg)]
        t += np.exp(rng.normal(0, 0.5 * (1 - reg))) / rate
    if params.get("cave") == "yes":  # faint low room tone of a cave
        x = _mix(x, _filt(rng.standard_normal(n), "lowpass", 300, sr), -32.0)
    return x


@_recipe
def whoosh(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Noise swept through a moving band (rising or falling) under a swell envelope, once or a few times."""
    n, sweep, count = _n(params, sr), float(params["sweep"]), int(params["count"])
    x = np.zeros(n)
    for i in range(count):
        m = min(n, int(sweep * rng.uniform(1.3, 1.6) * sr))
        c = n * (i + 0.5) / count + rng.uniform(-0.1, 0.1) * n / count
        start = int(np.clip(c - m / 2, 0, n - m))
        u = np.arange(m) / m
        lo, hi = rng.uniform(150, 300), rng.uniform(2500, 6000)
        fc = lo * (hi / lo) ** (u if params["direction"] == "rising" else 1 - u)
        env = np.sin(np.pi * u**rng.uniform(0.7, 1.4)) ** 2
        noise = rng.standard_normal(m)
        y = _swept_band(noise, sr, fc, 0.6)
        y += 0.2 * _unit(_filt(noise, "lowpass", 200, sr)) * _rms(y)  # a little low 'air' under the sweep
        x[start : start + m] += y * env * rng.uniform(0.7, 1.0)
    return x


@_recipe
def thunder(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Close: a broadband crackle then a bright rumble. Distant: a late, slow-building, low-passed rumble."""
    n, d = _n(params, sr), float(params["distance"])
    start = rng.uniform(0.1, 0.6) + d * rng.uniform(0.3, 1.2)
    t = np.arange(n) / sr - start
    env = np.zeros(n)
    for _ in range(int(rng.integers(3, 8))):
        c = rng.gamma(1.5, 0.3 + 0.5 * d)
        a, tau = rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.8) * (0.6 + d)
        u = t - c
        env += a * np.where(u < 0, 0.0, 1 - np.exp(-np.maximum(u, 0) / (0.01 + 0.3 * d))) * np.exp(-np.maximum(u, 0) / tau)
    u = np.maximum(t, 0)
    env += np.where(t < 0, 0.0, 1 - np.exp(-u / (0.005 + 0.5 * d))) * np.exp(-u / (rng.uniform(1.0, 3.0) * (0.6 + d)))
    # low-pass after the envelope, so the onset of a distant rumble is soft too
    rumble = _filt((_brown(rng, n) + 0.3 * rng.standard_normal(n)) * env, "lowpass", 180 + 2500 * (1 - d) ** 2, sr, order=4)
    x = _unit(rumble)
    if d < 0.7:
        m = int(rng.integers(20, 60))
        crack = _pulses(n, start + rng.gamma(1.2, 0.04, m), rng.lognormal(0, 0.8, m), sr)
        crack = _filt(_conv(crack, _burst(rng, 3, 0.8, sr)), "bandpass", (300, 8000), sr)
        x += 1.2 * (1 - d) ** 2 * _unit(crack)
    if params.get("layer") == "rain":
        x = _mix(x, _layer("rain", rng, params, sr, intensity=rng.uniform(0.3, 0.7), density=100.0,
                           surface=str(rng.choice(["leaves", "pavement", "window"]))), -8.0)
    return x


@_recipe
def typing(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Words of keystrokes with spacebar hits and pauses; mechanical keys click and rattle, soft keys thud."""
    n, speed, dur = _n(params, sr), float(params["speed"]), _n(params, sr) / sr
    keys, spaces, t = [], [], rng.uniform(0.1, 0.4)
    while t < dur - 0.15:
        for _ in range(int(rng.integers(2, 9))):
            keys.append(t)
            t += rng.lognormal(0, 0.25) / speed
        spaces.append(t)
        t += rng.lognormal(0, 0.3) / speed + (rng.uniform(0.3, 1.0) if rng.random() < 0.15 else 0.0)
    kt, st = np.array(keys), np.array(spaces)
    press, space = _pulses(n, kt, rng.uniform(0.6, 1.0, len(kt)), sr), _pulses(n, st, rng.uniform(0.8, 1.0, len(st)), sr)
    if params["style"] == "mechanical":
        release = _pulses(n, kt + rng.uniform(0.06, 0.12, len(kt)), 0.4 * rng.uniform(0.6, 1.0, len(kt)), sr)
        click = _modes(press + release, [rng.uniform(3000, 4500), rng.uniform(6000, 8000)], [0.004, 0.002], [1, 0.5], sr)
        thock = _modes(press, [rng.uniform(350, 600), rng.uniform(900, 1300)], [0.02, 0.01], [1, 0.5], sr)
        spc = _modes(space + _pulses(n, st + 0.008, 0.5, sr), [rng.uniform(150, 250), rng.uniform(1800, 2600)], [0.03, 0.006], [1, 0.4], sr)
        return _unit(click) + 0.8 * _unit(thock) + 0.6 * _unit(spc)
    thud = _modes(press, [rng.uniform(180, 320), rng.uniform(600, 900)], [0.015, 0.008], [1, 0.4], sr)
    tap = _filt(_conv(press, _burst(rng, 3, 0.8, sr)), "lowpass", 2500, sr)
    spc = _modes(space, [rng.uniform(120, 200)], [0.025], [1], sr)
    return _unit(thud) + 0.5 * _unit(tap) + 0.5 * _unit(spc)


@_recipe
def fire(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Flickering low roar, a little hiss, sharp heavy-tailed crackles and occasional resonant pops."""
    n, crackle, roar = _n(params, sr), float(params["crackle"]), float(params["roar"])
    body = _filt(_brown(rng, n), "lowpass", rng.uniform(300, 600), sr) * (1 + 0.4 * _smooth(rng, n, 3.0, sr))
    hiss = _filt(rng.standard_normal(n), "highpass", 3000, sr)
    k = rng.poisson((3 + 70 * crackle) * n / sr) + 1
    ct = np.repeat(rng.uniform(0, n / sr, k), 3) + np.tile([0.0, 0.002, 0.005], k) * rng.uniform(0, 1, 3 * k)
    ca = np.minimum(rng.pareto(2.5, 3 * k) + 0.2, 8.0) * np.tile([1.0, 0.5, 0.25], k)
    crack = _filt(_conv(_pulses(n, ct, ca, sr), _burst(rng, 0.8, 0.2, sr)), "highpass", 1500, sr)
    kp = rng.poisson(0.3 * (1 + 4 * crackle) * n / sr)
    pops = _modes(_pulses(n, rng.uniform(0, n / sr, kp), rng.uniform(0.5, 1, kp), sr), [rng.uniform(600, 1800)], [0.008], [1], sr)
    x = (0.15 + 0.85 * roar) * _unit(body) + 0.1 * _unit(hiss) + 1.5 * crack / (np.abs(crack).max() + 1e-12)
    return x + (0.8 * pops / (np.abs(pops).max() + 1e-12) if kp else 0.0)


@_recipe
def birds(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """FM chirps: down-swept tweets, rapid trills or vibrato warbles, from one to a few birds."""
    n, pitch, rate, style = _n(params, sr), float(params["pitch"]), float(params["rate"]), params["style"]
    x = np.zeros(n)
    for b in range(int(params["birds"])):
        bp = pitch * (1.0 if b == 0 else rng.uniform(0.93, 1.07))
        gain, t = rng.uniform(0.5, 1.0) if b else 1.0, rng.uniform(0.05, 0.6)
        while t < n / sr - 0.05:
            if style == "tweet":
                m = int(rng.uniform(0.05, 0.12) * sr)
                u = np.arange(m) / m
                f = bp * 1.25 * (0.8 / 1.25) ** (u**0.7)
            elif style == "trill":
                notes, nl = int(rng.integers(5, 13)), int(sr / rng.uniform(15, 25))
                m, u = notes * nl, np.tile(np.arange(nl) / nl, notes)
                f = bp * (1.1 - 0.15 * u)
            else:
                m = int(rng.uniform(0.2, 0.4) * sr)
                u = np.arange(m) / m
                f = bp * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(15, 35) * np.arange(m) / sr))
            env = np.sin(np.pi * u) ** 2 * (np.sin(np.pi * np.arange(m) / m) if style == "trill" else 1.0)
            i = int(t * sr)
            seg = x[i : i + m]
            seg += gain * (_tone(f, sr, (1.0, 0.15)) * env)[: len(seg)]
            t += m / sr + rng.exponential(1.0 / rate) + 0.05
    if params.get("layer") == "wind":
        x = _mix(x, _layer("wind", rng, params, sr, strength=rng.uniform(0.1, 0.3), gustiness=rng.uniform(0.1, 0.3)), -10.0)
    return x


@_recipe
def phone(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """A telephone ringing in its cadence: a 20 Hz clapper striking two small bells, or an electronic trill."""
    n, pitch, dur = _n(params, sr), float(params["pitch"]), _n(params, sr) / sr
    spans, t = [], rng.uniform(0.1, 0.4)
    on, off = rng.uniform(1.2, 2.0), rng.uniform(2.0, 3.0)
    while t < dur:
        if params["cadence"] == "double":
            spans += [(t, t + 0.4), (t + 0.6, t + 1.0)]
            t += 1.0 + rng.uniform(1.6, 2.2)
        else:
            spans.append((t, t + on))
            t += on + off
    if params["style"] == "bell":
        hits = np.concatenate([np.arange(a, b, 1 / 40) for a, b in spans])  # clapper: 20 Hz, alternating bells
        ha = rng.uniform(0.8, 1.0, len(hits))
        ratios, decays, amps = np.array([1, 2.76, 5.4, 8.9]), [0.25, 0.12, 0.06, 0.03], [1, 0.5, 0.3, 0.15]
        x = _modes(_pulses(n, hits[0::2], ha[0::2], sr), pitch * ratios, decays, amps, sr)
        x += _modes(_pulses(n, hits[1::2], ha[1::2], sr), pitch * rng.uniform(1.12, 1.25) * ratios, decays, amps, sr)
        return x + 0.1 * _unit(_filt(_pulses(n, hits, 1.0, sr), "highpass", 3000, sr)) * _rms(x)
    tt = np.arange(n) / sr
    gate = np.zeros(n)
    for a, b in spans:
        gate[int(a * sr) : int(b * sr)] = 1.0
    gate = _filt(gate, "lowpass", 80, sr)
    alt = np.sin(2 * np.pi * rng.uniform(12, 20) * tt) > 0
    return _tone(np.where(alt, pitch, pitch * 1.26), sr, (1.0, 0, 0.3, 0, 0.15)) * gate


@_recipe
def applause(rng: np.random.Generator, params: dict, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Each person claps at their own slightly jittered rate; people share one of a few clap timbres
    (band-passed noise bursts) so the crowd is rendered as a handful of convolutions."""
    n, crowd, inten, dur = _n(params, sr), int(params["crowd"]), float(params["intensity"]), _n(params, sr) / sr
    rate = (2.5 + 2.5 * inten) * rng.uniform(0.8, 1.2, crowd)
    m = int(np.ceil(dur * rate.max())) + 2
    times = rng.uniform(0, 0.6, crowd)[:, None] + np.cumsum((1 + 0.1 * rng.standard_normal((crowd, m))) / rate[:, None], axis=1)
    amps = rng.uniform(0.5, 1.0, crowd)[:, None] * rng.uniform(0.7, 1.0, (crowd, m))
    groups = min(crowd, 16)
    x = np.zeros(n)
    for g in range(groups):
        c = rng.uniform(700, 2500)
        kern = _filt(_burst(rng, rng.uniform(6, 15), rng.uniform(1.5, 4), sr), "bandpass", (c / 1.6, c * 1.6), sr)
        x += _conv(_pulses(n, times[g::groups].ravel(), amps[g::groups].ravel(), sr), kern)
    env = np.minimum(1.0, np.arange(n) / (rng.uniform(0.1, 0.8) * sr))
    if rng.random() < 0.5:  # the applause dies down
        tail = rng.uniform(0.5, 2.0)
        env *= np.clip((dur - np.arange(n) / sr) / tail, 0.1, 1.0)
    return x * env
