"""The runtime speech front-end: text -> phonemes, phone timing of new text (espeak-ng), the accent of a voice
prompt, the loudness envelope and silence cut of speech. Inference and the speech dataset builders share it."""
from tokenwave.speech.accent import (
    AccentMatch,
    accents,
    check_accent,
    detect_accent,
    timing_of_voice,
    timing_voice,
)
from tokenwave.speech.envelope import envelope, trim_bounds
from tokenwave.speech.espeak import SIL, espeak_accents, espeak_timings
from tokenwave.speech.phonemes import phonemize
from tokenwave.speech.timing import REFERENCE_RATE, REFERENCE_VOICE, frame_phones, shifted_timings, text_timings

__all__ = [
    "REFERENCE_RATE",
    "REFERENCE_VOICE",
    "SIL",
    "AccentMatch",
    "accents",
    "check_accent",
    "detect_accent",
    "envelope",
    "espeak_accents",
    "espeak_timings",
    "frame_phones",
    "phonemize",
    "shifted_timings",
    "text_timings",
    "timing_of_voice",
    "timing_voice",
    "trim_bounds",
]
