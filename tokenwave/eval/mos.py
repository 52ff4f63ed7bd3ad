"""MOS prediction for speech: Microsoft's DNSMOS (P.835 SIG/BAK/OVRL and P.808 MOS), whose ONNX models ship inside
the ``speechmos`` wheel and run on onnxruntime. Scores are on the 1-5 MOS scale; clips shorter than DNSMOS's
9.01 s window are tiled by speechmos itself, as in the reference implementation.
"""
from __future__ import annotations

import numpy as np

from tokenwave.audio.resample import resample
from tokenwave.errors import TokenwaveError
from tokenwave.eval.fidelity import mono

DNSMOS_RATE = 16_000


class MissingMosModelError(TokenwaveError):
    def __init__(self, err: ImportError) -> None:
        super().__init__(f"DNSMOS cannot be loaded ({err})",
                         "run `pip install speechmos onnxruntime librosa requests` (or `pip install -e .[eval]`)")


def dnsmos(wav: np.ndarray, sr: int) -> dict[str, float]:
    """DNSMOS of a mono speech waveform at ``sr`` Hz: ``{"ovrl", "sig", "bak", "p808"}`` (1..5, higher is better)."""
    try:
        from speechmos import dnsmos as _dnsmos  # lazy: optional backend (speechmos, the `eval` extra)
    except ImportError as err:
        raise MissingMosModelError(err) from err
    x = mono(wav)
    x = resample(x, sr, DNSMOS_RATE) if sr != DNSMOS_RATE else x
    if not np.any(x):
        x = x + np.float32(1e-6)  # DNSMOS's mel normalises by the maximum; all-zero input would give NaNs
    res = _dnsmos.run(np.clip(x, -1, 1).astype(np.float32), DNSMOS_RATE)
    return {"ovrl": float(res["ovrl_mos"]), "sig": float(res["sig_mos"]), "bak": float(res["bak_mos"]),
            "p808": float(res["p808_mos"])}
