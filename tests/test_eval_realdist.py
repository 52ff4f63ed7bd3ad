"""Distance to real recordings (tokenwave.eval.realdist) on a tiny dataset with a stub embedding and a stub task."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from tokenwave.errors import InvalidArgumentError
from tokenwave.eval.frechet import frechet_distance
from tokenwave.eval.realdist import (
    distance_to_real,
    embed_clips,
    embed_rows,
    real_halves,
)

SR = 8000


def stub_embed(wav: np.ndarray, sr: int) -> np.ndarray:
    """Mean, RMS and the level of a few frequency bands: a 6-d embedding that moves with what a clip sounds like."""
    spec = np.abs(np.fft.rfft(wav, 256 * (len(wav) // 256 or 1)))
    bands = [b.mean() for b in np.array_split(spec, 4)]
    return np.array([wav.mean(), np.sqrt(np.mean(wav ** 2)), *bands])


def tone(freq: float, seed: int, seconds: float = 1.0, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(len(t))).astype(np.float32)


class StubTask:
    """A task whose clip for a prompt is a tone (its frequency from the prompt) plus seeded noise; ``shift`` moves
    every tone up, as a worse generator would."""

    sample_rate = SR

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift

    def generate_row(self, row: dict, dataset, seed: int = 0, generator: str | None = None) -> np.ndarray:
        return tone(float(row["caption"].split()[0]) + self.shift, seed, row["duration"])


@pytest.fixture
def real_data(tmp_path):
    """A real dataset of 12 test clips from 6 files: tones at 300..800 Hz with noise."""
    (tmp_path / "audio").mkdir()
    rows = []
    for i in range(12):
        freq = 300 + 100 * (i % 6)
        path = f"audio/c{i:02d}.wav"
        sf.write(tmp_path / path, tone(freq, 100 + i), SR)
        rows.append({"id": f"c{i:02d}", "path": path, "duration": 1.0, "split": "test", "domain": "sfx",
                     "package": "p", "source": f"f{i % 6}.ogg", "caption": f"{freq} hz tone"})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


PROMPTS = [f"{300 + 100 * (i % 6)} hz" for i in range(12)]


def test_a_set_against_itself_is_zero_and_a_shifted_set_is_farther(real_data):
    rows = [json.loads(line) for line in (real_data / "manifest.jsonl").read_text().splitlines()]
    ref = embed_rows(real_data, rows, stub_embed, SR)
    assert ref.shape == (12, 6)
    assert frechet_distance(ref, ref) < 1e-6 * frechet_distance(ref, ref + 1.0)  # 0 up to rounding
    near = distance_to_real(StubTask(), real_data, PROMPTS, list(range(12)), stub_embed, seconds=1.0)
    far = distance_to_real(StubTask(shift=1500.0), real_data, PROMPTS, list(range(12)), stub_embed, seconds=1.0)
    assert near["clips"] == far["clips"] == 12 and near["real_clips"] == 12
    assert near["embeddings"].shape == (12, 6)
    assert far["fd"] > 5 * near["fd"] > 0


def test_same_seeds_same_distance_other_seeds_differ(real_data):
    a = distance_to_real(StubTask(), real_data, PROMPTS, list(range(12)), stub_embed, seconds=1.0)
    b = distance_to_real(StubTask(), real_data, PROMPTS, list(range(12)), stub_embed, seconds=1.0)
    c = distance_to_real(StubTask(), real_data, PROMPTS, list(range(50, 62)), stub_embed, seconds=1.0)
    assert a["fd"] == b["fd"]
    np.testing.assert_array_equal(a["embeddings"], b["embeddings"])
    assert c["fd"] != a["fd"]


def test_precomputed_reference_gives_the_same_distance(real_data):
    rows = [json.loads(line) for line in (real_data / "manifest.jsonl").read_text().splitlines()]
    ref = embed_rows(real_data, rows, stub_embed, SR, seconds=0.5)
    a = distance_to_real(StubTask(), real_data, PROMPTS, list(range(12)), stub_embed, seconds=0.5, reference=ref)
    b = distance_to_real(StubTask(), real_data, PROMPTS, list(range(12)), stub_embed, seconds=0.5)
    assert a["fd"] == pytest.approx(b["fd"])
    assert all(len(w) == SR // 2 for w in a["wavs"])  # rendered for 0.5 s, judged on 0.5 s
    assert embed_clips(a["wavs"], SR, stub_embed, 0.5).tolist() == a["embeddings"].tolist()


def test_halves_hold_whole_files_and_follow_the_seed(real_data):
    rows = [json.loads(line) for line in (real_data / "manifest.jsonl").read_text().splitlines()]
    a, b = real_halves(rows, seed=0)
    assert len(a) + len(b) == 12 and not {r["source"] for r in a} & {r["source"] for r in b}
    assert (a, b) == real_halves(rows, seed=0)
    small_a, small_b = real_halves(rows, seed=0, per_half=2)
    assert len(small_a) == len(small_b) == 2 and {r["id"] for r in small_a} <= {r["id"] for r in a}
    with pytest.raises(InvalidArgumentError, match="at least 2"):
        real_halves([r for r in rows if r["source"] == "f0.ogg"])


def test_mismatched_prompts_and_seeds_are_refused(real_data):
    with pytest.raises(InvalidArgumentError, match="one seed per prompt"):
        distance_to_real(StubTask(), real_data, PROMPTS, [0, 1], stub_embed)
