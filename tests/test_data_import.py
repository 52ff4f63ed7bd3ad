import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from tokenwave.audio import load_audio
from tokenwave.data.importer import cut_clips, import_audio
from tokenwave.data.manifest import read_manifest
from tokenwave.data.stats import dataset_stats
from tokenwave.errors import DatasetError, InvalidArgumentError, OutputPathError


@pytest.fixture
def user_folder(tmp_path, make_tone):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "long.wav", np.stack([make_tone(440, 25.0, 44100)] * 2, 1), 44100)  # stereo, 44.1 kHz
    sf.write(src / "sub" / "short.flac", make_tone(660, 3.0, 16000), 16000)
    sf.write(src / "speech.ogg", make_tone(220, 14.0, 48000), 48000)
    (src / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    (src / "tiny.wav").write_bytes(b"")
    (src / "readme.txt").write_text("not audio")
    meta = tmp_path / "meta.csv"
    meta.write_text("file,caption,text,speaker,tags\nsub/short.flac,a high beep,,,beep;test\n"
                    "speech.ogg,,hello there,alice,\nmissing.wav,ghost,,,\n")
    return src, meta


def test_import_resamples_splits_and_reports(tmp_path, user_folder):
    src, meta = user_folder
    out = tmp_path / "ds"
    report = import_audio(src, out, meta=meta, clip_seconds=10, test_fraction=0.3, valid_fraction=0.3)
    skipped = dict(report.skipped)
    assert set(skipped) == {"broken.wav", "tiny.wav"}
    rows = read_manifest(out)
    by_source = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
        wav, sr = load_audio(out / r["path"])
        assert sr == 24000 and abs(len(wav) / sr - r["duration"]) < 1e-3
        assert np.abs(wav).max() <= 1.0
    assert len(by_source["long.wav"]) == 3  # 25 s cut into 3 near-equal clips of <= 10 s
    assert all(r["duration"] <= 10.0 + 1e-6 for r in by_source["long.wav"])
    assert len({r["split"] for r in by_source["long.wav"]}) == 1  # a file's clips never straddle splits
    (speech,) = by_source["speech.ogg"]  # transcript keeps the file whole
    assert speech["text"] == "hello there" and speech["speaker"] == "alice" and abs(speech["duration"] - 14.0) < 0.01
    (short,) = by_source["sub/short.flac"]
    assert short["caption"] == "a high beep" and short["tags"] == ["beep", "test"]
    info = json.loads((out / "dataset.json").read_text())
    assert {s["file"] for s in info["skipped"]} == {"broken.wav", "tiny.wav"}
    assert info["metadata_unmatched"] == ["missing.wav"]
    stats = dataset_stats(out)
    assert sum(s["clips"] for s in stats["splits"].values()) == len(rows)


def test_import_is_deterministic_and_seed_changes_splits(tmp_path, user_folder):
    src, _ = user_folder
    a = read_manifest(import_audio(src, tmp_path / "a", seed=1, test_fraction=0.4, valid_fraction=0.3).out)
    b = read_manifest(import_audio(src, tmp_path / "b", seed=1, test_fraction=0.4, valid_fraction=0.3).out)
    assert a == b
    splits = {import_audio(src, tmp_path / f"s{seed}", seed=seed, test_fraction=0.4, valid_fraction=0.3).out: seed
              for seed in range(2, 6)}
    assert len({tuple(r["split"] for r in read_manifest(p)) for p in splits}) > 1


def test_import_errors_leave_nothing(tmp_path, user_folder):
    src, _ = user_folder
    with pytest.raises(DatasetError):
        import_audio(tmp_path / "nowhere", tmp_path / "o1")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("x")
    with pytest.raises(DatasetError):
        import_audio(empty, tmp_path / "o2")
    with pytest.raises(InvalidArgumentError):
        import_audio(src, tmp_path / "o3", clip_seconds=-1)
    with pytest.raises(InvalidArgumentError):
        import_audio(src, tmp_path / "o3", domain="podcasts")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(OutputPathError):
        import_audio(src, tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_cut_clips_bounds():
    clips = cut_clips(np.zeros(24000 * 21, np.float32), 24000, 10, 1)
    assert [len(c) for c in clips] == [24000 * 7] * 3
    assert cut_clips(np.zeros(100, np.float32), 24000, 10, 1) == []


def test_cli_import_and_stats(tmp_path, user_folder):
    src, meta = user_folder
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "tokenwave", "data", "import", str(src), "--out", str(out), "--meta", str(meta)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "skipped" in run.stdout and "broken.wav" in run.stdout
    run = subprocess.run([sys.executable, "-m", "tokenwave", "data", "stats", str(out), "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert stats["clips"] == len(read_manifest(out))
    png = out / "stats.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
