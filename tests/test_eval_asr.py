"""The offline recogniser reads a clearly spoken engine sentence; noise raises its error and lowers DNSMOS."""
import shutil
import subprocess

import numpy as np
import pytest

from tokenwave.audio import load_audio
from tokenwave.eval.asr import cer, transcribe, wer
from tokenwave.eval.mos import dnsmos

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian package) not installed")
SENTENCE = "Please call me when you get to the office."


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    path = tmp_path_factory.mktemp("asr") / "s.wav"
    # espeak-ng's Klatt voice at a calm rate: the clearest of its voices for PocketSphinx's acoustic model
    subprocess.run(["espeak-ng", "-v", "en-us+klatt", "-s", "140", "-w", str(path), SENTENCE], check=True)
    wav, sr = load_audio(path, 24000)
    return wav, sr


def noisy(wav, snr_db):
    n = np.random.default_rng(0).standard_normal(len(wav)).astype(np.float32)
    n *= np.sqrt(np.mean(wav ** 2) / np.mean(n ** 2) / 10 ** (snr_db / 10))
    return np.clip(wav + n, -1, 1)


def test_recogniser_reads_a_clear_engine_sentence(spoken):
    wav, sr = spoken
    hyp = transcribe(wav, sr)
    assert cer(SENTENCE, hyp) < 0.1, hyp
    assert wer(SENTENCE, hyp) < 0.25, hyp
    assert transcribe(wav, sr) == hyp  # deterministic


def test_noise_worsens_cer_and_dnsmos(spoken):
    wav, sr = spoken
    clean_cer, loud_noise_cer = cer(SENTENCE, transcribe(wav, sr)), cer(SENTENCE, transcribe(noisy(wav, -5), sr))
    assert loud_noise_cer > clean_cer + 0.2
    scores = [dnsmos(w, sr) for w in (wav, noisy(wav, 20), noisy(wav, 0))]
    assert set(scores[0]) == {"ovrl", "sig", "bak", "p808"}
    assert all(1.0 <= v <= 5.0 for v in scores[0].values())
    ovrl = [s["ovrl"] for s in scores]
    bak = [s["bak"] for s in scores]
    assert ovrl == sorted(ovrl, reverse=True) and bak == sorted(bak, reverse=True)
    assert dnsmos(wav, sr) == scores[0]  # identical input, identical score
