"""Which English accent a voice prompt speaks in, from the recording and its transcript.

The TTS model is told each frame's phone, timed by espeak-ng (:func:`tokenwave.speech.timing.text_timings`). It was
trained on every clip's own accent's timing, so it renders the accent it is timed in; timed always in ``en-us``, a
prompt's accent cannot come through, and two voices that differ only by accent sound alike.

A prompt's accent is found the way the datasets are aligned: its transcript is spoken again by espeak-ng in each
English accent, and the accent whose rhythm (loudness envelope) fits the recording best wins. Speaking rate is
fitted per accent from the recording's length; the speaking styles (variants) whose stress timing differs from
espeak-ng's default are each tried, since they lengthen stressed syllables. A recording whose best fit is poor
(another engine, a human voice far from every accent) gets no accent: the caller keeps the reference. The variant
whose stress timing fitted best is kept too, and TTS times the speech with it (chosen on the valid split: a higher
speaker margin than the accent alone; checkpoints/tts/MODEL.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import uniform_filter1d

from tokenwave.audio import resample
from tokenwave.errors import InvalidArgumentError
from tokenwave.speech.envelope import envelope, trim_bounds
from tokenwave.speech.espeak import espeak_accents, espeak_timings

#: espeak-ng variants with their own stress timing among the training set's (m1, m5 and klatt2 time as the default)
TIMING_VARIANTS = ("", "m3", "f2", "f4")
MIN_MATCH = 0.9         # a best fit under this is no accent (engine clips fit at 0.9-0.99, flite's at most 0.86)
_HOP_S = 0.01           # envelope frames
_SMOOTH = 5             # frames of the moving average over the log envelope (evens out pitch periods)
_LAG = 3                # frames either way the two envelopes may be offset
_RATES = (80, 450)      # espeak-ng's usable words per minute


@dataclass
class AccentMatch:
    """The detected accent (None when nothing fits), how well it fits (envelope correlation, -1..1), every
    accent's fit, the fitted speaking rate (words per minute in espeak-ng's terms) and the variant of
    :data:`TIMING_VARIANTS` whose stress timing fitted best ("" for espeak-ng's default)."""

    accent: str | None
    score: float
    scores: dict[str, float] = field(default_factory=dict)
    rate: int | None = None
    variant: str | None = None


def accents() -> list[str]:
    """The English accents espeak-ng gives on this machine (the names the speech datasets use)."""
    return sorted(espeak_accents())


def check_accent(name: str) -> str:
    """``name`` if it is an accent of :func:`accents`, else a typed error naming them."""
    known = accents()
    if name not in known:
        raise InvalidArgumentError(f"unknown accent {name!r}", f"use one of: {', '.join(known)}")
    return name


def timing_of_voice(name: str) -> tuple[str | None, str | None]:
    """The accent and variant a built-in voice's name carries (``en-029+f2`` -> ``("en-029", "f2")``), or
    ``(None, None)`` (a flite voice, a name of no accent)."""
    head, _, variant = name.split(":", 1)[-1].partition("+")
    return (head, variant or None) if head in accents() else (None, None)


def timing_voice(accent: str, variant: str | None = None) -> str:
    """The espeak-ng voice that times speech in ``accent`` (its voice file: the name may also match an mbrola voice)
    and, given, a variant's stress timing."""
    file = espeak_accents()[check_accent(accent)]
    return f"{file}+{variant}" if variant else file


def _log_envelope(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """The smoothed log loudness envelope (the alignment's RMS envelope, ``_HOP_S`` frames)."""
    return uniform_filter1d(np.log(envelope(wav, max(1, int(_HOP_S * sample_rate)))), _SMOOTH)


def _fit(a: np.ndarray, b: np.ndarray) -> float:
    """The best Pearson correlation of two envelopes over offsets of up to ``_LAG`` frames."""
    best = -1.0
    for k in range(-_LAG, _LAG + 1):
        x, y = (a[k:], b) if k >= 0 else (a, b[-k:])
        n = min(len(x), len(y))
        if n < 8:
            continue
        x, y = x[:n] - x[:n].mean(), y[:n] - y[:n].mean()
        best = max(best, float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum() + 1e-12)))
    return best


def _spoken(text: str, voice: str, rate: int, sample_rate: int) -> np.ndarray:
    """espeak-ng speaking ``text``, trimmed as the dataset builder trims its clips, at ``sample_rate``."""
    audio, sr, _, _ = espeak_timings(text, voice, rate)
    wav = resample(audio, sr, sample_rate) if sr != sample_rate else audio
    a, b = trim_bounds(wav, sample_rate, pad_s=0.0)
    return wav[a:b]


def detect_accent(wav: np.ndarray, sample_rate: int, text: str) -> AccentMatch:
    """A recording ``wav [N]`` (mono float at ``sample_rate``) that says ``text`` -> its accent's :class:`AccentMatch`
    (``accent`` None when no accent fits)."""
    text = (text or "").strip()
    if not re.search(r"\w", text):
        raise InvalidArgumentError("the voice prompt's transcript is empty",
                                   "give the words the recording says (e.g. --prompt-text \"...\"), or leave it out")
    wav = np.asarray(wav, dtype=np.float32)
    a, b = trim_bounds(wav, sample_rate, pad_s=0.0)  # both sides cut alike: the fit allows only a small offset
    wav = wav[a:b]
    if len(wav) < 0.5 * sample_rate:
        raise InvalidArgumentError(f"the voice prompt holds {len(wav) / sample_rate:.2f} s of sound, too little to "
                                   "tell its accent", "give a recording of at least 1.5 s")
    target = _log_envelope(wav, sample_rate)
    scores, fitted = {}, {}
    for name, file in sorted(espeak_accents().items()):
        best, best_fit = -1.0, (None, None)
        for variant in TIMING_VARIANTS:
            voice = f"{file}+{variant}" if variant else file
            rate = 170  # fitted to the recording's length twice (espeak's length is near, not exactly, 1/rate)
            for _ in range(2):
                spoken = _spoken(text, voice, rate, sample_rate)
                rate = int(np.clip(round(rate * len(spoken) / len(wav)), *_RATES))
            for r in (rate - 1, rate, rate + 1):
                fit = _fit(_log_envelope(_spoken(text, voice, r, sample_rate), sample_rate), target)
                if fit > best:
                    best, best_fit = fit, (r, variant)
        scores[name], fitted[name] = round(best, 4), best_fit
    top = max(scores, key=scores.get)
    if scores[top] < MIN_MATCH:
        return AccentMatch(None, scores[top], scores)
    return AccentMatch(top, scores[top], scores, *fitted[top])
