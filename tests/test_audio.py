import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from tokenwave.audio import crossfade, fade_curves, integrated_loudness, load_audio, loudness_normalize, overlap_add, resample, save_audio
from tokenwave.errors import (AudioNotFoundError, CorruptAudioError, EmptyAudioError, InvalidArgumentError, SampleRateError,
                              UnsupportedAudioFormatError)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_save_load_roundtrip_formats(tmp_path, make_tone, ext):
    wav = make_tone(440, 1.0, 24000)
    path = save_audio(tmp_path / f"a.{ext}", wav, 24000)
    back, sr = load_audio(path)
    assert sr == 24000 and back.dtype == np.float32 and back.ndim == 1
    assert abs(len(back) - len(wav)) <= 0  # lossless length for all three
    tol = 1e-3 if ext != "ogg" else 0.1
    assert np.max(np.abs(back - wav)) < tol


def test_mp3_loads_and_resamples(tmp_path, make_tone):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    src = save_audio(tmp_path / "a.wav", make_tone(1000, 1.0, 44100), 44100)
    mp3 = tmp_path / "a.mp3"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), str(mp3)], check=True)
    wav, sr = load_audio(mp3, 24000)
    assert sr == 24000
    assert abs(len(wav) - 24000) < 2400  # mp3 adds encoder padding
    spec = np.abs(np.fft.rfft(wav[2400:-2400]))
    assert abs(np.argmax(spec) * 24000 / len(wav[2400:-2400]) - 1000) < 10


def test_stereo_is_downmixed(tmp_path):
    left = np.full(1000, 0.5, np.float32)
    right = np.full(1000, -0.1, np.float32)
    sf.write(tmp_path / "s.wav", np.stack([left, right], 1), 16000, subtype="FLOAT")
    wav, sr = load_audio(tmp_path / "s.wav")
    np.testing.assert_allclose(wav, 0.2, atol=1e-6)
    both, _ = load_audio(tmp_path / "s.wav", mono=False)
    assert both.shape == (2, 1000)


def test_resample_preserves_frequency_and_length(make_tone):
    wav = make_tone(440, 1.0, 16000)
    out = resample(wav, 16000, 24000)
    assert len(out) == 24000
    freq = np.argmax(np.abs(np.fft.rfft(out))) * 24000 / len(out)
    assert abs(freq - 440) < 2
    with pytest.raises(SampleRateError):
        resample(wav, 0, 24000)


def test_load_errors(tmp_path):
    with pytest.raises(AudioNotFoundError):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        load_audio(tmp_path / "empty.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(CorruptAudioError):
        load_audio(tmp_path / "bad.wav")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedAudioFormatError):
        load_audio(tmp_path / "notes.txt")


def test_truncated_flac_is_corrupt(tmp_path, make_tone):
    path = save_audio(tmp_path / "a.flac", make_tone(440, 2.0), 24000)
    data = path.read_bytes()
    path.write_bytes(data[:40])
    with pytest.raises((CorruptAudioError, EmptyAudioError)):
        load_audio(path)


def test_save_is_atomic_on_failure(tmp_path, make_tone, monkeypatch):
    target = save_audio(tmp_path / "keep.wav", make_tone(440, 0.5), 24000)
    before = target.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(sf, "write", boom)
    with pytest.raises(RuntimeError):
        save_audio(target, make_tone(880, 0.5), 24000)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.wav"]
    with pytest.raises(UnsupportedAudioFormatError):
        save_audio(tmp_path / "x.xyz", make_tone(), 24000)
    with pytest.raises(EmptyAudioError):
        save_audio(tmp_path / "e.wav", np.zeros(0, np.float32), 24000)


def test_loudness_normalize_hits_target(make_tone):
    rng = np.random.default_rng(0)
    wav = (0.05 * rng.standard_normal(48000)).astype(np.float32)
    out = loudness_normalize(wav, 24000, -23.0)
    assert abs(integrated_loudness(out, 24000) - -23.0) < 0.1
    loud = loudness_normalize(make_tone(440, 1.0, amp=0.01), 24000, -3.0, peak=0.9)
    assert np.abs(loud).max() <= 0.9 + 1e-6
    assert np.all(loudness_normalize(np.zeros(100, np.float32), 24000) == 0)
    with pytest.raises(InvalidArgumentError):
        loudness_normalize(wav, 24000, 5.0)


def test_crossfade_is_equal_power_and_continuous(make_tone):
    fo, fi = fade_curves(256)
    np.testing.assert_allclose(fo**2 + fi**2, 1.0, atol=1e-6)
    wav = make_tone(300, 1.0)
    a, b = wav[:12256], wav[12000:]
    joined = crossfade(a, b, 256)
    assert len(joined) == len(wav)
    # two chunks of one continuous tone, crossfaded where they overlap: no step at the boundaries
    assert np.max(np.abs(np.diff(joined))) <= np.max(np.abs(np.diff(wav))) * 1.5
    chunks = [np.ones(1000, np.float32)] * 3
    out = overlap_add(chunks, 100)
    assert len(out) == 3000 - 200
    assert np.all(out > 0.99) and np.all(out < 1.42)
