"""Intelligibility: CER and WER from a real offline recogniser, PocketSphinx (PyPI ``pocketsphinx``, whose wheel
ships a US-English acoustic model, dictionary and language model).

Both sides are normalised before scoring (:func:`normalize_text`): lower case, numbers spelled out, ``&`` and ``%``
as words, punctuation dropped (apostrophes inside words kept), hyphens as spaces. PocketSphinx is a small 2010s
recogniser: it reads clear speech (flite, espeak-ng's Klatt voices) well and espeak-ng's default formant voices
badly, so a CER means something only beside the engine's own speech under the same recogniser (the floor that
``tokenwave eval tts`` always reports).
"""
from __future__ import annotations

import re

import numpy as np

from tokenwave.audio.resample import resample
from tokenwave.errors import TokenwaveError
from tokenwave.eval.fidelity import mono

ASR_RATE = 16_000
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
         "seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINAL = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
            "twelve": "twelfth"}


def number_words(n: int) -> str:
    """``1984 -> "one thousand nine hundred eighty four"`` (non-negative integers)."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for value, name in _SCALES:
        if n >= value:
            rest = n % value
            return f"{number_words(n // value)} {name}" + ("" if rest == 0 else " " + number_words(rest))
    raise AssertionError(n)


def _ordinal(words: str) -> str:
    head, _, last = words.rpartition(" ")
    last = _ORDINAL.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return f"{head} {last}".strip()


def _spell_number(m: re.Match) -> str:
    digits, frac, suffix = m.group(1).replace(",", ""), m.group(2), (m.group(3) or "").lower()
    words = number_words(int(digits)) if len(digits) < 13 else " ".join(_ONES[int(d)] for d in digits)
    if suffix in ("st", "nd", "rd", "th"):
        words = _ordinal(words)
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return f" {words} "


def normalize_text(text: str) -> str:
    """Lower case, numbers as words (``3.5 -> three point five``, ``21st -> twenty first``), ``&``/``%`` as words,
    punctuation removed except apostrophes inside words, hyphens and slashes as spaces, single spaces."""
    t = text.lower().replace("&", " and ").replace("%", " percent ")
    t = re.sub(r"(\d[\d,]*\d|\d)(?:\.(\d+))?(st|nd|rd|th)?\b", _spell_number, t)
    t = re.sub(r"[-/_]", " ", t)
    t = re.sub(r"[^\w\s']", " ", t)
    t = re.sub(r"(?<!\w)'|'(?!\w)", " ", t)
    return " ".join(t.split())


def edit_distance(ref: list, hyp: list) -> int:
    """Levenshtein distance between two sequences (substitutions, insertions, deletions all cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def cer(ref: str, hyp: str) -> float:
    """Character error rate of the normalised texts (spaces count as characters); can exceed 1."""
    r, h = normalize_text(ref), normalize_text(hyp)
    if not r:
        return 0.0 if not h else 1.0
    return edit_distance(list(r), list(h)) / len(r)


def wer(ref: str, hyp: str) -> float:
    """Word error rate of the normalised texts; can exceed 1."""
    r, h = normalize_text(ref).split(), normalize_text(hyp).split()
    if not r:
        return 0.0 if not h else 1.0
    return edit_distance(r, h) / len(r)


class MissingRecognizerError(TokenwaveError):
    def __init__(self) -> None:
        super().__init__("the offline recogniser (Python package pocketsphinx) is not installed",
                         "run `pip install pocketsphinx` (or `pip install -e .[eval]`)")


def _decoder():
    """A fresh decoder per utterance: PocketSphinx carries state from one utterance into the next (even with
    per-utterance CMN), so a reused decoder would make a transcript depend on what was decoded before it."""
    try:
        from pocketsphinx import Decoder  # lazy: optional backend (pocketsphinx, the `eval` extra)
    except ImportError as err:
        raise MissingRecognizerError() from err
    return Decoder(loglevel="ERROR", cmn="batch")


def transcribe(wav: np.ndarray, sr: int) -> str:
    """What PocketSphinx hears in a mono waveform at ``sr`` Hz (resampled to 16 kHz), lower case, no punctuation."""
    x = mono(wav)
    x = resample(x, sr, ASR_RATE) if sr != ASR_RATE else x
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    dec = _decoder()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr if hyp is not None else ""
