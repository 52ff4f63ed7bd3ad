"""Text -> phonemes: en-us IPA with stress marks and punctuation, from espeak-ng through phonemizer (the form the
speech datasets' ``phonemes`` field and the TTS model's phoneme conditioning use)."""
from __future__ import annotations

import functools
import logging
import re
import threading


@functools.lru_cache(maxsize=1)
def _phonemizer():
    from phonemizer.backend import EspeakBackend  # lazy: optional backend (phonemizer, the `data` extra)

    quiet = logging.getLogger("tokenwave.phonemizer")
    quiet.setLevel(logging.ERROR)
    return EspeakBackend("en-us", preserve_punctuation=True, with_stress=True, logger=quiet)


_PHONEMIZE_LOCK = threading.Lock()


def phonemize(texts: list[str]) -> list[str]:
    """``texts`` -> the en-us IPA of each (with stress marks and punctuation), in one batched call. The espeak
    library keeps global state, so calls from several threads (a server's concurrent requests) take turns."""
    texts = list(texts)
    # a text without words (punctuation only) has no phonemes; phonemizer would drop it from its output and shift
    # every later text onto the wrong one, so only texts with words go to it
    spoken = [i for i, t in enumerate(texts) if re.search(r"\w", t)]
    with _PHONEMIZE_LOCK:
        out = _phonemizer().phonemize([texts[i] for i in spoken], strip=True) if spoken else []
    if len(out) != len(spoken):
        raise RuntimeError(f"phonemizer returned {len(out)} results for {len(spoken)} texts")
    result = [""] * len(texts)
    for i, p in zip(spoken, out):
        result[i] = " ".join(p.split())
    return result
