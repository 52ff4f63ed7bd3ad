"""Phone timing of new text at inference: which phone sounds when, and which phone each codec frame holds.

espeak-ng's library times the text in a reference voice (or a prompt's accent and stress timing): a rule-based
duration model, so the TTS model is told which phone each frame holds (``tokenwave.conditioning.speech``). The
speech datasets' alignments (:mod:`tokenwave.data.align`) come in the same form, from the engines that spoke them.

Alignment: ``{"phones": [...], "starts": [...], "end": s}`` in seconds from the clip's first sample; a pause is
``SIL``.
"""
from __future__ import annotations

import numpy as np

from tokenwave.speech.accent import timing_voice
from tokenwave.speech.espeak import SIL, espeak_timings

REFERENCE_VOICE = "en-us"   # the voice whose timings new text gets at inference
REFERENCE_RATE = 170        # words per minute: the middle of the training rates (140-200)


def shifted_timings(phones: list[str], starts: list[float], off: float, end: float) -> dict:
    """``phones`` starting at ``starts`` (seconds) -> the alignment of a clip that starts ``off`` seconds in and lasts
    ``end`` seconds: timings moved ``off`` earlier, phones past ``end`` dropped, a leading pause added if needed."""
    out_p, out_s = [], []
    for p, s in zip(phones, starts, strict=True):
        s = max(0.0, s - off)
        if s >= end:
            break
        if out_p and out_s[-1] == s:  # zero-length: the later phone wins the instant
            out_p.pop()
            out_s.pop()
        out_p.append(p)
        out_s.append(round(s, 5))
    if not out_p or out_s[0] > 0:
        out_p.insert(0, SIL)
        out_s.insert(0, 0.0)
    return {"phones": out_p, "starts": out_s, "end": round(end, 5)}


def text_timings(text: str, speed: float = 1.0, sample_rate: int = 24_000, pad_s: float = 0.05,
                 accent: str | None = None, variant: str | None = None) -> dict:
    """The alignment new text gets at inference: espeak-ng's ``accent`` (an English accent of the speech datasets;
    None: the reference voice), with a ``variant``'s stress timing if given, at the reference rate x ``speed``, cut
    like the training clips (``pad_s`` before the first phone and after the last). The cut comes from the phone
    events alone, not the audio (espeak-ng's noise sources differ from run to run), so the same text always gets
    the same timing."""
    voice = REFERENCE_VOICE if accent is None else timing_voice(accent, variant)
    audio, sr, phones, starts = espeak_timings(text, voice, int(round(REFERENCE_RATE * speed)))
    spoken = [i for i, p in enumerate(phones) if p != SIL]
    total = len(audio) / sr
    if not spoken:
        return shifted_timings(phones, starts, 0.0, total)
    last = spoken[-1] + 1
    stop = starts[last] if last < len(starts) else total
    off = max(0.0, starts[spoken[0]] - pad_s)
    return shifted_timings(phones, starts, off, min(total, stop + pad_s) - off)


def frame_phones(alignment: dict, frames: int, frame_rate: float = 75.0) -> tuple[list[str], list[int], list[int]]:
    """Per codec frame: the phone sounding at its centre, the frame's index within that phone and the frames left
    in it (both from 0)."""
    starts = np.asarray(alignment["starts"], dtype=np.float64)
    centres = (np.arange(frames) + 0.5) / frame_rate
    idx = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(starts) - 1)
    first = np.searchsorted(idx, idx, side="left")  # idx is non-decreasing: a phone's first frame
    last = np.searchsorted(idx, idx, side="right") - 1
    frames_idx = np.arange(frames)
    return [alignment["phones"][i] for i in idx], (frames_idx - first).tolist(), (last - frames_idx).tolist()


__all__ = ["REFERENCE_RATE", "REFERENCE_VOICE", "SIL", "frame_phones", "shifted_timings", "text_timings"]
