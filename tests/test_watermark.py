import numpy as np
import pytest

from tokenwave.errors import InvalidArgumentError
from tokenwave.eval.fidelity import si_sdr
from tokenwave.safety.watermark import WatermarkStream, detect_watermark, embed_watermark

SR = 24000


def program(seed: int, seconds: float = 6.0, sr: int = SR) -> np.ndarray:
    """Speech-like test audio: a harmonic voice with a moving pitch and syllable envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = rng.uniform(90, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 30) if k * f0.max() < sr / 2)
    env = np.clip(np.sin(2 * np.pi * rng.uniform(2, 4) * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x = voice * env + 0.02 * rng.standard_normal(len(t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_marked_audio_is_detected_and_unmarked_is_not():
    x = program(0)
    y = embed_watermark(x, SR)
    assert y.shape == x.shape and y.dtype == np.float32
    assert si_sdr(x, y) > 18.0  # a ±1 dB band-energy pattern: a small change
    marked, clean = detect_watermark(y, SR), detect_watermark(x, SR)
    assert marked.present and marked.p_value < 1e-6 and marked.score > 6
    assert not clean.present and clean.p_value > 0.01


def test_wrong_key_does_not_detect():
    y = embed_watermark(program(1), SR, key="alice")
    assert detect_watermark(y, SR, key="alice").present
    assert not detect_watermark(y, SR, key="bob").present


def test_zero_strength_is_the_identity():
    x = program(2, 2.0)
    np.testing.assert_allclose(embed_watermark(x, SR, alpha_db=0.0), x, atol=1e-6)


@pytest.mark.parametrize("attack", ["gain_up", "gain_down", "crop", "resample16k", "noise20db"])
def test_survives_edits(attack):
    from tokenwave.audio import resample

    y = embed_watermark(program(3), SR)
    rng = np.random.default_rng(0)
    z = {"gain_up": lambda v: v * 2.0, "gain_down": lambda v: v * 0.5, "crop": lambda v: v[12345: 12345 + 3 * SR],
         "resample16k": lambda v: resample(resample(v, SR, 16000), 16000, SR),
         "noise20db": lambda v: v + rng.standard_normal(len(v)).astype(np.float32) * np.sqrt(np.mean(v ** 2) / 100)}[attack](y)
    assert detect_watermark(z, SR).present


def test_survives_opus_32kbps():
    from tokenwave.eval.opus import opus_roundtrip

    y = embed_watermark(program(4), SR)
    assert detect_watermark(opus_roundtrip(y, SR, 32), SR).present


def test_detects_at_other_rates():
    x16 = program(5, sr=16000)
    assert detect_watermark(embed_watermark(x16, 16000), 16000).present
    x48 = program(5, sr=48000)
    assert detect_watermark(embed_watermark(x48, 48000), 48000).present


def test_p_values_of_unmarked_audio_are_calibrated():
    results = [detect_watermark(program(100 + i, 3.0), SR) for i in range(12)]
    assert not any(r.present for r in results)
    assert all(r.p_value > 1e-3 for r in results)


def test_streaming_equals_offline():
    x = program(6, 2.0)
    stream = WatermarkStream(SR)
    rng = np.random.default_rng(0)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 2000))
        parts.append(stream.push(x[i: i + n]))
        i += n
    parts.append(stream.flush())
    np.testing.assert_array_equal(np.concatenate(parts), embed_watermark(x, SR))


def test_bad_inputs_are_refused():
    with pytest.raises(InvalidArgumentError, match="too short"):
        detect_watermark(np.zeros(SR // 2, np.float32), SR)
    with pytest.raises(InvalidArgumentError, match="mono"):
        embed_watermark(np.zeros((2, SR), np.float32), SR)
    with pytest.raises(InvalidArgumentError, match="rate"):
        embed_watermark(np.zeros(8000, np.float32), 8000)
    assert not detect_watermark(np.zeros(2 * SR, np.float32), SR).present


def test_cli_detect(tmp_path):
    import json

    from typer.testing import CliRunner

    from tokenwave.audio import save_audio
    from tokenwave.cli import app

    x = program(7, 4.0)
    save_audio(tmp_path / "marked.wav", embed_watermark(x, SR), SR)
    save_audio(tmp_path / "clean.wav", x, SR)
    runner = CliRunner()
    marked = json.loads(runner.invoke(app, ["detect", str(tmp_path / "marked.wav")]).output)
    clean = json.loads(runner.invoke(app, ["detect", str(tmp_path / "clean.wav")]).output)
    assert marked["present"] and marked["p_value"] < 1e-3 and not clean["present"]


def sox(x: np.ndarray, *effect: str) -> np.ndarray:
    """``x`` at SR through a sox effect (``speed 1.02``: pitch and tempo; ``tempo 1.05``: WSOLA, pitch kept)."""
    import shutil
    import subprocess

    if shutil.which("sox") is None:
        pytest.skip("sox is not installed")
    fmt = ["-t", "f32", "-r", str(SR), "-c", "1"]
    out = subprocess.run(["sox", *fmt, "-", *fmt, "-", *effect, "rate", str(SR)], input=x.astype(np.float32).tobytes(),
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, dtype=np.float32).copy()


@pytest.mark.parametrize("effect", [("speed", "1.02"), ("speed", "0.98"), ("tempo", "1.05"), ("tempo", "0.95")])
def test_survives_speed_and_tempo_changes(effect):
    """A 2 % speed change (resampled: pitch moves too) and a 5 % tempo change (pitch kept) keep the mark: the
    detector searches a small grid of time scales; unmarked audio stays unmarked under the same search."""
    x = program(8, 8.0)
    changed = sox(embed_watermark(x, SR), *effect)
    assert abs(len(changed) / len(x) - 1 / float(effect[1])) < 0.01
    assert detect_watermark(changed, SR).present
    assert not detect_watermark(sox(x, *effect), SR).present
