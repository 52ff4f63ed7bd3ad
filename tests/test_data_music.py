"""Tests for the music dataset builder (needs fluidsynth, the GM soundfont and music21; small builds, seconds)."""
from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tokenwave.data import music, music_corpus
from tokenwave.data.manifest import read_manifest
from tokenwave.errors import InvalidArgumentError, MissingSystemPackageError

HAVE_SYNTH = bool(shutil.which("fluidsynth")) and any(Path(p).exists() for p in music.SOUNDFONTS)
needs_synth = pytest.mark.skipif(not HAVE_SYNTH, reason="needs the Debian packages fluidsynth and fluid-soundfont-gm")


@pytest.fixture(scope="module", autouse=True)
def private_cache(tmp_path_factory):
    """Parse into a fresh notes cache, so the tests neither read nor fill the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TOKENWAVE_CACHE", str(tmp_path_factory.mktemp("cache")))
    music_corpus.load_notes.cache_clear()
    yield
    mp.undo()
    music_corpus.load_notes.cache_clear()


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    # 2 minutes = 11 clips, so the schedule gives train, valid (clip 4) and test (clip 9)
    return music.build_music(tmp_path_factory.mktemp("music") / "ds", minutes=2.0, seed=0)


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted((folder / "audio").rglob("*.flac"))}


def test_corpus_collections_and_split_pools() -> None:
    pieces = music_corpus.all_pieces()
    assert len({p.id for p in pieces}) == len(pieces) > 5000
    pools = music_corpus.split_pools()
    for coll in music_corpus.COLLECTIONS:
        assert pools["train"][coll.name] and pools["test"][coll.name], coll.name
    splits = music_corpus.piece_splits()
    share = sum(s == "test" for s in splits.values()) / len(splits)
    assert 0.07 < share < 0.14
    group_splits: dict[str, set[str]] = {}
    for p in pieces:
        group_splits.setdefault(p.group, set()).add(splits[p.id])
    assert all(len(s) == 1 for s in group_splits.values())  # a tune's versions never straddle splits


def test_plan_uses_only_its_splits_pieces() -> None:
    splits = music_corpus.piece_splits()
    jobs = music.plan_music(30.0, seed=0)
    assert sum(j.frames for j in jobs) / music.MELODY_FRAME_RATE >= 30 * 60
    assert {j.split for j in jobs} == {"train", "valid", "test"}
    for j in jobs:
        assert all(splits[p.id] == j.split for p in j.candidates), j
        assert -5 <= j.transpose <= 6 and j.instrument in music.INSTRUMENTS
    test_pieces = {p.id for j in jobs if j.split == "test" for p in j.candidates}
    other = {p.id for j in jobs if j.split != "test" for p in j.candidates}
    assert test_pieces and not test_pieces & other
    assert music.plan_music(5.0, seed=0) == jobs[:len(music.plan_music(5.0, seed=0))]
    assert music.plan_music(5.0, seed=1) != music.plan_music(5.0, seed=0)


def test_melody_is_top_voice_and_follows_transpose() -> None:
    # (pitch, start s, end s): a melody over a held bass note, and a rest from 1.0 to 1.2 s
    notes = np.array([[72, 0.0, 0.5], [74, 0.5, 1.0], [48, 0.0, 1.0], [76, 1.2, 2.0]])
    mel = music.melody_frames(notes, 150)
    assert mel.shape == (150,) and mel.dtype.kind == "i"
    assert mel[10] == 72 and mel[50] == 74 and mel[80] == 0 and mel[100] == 76 and mel[149] == 76
    up = music.melody_frames(notes, 150, transpose=2)
    assert np.array_equal(up > 0, mel > 0)
    assert np.array_equal(up[mel > 0], mel[mel > 0] + 2)


def test_key_estimate() -> None:
    scale = [60, 62, 64, 65, 67, 69, 71, 72, 67, 64, 60]
    notes = np.array([[p, i * 0.5, i * 0.5 + 0.5] for i, p in enumerate(scale)])
    assert music.estimate_key(notes) == (0, "major")
    assert music.estimate_key(notes + [2, 0, 0]) == (2, "major")
    a_minor = np.array([[p, i, i + 1] for i, p in enumerate([57, 60, 64, 57, 59, 60, 62, 64, 56, 57, 57])])
    assert music.estimate_key(a_minor, sharps=0) == (9, "minor")
    assert music.estimate_key(notes, declared=(7, "minor")) == (7, "minor")
    assert music.key_name(1, "major") == "Db" and music.key_name(1, "minor") == "C#"


@needs_synth
def test_rows_are_complete_and_sane(built: Path) -> None:
    rows = read_manifest(built)
    assert len(rows) >= 8 and sum(r["duration"] for r in rows) >= 120
    for r in rows:
        assert r["id"].startswith("mu-") and r["domain"] == "music"
        assert r["instrument"] in r["caption"] and f"{r['bpm']} bpm" in r["caption"]
        assert f"{r['key']} {r['mode']}" in r["caption"] and r["mode"] in ("major", "minor")
        assert set(r["tags"]) >= {"genre", "collection", "instrument", "tempo", "key", "mode"}
        assert r["tags"]["tempo"] in ("slow", "moderate", "lively", "fast") and r["tags"]["tempo"] in r["caption"]
        assert r["collection"] in music_corpus.BY_NAME and 0 <= r["program"] <= 127
        assert 40 <= r["bpm"] <= 180 and -5 <= r["transpose"] <= 6
        mel = np.array(r["melody"])
        assert r["melody_frame_rate"] == 75 and abs(len(mel) - r["duration"] * 75) <= 1
        assert mel.min() >= 0 and mel.max() <= 127 and np.count_nonzero(mel) > 0.2 * len(mel)
    info = json.loads((built / "dataset.json").read_text())
    assert info["builder"] == "music" and info["seed"] == 0 and info["minutes"] == 2.0
    assert set(info["collections"]) == set(music_corpus.BY_NAME) and info["held_out_pieces"]


@needs_synth
def test_audio_is_24k_mono_and_loud_enough(built: Path) -> None:
    for r in read_manifest(built):
        wav, sr = sf.read(built / r["path"], dtype="float32")
        assert sr == 24000 and wav.ndim == 1 and abs(len(wav) / sr - r["duration"]) < 1e-3
        assert len(wav) == 320 * len(r["melody"])
        assert np.sqrt(np.mean(wav ** 2)) > 0.02 and np.abs(wav).max() <= 0.995


@needs_synth
def test_held_out_pieces_only_in_test(built: Path) -> None:
    rows = read_manifest(built)
    held = set(json.loads((built / "dataset.json").read_text())["held_out_pieces"])
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    for r in rows:
        assert (r["piece"] in held) == (r["split"] == "test"), r["piece"]
        assert music_corpus.piece_splits()[r["piece"]] == r["split"]


@needs_synth
def test_same_seed_same_dataset_other_seed_differs(tmp_path: Path, built: Path) -> None:
    a = music.build_music(tmp_path / "a", minutes=0.3, seed=0)
    b = music.build_music(tmp_path / "b", minutes=0.3, seed=0, workers=1)
    c = music.build_music(tmp_path / "c", minutes=0.3, seed=1)
    assert (a / "manifest.jsonl").read_text() == (b / "manifest.jsonl").read_text()
    assert _digest(a) == _digest(b)  # fluidsynth renders bit-identically, reverb and chorus included
    assert read_manifest(c) != read_manifest(a)
    first = read_manifest(built)[: len(read_manifest(a))]  # a clip does not depend on the build size
    assert [r["caption"] for r in first] == [r["caption"] for r in read_manifest(a)]


@pytest.mark.parametrize("minutes", [0, -1.0, math.nan, math.inf])
def test_bad_minutes_write_nothing(tmp_path: Path, minutes: float) -> None:
    with pytest.raises(InvalidArgumentError):
        music.build_music(tmp_path / "ds", minutes=minutes)
    assert list(tmp_path.iterdir()) == []


def test_missing_synth_or_soundfont(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(music, "SOUNDFONTS", [str(tmp_path / "none.sf2")])
    with pytest.raises(MissingSystemPackageError, match="fluid-soundfont-gm"):
        music.build_music(tmp_path / "ds", minutes=0.3)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "fluidsynth" else real_which(name, *a, **k))
    with pytest.raises(MissingSystemPackageError, match="fluidsynth"):
        music.build_music(tmp_path / "ds", minutes=0.3)
    assert list(tmp_path.iterdir()) == []


def test_midi_file_ends_every_note(tmp_path: Path) -> None:
    """A note cut to nothing at the excerpt's end (start == end) once wrote its note-off before its note-on, so
    fluidsynth held it for ever and rendered gigabytes: every note-on written now has its note-off after it."""
    import mido

    ex = {"notes": np.array([[60, 0.0, 1.0], [64, 1.0, 2.0], [67, 2.0, 2.0], [62, 1.99999, 2.0]]),
          "parts": np.array([0, 0, 1, 1]), "programs": [40, 41]}
    music._write_midi(ex, 80, np.random.default_rng(0), tmp_path / "x.mid")
    ons = 0
    for track in mido.MidiFile(tmp_path / "x.mid").tracks:
        sounding: set[int] = set()
        for msg in track:
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.add(msg.note)
                ons += 1
            elif msg.type in ("note_on", "note_off"):
                sounding.discard(msg.note)
        assert not sounding, f"notes {sounding} never end"
    assert ons == 2  # the two real notes; the empty ones are left out


@needs_synth
def test_render_that_never_ends_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fluidsynth run past the time limit is killed, its partial file removed, and the error names the piece."""
    job = music.plan_music(0.2, seed=0)[0]
    monkeypatch.setattr(music, "RENDER_TIMEOUT", 0.0001)
    with pytest.raises(RuntimeError, match="did not finish"):
        music._render(job, music._require(), tmp_path)
    assert not list(tmp_path.glob("*.wav"))
