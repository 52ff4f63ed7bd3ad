"""Evaluation. ``tokenwave.eval.fidelity``: codec fidelity metrics (mel/STFT distance, SI-SDR, PESQ-wb, STOI) and
``fidelity(ref, est, sr, speech)`` computing them all; ``tokenwave.eval.opus``: the Opus round-trip baseline.

The rest load on demand (each needs the ``eval`` extra): ``asr`` (PocketSphinx CER/WER), ``mos`` (DNSMOS),
``speaker`` (speaker encoder, EER), ``tagger`` (tag accuracy, KL, FAD), ``clap`` (text-audio score, recall@k),
``melody`` (chroma cosine), ``suite`` + ``report`` (``tokenwave eval``), ``listen`` (the A/B listening page).
The eval models are trained by ``tokenwave train speaker|tagger|clap`` and shipped in ``checkpoints/eval/``."""
from tokenwave.eval.fidelity import PesqResult, align, mel_distance, pesq_wb, si_sdr, stft_distance, stoi
from tokenwave.eval.opus import opus_roundtrip

__all__ = ["PesqResult", "align", "mel_distance", "opus_roundtrip", "pesq_wb", "si_sdr", "stft_distance", "stoi"]
