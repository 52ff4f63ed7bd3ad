"""Evaluation. ``tokenwave.eval.fidelity``: codec fidelity metrics (mel/STFT distance, SI-SDR, PESQ-wb, STOI) and
``fidelity(ref, est, sr, speech)`` computing them all; ``tokenwave.eval.opus``: the Opus round-trip baseline."""
from tokenwave.eval.fidelity import PesqResult, align, mel_distance, pesq_wb, si_sdr, stft_distance, stoi
from tokenwave.eval.opus import opus_roundtrip

__all__ = ["PesqResult", "align", "mel_distance", "opus_roundtrip", "pesq_wb", "si_sdr", "stft_distance", "stoi"]
