"""Procedural sound-effects builder: recipes, captions, held-out ranges, determinism, argument checks."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.signal import stft

from tokenwave.audio import load_audio
from tokenwave.data import sfx
from tokenwave.data.manifest import read_manifest
from tokenwave.data.sfx_recipes import RECIPES
from tokenwave.errors import InvalidArgumentError

SR = 24000
FAMILIES = list(sfx.FAMILIES)


def _render(family: str, seed: int = 0, **overrides) -> tuple[dict, np.ndarray]:
    rng = np.random.default_rng([seed, 99])
    params = {**sfx.sample_params(family, rng), "reverb": 0.0, **overrides}
    return params, RECIPES[family](rng, params, SR)


def _frames(wav: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and power spectrogram of the frames that are not near-silent."""
    f, _, z = stft(wav, SR, nperseg=1024)
    p = np.abs(z) ** 2 + 1e-12
    e = p.sum(0)
    return f, p[:, e > e.max() * 1e-3]


def _flatness(wav: np.ndarray) -> float:
    """Median per-frame spectral flatness (1 = white noise, 0 = pure tone)."""
    _, p = _frames(wav)
    return float(np.median(np.exp(np.mean(np.log(p), 0)) / np.mean(p, 0)))


def _peakiness(wav: np.ndarray) -> float:
    """Median per-frame ratio of the strongest bin to the mean bin."""
    _, p = _frames(wav)
    return float(np.median(p.max(0) / p.mean(0)))


def _centroid(wav: np.ndarray) -> float:
    f, p = _frames(wav)
    return float((f[:, None] * p).sum() / p.sum())


def test_registry_is_consistent():
    assert len(FAMILIES) >= 12
    assert set(FAMILIES) == set(RECIPES) == set(sfx.HELD_OUT) == set(sfx.SPACES)
    for fam, h in sfx.HELD_OUT.items():
        p = sfx.SPACES[fam][h["param"]]
        lo, hi = h["range"]
        assert p.lo <= lo < hi <= p.hi and (lo, hi) != (p.lo, p.hi), fam


@pytest.mark.parametrize("family", FAMILIES)
def test_recipe_renders_audio_of_the_requested_length(family):
    for seed in range(3):
        params, wav = _render(family, seed, reverb=0.3 if seed == 2 else 0.0, room=1.2)
        assert wav.dtype == np.float32 and wav.ndim == 1
        assert len(wav) == round(params["duration"] * SR)
        assert sfx.MIN_SECONDS <= params["duration"] <= sfx.MAX_SECONDS
        assert np.all(np.isfinite(wav))
        assert np.abs(wav).max() <= 1.0
        assert np.sqrt(np.mean(wav.astype(np.float64) ** 2)) > 3e-3  # peak is 0.9: crest factor under ~50 dB
    # at the sample rate asked for, too
    params = {**sfx.sample_params(family, np.random.default_rng(0)), "duration": 3.0}
    assert len(RECIPES[family](np.random.default_rng(0), params, 16000)) == 48000


def test_recipes_are_deterministic_given_the_rng():
    for fam in FAMILIES:
        params = sfx.sample_params(fam, np.random.default_rng(1))
        a = RECIPES[fam](np.random.default_rng(7), params, SR)
        b = RECIPES[fam](np.random.default_rng(7), params, SR)
        assert np.array_equal(a, b), fam


def test_families_are_crudely_distinguishable():
    rain = [_render("rain", s, layer="none")[1] for s in range(3)]
    tonal = [_render("siren", s)[1] for s in range(3)] + [_render("bell", s)[1] for s in range(3)]
    assert min(map(_flatness, rain)) > 5 * max(map(_flatness, tonal))
    sirens = [_render("siren", s, distance=0.2)[1] for s in range(3)]
    noisy = [_render("rain", s, layer="none", surface="leaves")[1] for s in range(3)] + [_render("applause", s)[1] for s in range(3)]
    assert min(map(_peakiness, sirens)) > 3 * max(map(_peakiness, noisy))
    # a distant rumble is dark, birdsong is bright
    thunder = [_render("thunder", s, distance=0.95, layer="none")[1] for s in range(3)]
    birds = [_render("birds", s, pitch=4000.0, layer="none")[1] for s in range(3)]
    assert max(map(_centroid, thunder)) < 400 < 2000 < min(map(_centroid, birds))


def test_captions_and_tags_follow_the_parameters():
    seen_captions = set()
    for i in range(320):
        clip = sfx.plan_clip(3, i)
        fam = sfx.FAMILIES[clip.family]
        assert clip.caption.strip() and clip.caption == clip.caption.strip()
        assert any(w in clip.caption.lower() for w in fam.words), (clip.family, clip.caption)
        assert clip.tags["family"] == clip.family
        assert clip.tags["reverb"] == ("yes" if clip.params["reverb"] > 0 else "no")
        assert all(isinstance(v, str) for v in clip.tags.values())
        json.dumps(clip.params)  # JSON-serialisable
        seen_captions.add(clip.caption)
    assert len(seen_captions) > 250  # wording and parameters vary
    # parameter words reach the caption
    rng = np.random.default_rng(0)
    cap, tags = sfx.describe("rain", {**sfx.sample_params("rain", rng), "intensity": 0.9, "surface": "tin roof",
                                      "layer": "thunder", "reverb": 0.0}, rng)
    assert tags["intensity"] == "heavy" and tags["thunder"] == "yes"
    assert "thunder" in cap and "roof" in cap and any(w in cap for w in ("heavy", "pouring", "torrential"))
    cap, tags = sfx.describe("bell", {"duration": 4.0, "pitch": 200.0, "inharmonic": 0.5, "decay": 5.0, "mode": "ringing",
                                      "strike_rate": 1.0, "reverb": 0.4, "room": 2.0}, rng)
    assert tags == {"family": "bell", "pitch": "low", "decay": "long", "mode": "ringing", "reverb": "yes", "room": "large"}
    assert "long decay" in cap


def _in_held_out(family: str, params: dict) -> bool:
    h = sfx.HELD_OUT[family]
    lo, hi = h["range"]
    return lo <= params[h["param"]] <= hi


def test_held_out_ranges_in_sampling():
    for fam in FAMILIES:
        rng = np.random.default_rng([11, len(fam)])
        for _ in range(150):
            assert _in_held_out(fam, sfx.sample_params(fam, rng, held_out=True)), fam
            assert not _in_held_out(fam, sfx.sample_params(fam, rng, held_out=False)), fam


def test_held_out_ranges_per_split_in_plans():
    test_families = set()
    for seed in (0, 1):
        for i in range(480):
            clip = sfx.plan_clip(seed, i)
            assert clip.split == ("test" if i % 10 == 9 else "valid" if i % 10 == 4 else "train")
            assert _in_held_out(clip.family, clip.params) == (clip.split == "test"), (clip.family, clip.split, clip.params)
            if clip.split == "test":
                test_families.add(clip.family)
    assert test_families == set(FAMILIES)
    # every block of len(FAMILIES) clips holds every family once
    n = len(FAMILIES)
    assert sorted(sfx.family_of(5, i) for i in range(n, 2 * n)) == sorted(FAMILIES)


def test_build_writes_a_dataset(tmp_path):
    out = sfx.build_sfx(tmp_path / "fx", minutes=2, seed=0)
    rows = read_manifest(out)
    info = json.loads((out / "dataset.json").read_text())
    assert info["builder"] == "sfx" and info["seed"] == 0 and info["minutes"] == 2.0
    assert info["families"] == FAMILIES and info["held_out"] == json.loads(json.dumps(sfx.HELD_OUT))
    total = sum(r["duration"] for r in rows)
    assert 120 <= total < 120 + sfx.MAX_SECONDS + 0.01
    assert [r["id"] for r in rows] == [f"fx-{i:06d}" for i in range(len(rows))]
    assert {r["family"] for r in rows} == set(FAMILIES)  # 2 minutes is more than one block of families
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    for r in rows:
        assert r["domain"] == "sfx" and r["caption"] and r["tags"]["family"] == r["family"]
        assert _in_held_out(r["family"], r["params"]) == (r["split"] == "test")
        assert abs(r["duration"] - r["params"]["duration"]) < 1e-3
    wav, sr = load_audio(out / rows[0]["path"])
    assert sr == SR and len(wav) == round(rows[0]["duration"] * SR)
    assert 0.01 < np.abs(wav).max() <= 0.99 + 1e-4


def _build_bytes(path, seed, workers=2):
    out = sfx.build_sfx(path, minutes=0.3, seed=seed, workers=workers)
    manifest = (out / "manifest.jsonl").read_text()
    audio = {r["id"]: (out / r["path"]).read_bytes() for r in read_manifest(out)}
    return manifest, audio


def test_builds_are_bit_identical_under_a_seed(tmp_path):
    m1, a1 = _build_bytes(tmp_path / "a", 4)
    m2, a2 = _build_bytes(tmp_path / "b", 4, workers=1)
    m3, a3 = _build_bytes(tmp_path / "c", 5)
    assert m1 == m2 and a1 == a2
    assert m1 != m3
    assert all(a1[k] != a3[k] for k in set(a1) & set(a3))


@pytest.mark.parametrize("minutes", [0, -1, math.nan, math.inf, 1e9])
def test_bad_minutes_write_nothing(tmp_path, minutes):
    out = tmp_path / "fx"
    with pytest.raises(InvalidArgumentError):
        sfx.build_sfx(out, minutes=minutes)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_seed_is_refused(tmp_path):
    with pytest.raises(InvalidArgumentError):
        sfx.build_sfx(tmp_path / "fx", minutes=0.1, seed=-1)
    assert list(tmp_path.iterdir()) == []
