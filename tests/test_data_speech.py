"""Tests for the speech dataset builder (needs espeak-ng, flite and fortunes; small builds, a few seconds)."""
from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tokenwave.data import speech
from tokenwave.data.manifest import read_manifest
from tokenwave.errors import DatasetError, InvalidArgumentError, MissingSystemPackageError, OutputPathError

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("flite") and Path(speech.FORTUNES_DIR).is_dir()),
    reason="needs the Debian packages espeak-ng, flite and fortunes",
)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return speech.build_speech(tmp_path_factory.mktemp("speech") / "ds", minutes=1.0, seed=0)


def test_enough_distinct_sentences() -> None:
    sentences = speech.load_sentences()
    assert len(sentences) >= 2000
    assert len(set(sentences)) == len(sentences) and sentences == sorted(sentences)
    for s in sentences[::50]:
        assert s.isascii() and s[-1] in ".!?" and 4 <= len(s.split()) <= 20
        assert not any(c.isdigit() for c in s) and "http" not in s and "--" not in s
    splits = [speech.sentence_split(s) for s in sentences]
    for name, lo, hi in (("train", 0.75, 0.85), ("valid", 0.07, 0.13), ("test", 0.07, 0.13)):
        assert lo < splits.count(name) / len(splits) < hi


def test_speakers_and_held_out() -> None:
    spk = speech.speakers()
    assert 30 <= len(spk) <= 60 and len(set(spk)) == len(spk)
    assert {"flite:slt", "flite:awb", "espeak-ng:en-us+f2"} <= set(spk)
    held = speech.held_out_speakers(0)
    assert len(held) >= 3 and set(held) <= set(spk)
    assert any(h.startswith("flite:") for h in held) and sum(h.startswith("espeak-ng:") for h in held) >= 2
    assert held == speech.held_out_speakers(0) and held != speech.held_out_speakers(1)


def test_wide_voice_set_trains_on_more_speakers_and_tests_on_the_same() -> None:
    standard, wide = set(speech.speakers()), speech.speakers("wide")
    assert len(wide) == len(set(wide)) and standard < set(wide) and len(wide) >= 10 * len(standard)
    assert not any(s.endswith(tuple(f"+{v}" for v in speech.WIDE_EXCLUDED_VARIANTS)) for s in wide)
    held = set(speech.held_out_speakers(0))
    jobs = list(itertools.islice(speech._plan(0, voices="wide"), 600))
    train = {j.speaker for j in jobs if j.split != "test"}
    assert {j.speaker for j in jobs if j.split == "test"} <= held and not train & held
    assert len(train - standard) > 0.8 * len(train)  # most training clips come from speakers the standard set lacks
    # the same clip schedule: each clip keeps its split and its sentence's split, whatever the voice set
    assert [j.split for j in jobs] == [j.split for j in itertools.islice(speech._plan(0), 600)]


def test_unknown_voice_set(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="wide"):
        speech.build_speech(tmp_path / "out", minutes=0.1, voices="huge")
    assert not (tmp_path / "out").exists()


def test_wide_build_records_its_voice_set(tmp_path: Path) -> None:
    out = speech.build_speech(tmp_path / "wide", minutes=0.3, seed=0, voices="wide")
    info = json.loads((out / "dataset.json").read_text())
    assert info["voices"] == "wide" and info["speakers"] == speech.speakers("wide")
    assert info["held_out_speakers"] == speech.held_out_speakers(0)
    assert {r["speaker"] for r in read_manifest(out)} <= set(info["speakers"])


def test_every_speaker_sounds_different(tmp_path: Path) -> None:
    digests = set()
    for i, spk in enumerate(speech.speakers()):
        espeak = spk.startswith("espeak-ng:")
        job = speech._Job(i, "train", spk, "The quick brown fox jumps over the lazy dog.", "",
                          170.0 if espeak else 1.0, 50.0 if espeak else None)
        digests.add(hashlib.sha1(speech._render(job, tmp_path).tobytes()).hexdigest())
    assert len(digests) == len(speech.speakers())


def test_manifest_fields_and_audio(built: Path) -> None:
    rows = read_manifest(built)
    assert sum(r["duration"] for r in rows) >= 60.0
    assert {r["split"] for r in rows} == {"train", "valid", "test"}
    for r in rows:
        assert r["id"].startswith("sp-") and r["domain"] == "speech"
        assert r["text"] and r["speaker"] == f"{r['engine']}:{r['voice']}" and r["engine"] in {"espeak-ng", "flite"}
        assert r["phonemes"] and any(ord(c) > 127 for c in r["phonemes"])  # IPA, not the text back
        wav, sr = sf.read(built / r["path"], dtype="float32")
        assert sr == 24000 and wav.ndim == 1
        assert abs(len(wav) / sr - r["duration"]) < 1e-3
        assert np.sqrt(np.mean(wav ** 2)) > 0.01 and np.abs(wav).max() <= 1.0
        assert np.mean(np.abs(wav) > 0.999) < 1e-4
    info = json.loads((built / "dataset.json").read_text())
    assert info["builder"] == "speech" and info["seed"] == 0 and info["minutes"] == 1.0
    assert info["speakers"] == speech.speakers() and info["held_out_speakers"] == speech.held_out_speakers(0)
    assert info["sentence_count"] == len(speech.load_sentences())


def test_held_out_speakers_and_sentences_disjoint(built: Path) -> None:
    rows = read_manifest(built)
    held = set(speech.held_out_speakers(0))
    for r in rows:
        assert (r["speaker"] in held) == (r["split"] == "test")
        assert speech.sentence_split(r["text"]) == r["split"]
    texts = {s: {r["text"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert not texts["train"] & texts["valid"] and not texts["train"] & texts["test"] and not texts["valid"] & texts["test"]


def test_deterministic_under_seed(built: Path, tmp_path: Path) -> None:
    same = speech.build_speech(tmp_path / "same", minutes=1.0, seed=0)
    assert read_manifest(same) == read_manifest(built)
    for r in read_manifest(built)[:5]:
        assert (same / r["path"]).read_bytes() == (built / r["path"]).read_bytes()
    other = speech.build_speech(tmp_path / "other", minutes=0.3, seed=1)
    assert [r["text"] for r in read_manifest(other)] != [r["text"] for r in read_manifest(built)][: len(read_manifest(other))]


@pytest.mark.parametrize("minutes", [0, -1, float("nan"), float("inf")])
def test_bad_minutes(tmp_path: Path, minutes: float) -> None:
    with pytest.raises(InvalidArgumentError):
        speech.build_speech(tmp_path / "out", minutes=minutes)
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputPathError):
        speech.build_speech(out, minutes=0.1)
    assert (out / "keep.txt").read_text() == "mine"
    speech.build_speech(out, minutes=0.1, overwrite=True)
    assert not (out / "keep.txt").exists() and read_manifest(out)


def test_missing_engine_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr("tokenwave.sysdeps.shutil.which", lambda p, *a, **k: None if p == "flite" else real(p, *a, **k))
    with pytest.raises(MissingSystemPackageError, match="flite"):
        speech.build_speech(tmp_path / "out", minutes=0.1)
    assert not (tmp_path / "out").exists()


def test_alignments_time_the_phones_of_each_clip(built: Path) -> None:
    """Each clip's phone timings: from its engine, on the clip's own timeline (the re-spoken envelope matches the
    clip), so a flite clip matches exactly and the phones cover the clip in order."""
    from typer.testing import CliRunner

    from tokenwave.cli import app
    from tokenwave.data.align import read_alignments
    from tokenwave.speech import SIL, frame_phones, text_timings

    res = CliRunner().invoke(app, ["data", "align", "--data", str(built)])
    assert res.exit_code == 0, res.output
    rows = {r["id"]: r for r in read_manifest(built)}
    al = read_alignments(built / "alignments.jsonl")
    assert len(al) >= 0.7 * len(rows)  # espeak-ng's noise differs between renderings: a few clips match worse
    assert all(rows[i]["engine"] == "espeak-ng" for i in set(rows) - set(al))
    for i, a in al.items():
        r = rows[i]
        assert a["starts"][0] == 0.0 and a["starts"] == sorted(a["starts"]) and a["match"] >= 0.9
        assert a["end"] == pytest.approx(r["duration"], abs=0.002) and a["starts"][-1] < a["end"]
        assert len([p for p in a["phones"] if p != SIL]) >= len(r["text"].split())  # a phone or more per word
        if r["engine"] == "flite":
            assert a["match"] > 0.99
    a = next(iter(al.values()))
    frames = int(a["end"] * 75)
    phones, pos, left = frame_phones(a, frames)
    assert len(phones) == len(pos) == len(left) == frames and pos[0] == 0 and left[-1] == 0
    changes = [k for k in range(1, frames) if pos[k] == 0]
    assert all(left[k - 1] == 0 for k in changes)  # a phone ends right before the next begins
    slow, fast = text_timings("A short line of speech.", 0.7), text_timings("A short line of speech.", 1.4)
    assert slow["phones"] == fast["phones"] and slow["end"] > 1.5 * fast["end"]
    # the same text always gets the same timing (a fresh espeak-ng state per utterance), whatever came before
    assert text_timings("A short line of speech.", 0.7) == slow
