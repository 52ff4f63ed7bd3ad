"""Known answers for the fidelity metrics and the Opus baseline (speech rendered with espeak-ng; a few seconds)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tokenwave.audio import load_audio
from tokenwave.errors import MissingSystemPackageError
from tokenwave.eval import fidelity as F
from tokenwave.eval import opus

SR = 24000
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs the Debian package espeak-ng")
needs_opus = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or " libopus " not in subprocess.run(
        ["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True).stdout,
    reason="needs ffmpeg with libopus")


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs the Debian package espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "The birch canoe slid on the smooth planks, "
                    "and the boy glued the sheet to the dark blue background."], check=True)
    wav, _ = load_audio(path, SR)
    return wav


def with_noise(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x)).astype(np.float32)
    noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def test_align_trims_to_the_shorter_and_checks_shapes():
    a, b = F.align(np.ones(10), np.ones((1, 1, 7)))
    assert a.shape == b.shape == (7,) and a.dtype == np.float32
    with pytest.raises(Exception, match="mono"):
        F.align(np.ones((2, 10)), np.ones(10))


def test_identical_signals_are_perfect_on_noise():
    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1
    assert F.mel_distance(x, x, SR) == 0.0
    assert F.stft_distance(x, x) == pytest.approx(0.0, abs=1e-5)
    assert F.si_sdr(x, x) > 60
    out = F.fidelity(x, x, SR, speech=False)
    assert set(out) == {"mel_distance", "stft_distance", "si_sdr"}


def test_si_sdr_of_noise_at_10_db(speech):
    assert abs(F.si_sdr(speech, with_noise(speech, 10.0)) - 10.0) < 0.5
    assert F.si_sdr(speech, 0.3 * speech) > 60  # scale-invariant


@needs_espeak
def test_identical_speech_scores_top_pesq_and_stoi(speech):
    out = F.fidelity(speech, speech, SR, speech=True)
    assert out["mel_distance"] == 0.0 and out["si_sdr"] > 60
    assert out["pesq_wb"] >= 4.4 and "pesq_wb_error" not in out
    assert out["stoi"] == pytest.approx(1.0, abs=1e-3)


@needs_espeak
def test_more_noise_is_monotonically_worse(speech):
    scores = [F.fidelity(speech, with_noise(speech, snr), SR, speech=True) for snr in (30.0, 15.0, 5.0, -5.0)]
    mel = [s["mel_distance"] for s in scores]
    pesq = [s["pesq_wb"] for s in scores]
    stoi = [s["stoi"] for s in scores]
    sdr = [s["si_sdr"] for s in scores]
    assert mel == sorted(mel) and len(set(mel)) == 4
    assert pesq == sorted(pesq, reverse=True) and len(set(pesq)) == 4
    assert stoi == sorted(stoi, reverse=True) and len(set(stoi)) == 4
    assert sdr == sorted(sdr, reverse=True)


def test_pesq_on_silence_returns_none_with_a_reason():
    silent = np.zeros(SR * 2, dtype=np.float32)
    res = F.pesq_wb(silent, silent, SR)
    assert res.value is None and res.reason
    out = F.fidelity(silent, silent + 1e-4, SR, speech=True)
    short = np.random.default_rng(3).standard_normal(SR // 10).astype(np.float32)
    res = F.pesq_wb(short, short, SR)  # PESQ itself refuses under 0.25 s
    assert res.value is None and "short" in res.reason.lower() and "b'" not in res.reason
    assert out["pesq_wb"] is None and out["pesq_wb_error"]


@needs_opus
def test_opus_is_aligned_and_keeps_the_length():
    x = np.random.default_rng(2).standard_normal(SR * 2).astype(np.float32) * 0.1
    y = opus.opus_roundtrip(x[:-123], SR, 64)
    assert y.shape == (len(x) - 123,) and y.dtype == np.float32
    core = x[1000:-1123]
    lag = int(np.argmax(np.correlate(y, core, "valid"))) - 1000
    assert lag == 0
    assert F.si_sdr(x[:-123], y) > 5


@needs_opus
def test_opus_higher_bitrate_is_closer(speech):
    stats: dict = {}
    mels = []
    for kbps in (6, 12, 32):
        y = opus.opus_roundtrip(speech, SR, kbps, stats)
        assert len(y) == len(speech)
        assert stats["payload_kbps"] == pytest.approx(kbps, rel=0.25)
        mels.append(F.mel_distance(speech, y, SR))
    assert mels[0] > mels[1] > mels[2]


def test_opus_without_ffmpeg_names_the_package(monkeypatch):
    opus._ffmpeg_with_libopus.cache_clear()
    monkeypatch.setattr(opus.shutil, "which", lambda _name: None)
    try:
        with pytest.raises(MissingSystemPackageError, match="ffmpeg"):
            opus.opus_roundtrip(np.zeros(100, dtype=np.float32), SR, 6)
    finally:
        opus._ffmpeg_with_libopus.cache_clear()
