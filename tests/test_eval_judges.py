"""Third-party judges from wheels: Whisper reads engine speech and not noise, Resemblyzer tells two voices apart,
DNSMOS hears heavy noise, the aisfx embedding's Fréchet distance separates two kinds of sound, basic-pitch's music
embedding hears the notes played; a missing wheel names its install command."""
import importlib.util
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tokenwave.audio import load_audio
from tokenwave.errors import InvalidArgumentError
from tokenwave.eval.frechet import frechet_distance
from tokenwave.eval.judges import (MissingJudgeError, MusicEmbedding, Whisper, identify_speakers, load_music_embedding,
                                   load_resemblyzer, load_sfx_embedding, load_whisper)
from tokenwave.eval.mos import dnsmos

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng (Debian package) not installed")
SR = 16_000
SENTENCE = "The seven brave sailors crossed the stormy sea in a small wooden boat."


def speak(tmp_path, text: str, voice: str = "en-us") -> np.ndarray:
    path = tmp_path / f"{abs(hash((text, voice)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    return load_audio(path, SR)[0]


def noisy(wav: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(wav)).astype(np.float32)
    n *= np.sqrt(np.mean(wav ** 2) / np.mean(n ** 2) / 10 ** (snr_db / 10))
    return np.clip(wav + n, -1, 1)


def test_whisper_reads_engine_speech_and_not_noise(tmp_path):
    pytest.importorskip("faster_whisper")
    judge = load_whisper()
    wav = speak(tmp_path, SENTENCE)
    good = judge.score(wav, SR, SENTENCE)
    assert good["cer"] < 0.2, good
    assert judge.score(wav, SR, SENTENCE) == good  # temperature 0, no sampling: the same transcript every time
    noise = np.random.default_rng(1).standard_normal(3 * SR).astype(np.float32) * 0.2
    bad = judge.score(noise, SR, SENTENCE)
    assert bad["cer"] > 0.8, bad


def test_missing_wheel_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import fails as if the wheel were not installed
    with pytest.raises(MissingJudgeError, match="make venv"):
        Whisper()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingJudgeError, match="basic-pitch.*make venv"):
        MusicEmbedding()


def test_resemblyzer_same_voice_more_similar_than_another(tmp_path):
    pytest.importorskip("resemblyzer")
    judge = load_resemblyzer()
    a = judge.embed(speak(tmp_path, "Please call Stella and ask her to bring these things.", "en-us+m3"), SR)
    b = judge.embed(speak(tmp_path, "We also need a small plastic snake and a big toy frog.", "en-us+m3"), SR)
    c = judge.embed(speak(tmp_path, "We also need a small plastic snake and a big toy frog.", "en-us+f4"), SR)
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-4)
    assert float(a @ b) > float(a @ c) + 0.1
    ident = identify_speakers(np.stack([b, c]), ["m3", "f4"], {"m3": a, "f4": c})
    assert ident["identified"] == 1.0 and ident["hits"] == [True, True] and ident["margin"] > 0


def test_identify_speakers_counts_the_wrong_guess():
    refs = {"x": np.array([1.0, 0.0]), "y": np.array([0.0, 1.0])}
    res = identify_speakers(np.array([[0.9, 0.1], [0.8, 0.2]]), ["x", "y"], refs)
    assert res["hits"] == [True, False] and res["identified"] == 0.5 and res["candidates"] == 2
    with pytest.raises(InvalidArgumentError, match="missing"):
        identify_speakers(np.array([[1.0, 0.0]]), ["z"], refs)


def test_dnsmos_hears_heavy_noise(tmp_path):
    pytest.importorskip("speechmos")
    wav = speak(tmp_path, SENTENCE)
    clean, dirty = dnsmos(wav, SR), dnsmos(noisy(wav, 0.0), SR)
    assert clean["ovrl"] > dirty["ovrl"] + 0.3, (clean, dirty)
    assert clean["bak"] > dirty["bak"] + 0.5, (clean, dirty)


def test_frechet_distance_known_answers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 3))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # two Gaussians with identity covariance: the distance is the squared distance of the means
    b = rng.standard_normal((20000, 3)) + np.array([2.0, 0.0, 0.0])
    c = rng.standard_normal((20000, 3))
    assert frechet_distance(c, b) == pytest.approx(4.0, abs=0.15)
    few = rng.standard_normal((5, 64))  # fewer clips than dimensions: singular covariances stay exact
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(InvalidArgumentError):
        frechet_distance(a[:1], a)


def test_sfx_embedding_frechet_distance_separates_sounds():
    pytest.importorskip("aisfx")
    judge = load_sfx_embedding()
    rng = np.random.default_rng(0)
    t = np.arange(2 * SR) / SR

    def chirp():
        f = rng.uniform(300, 2000)
        return (0.4 * np.sin(2 * np.pi * f * t * (1 + t)) * np.exp(-2 * t)).astype(np.float32)

    def hiss():
        return (rng.standard_normal(len(t)) * rng.uniform(0.05, 0.2)).astype(np.float32)

    tones = np.stack([judge.embed(chirp(), SR) for _ in range(6)])
    tones2 = np.stack([judge.embed(chirp(), SR) for _ in range(6)])
    noise = np.stack([judge.embed(hiss(), SR) for _ in range(6)])
    assert tones.shape == (6, 512)
    assert frechet_distance(tones, tones) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(tones, noise) > 3 * frechet_distance(tones, tones2)


def test_music_embedding_hears_the_notes_played():
    """basic-pitch's network, read with its outputs in their order: a tone's note, onset and contour peak at its key;
    melodies lie closer to other melodies than to noise in its embedding."""
    if importlib.util.find_spec("basic_pitch") is None:
        pytest.skip("the basic-pitch wheel is not installed")
    judge = load_music_embedding()
    sr = 24_000
    t = np.arange(3 * sr) / sr

    def tone(midi: int, start: float = 0.0, dur: float = 3.0) -> np.ndarray:
        f = 440 * 2 ** ((midi - 69) / 12)
        on = (t >= start) & (t < start + dur)
        return (on * sum(0.3 / k * np.sin(2 * np.pi * k * f * t) for k in (1, 2, 3))).astype(np.float32)

    for midi in (57, 69, 76):
        p = judge.posteriors(tone(midi), sr)
        assert p["note"].shape == (p["onset"].shape[0], 88) and p["contour"].shape[1] == 264
        assert abs(p["note"].shape[0] - 3 * sr / 256 * 22_050 / sr) <= 2  # 86 frames a second
        assert p["note"].mean(0).argmax() + 21 == midi
        assert p["onset"].max(0).argmax() + 21 == midi
        assert p["contour"].mean(0).argmax() // 3 + 21 == midi
    rng = np.random.default_rng(0)

    def melody() -> np.ndarray:
        return sum(tone(int(m), s, 0.5) for m, s in zip(rng.integers(60, 72, 6), np.arange(6) * 0.5))

    tunes = np.stack([judge.embed(melody(), sr) for _ in range(8)])
    tunes2 = np.stack([judge.embed(melody(), sr) for _ in range(8)])
    noise = np.stack([judge.embed((rng.standard_normal(len(t)) * 0.1).astype(np.float32), sr) for _ in range(8)])
    assert tunes.shape == (8, 528) and np.array_equal(judge.embed(tone(69), sr), judge.embed(tone(69), sr))
    assert frechet_distance(tunes, noise) > 3 * frechet_distance(tunes, tunes2)
