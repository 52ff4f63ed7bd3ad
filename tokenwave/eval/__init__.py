"""Evaluation. ``tokenwave.eval.fidelity``: codec fidelity metrics (mel/STFT distance, SI-SDR, PESQ-wb, STOI) and
``fidelity(ref, est, sr, speech)`` computing them all; ``tokenwave.eval.opus``: the Opus round-trip baseline.

The rest load on demand (each needs the ``eval`` extra): ``judges`` (third-party judges from wheels, the ``judges``
extra: Whisper CER/WER, Resemblyzer speaker similarity, the aisfx embedding's Fréchet distance), ``peers`` (Piper and
espeak-ng, the TTS peers), ``asr`` (PocketSphinx CER/WER, a second opinion), ``mos`` (DNSMOS),
``speaker`` (speaker encoder, EER), ``tagger`` (tag accuracy, KL, FAD), ``clap`` (text-audio score, recall@k),
``melody`` (chroma cosine), ``suite`` + ``report`` (``tokenwave eval``), ``listen`` (the A/B listening page).
The eval models are trained by ``tokenwave train speaker|tagger|clap`` and shipped in ``checkpoints/eval/``."""
from __future__ import annotations

import importlib

_LAZY = {"PesqResult": "fidelity", "align": "fidelity", "mel_distance": "fidelity", "pesq_wb": "fidelity",
         "si_sdr": "fidelity", "stft_distance": "fidelity", "stoi": "fidelity", "opus_roundtrip": "opus"}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    """Imported on first use, so ``tokenwave --help`` (which registers the eval commands) stays fast."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"tokenwave.eval.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tokenwave.eval' has no attribute {name!r}")
