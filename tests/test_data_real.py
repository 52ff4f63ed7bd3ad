"""Real-recording corpus builder on a fake package cache (never downloads)."""
from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from tokenwave.audio import resample
from tokenwave.cli import app
from tokenwave.data import real
from tokenwave.data.manifest import read_manifest
from tokenwave.data.stats import dataset_stats
from tokenwave.errors import (
    CorruptAudioError,
    InvalidArgumentError,
    MissingSystemPackageError,
)

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: someone
License: GPL-2

Files: share/hedgewars/Data/Sounds/*
Copyright: someone
License: GFDL-1.3

Files: hedgewars/*.pas
Copyright: someone
License: GPL-2+
"""
FREEFORM = "This package is free software ... GNU General Public License as published by\nthe Free Software " \
           "Foundation; version 2 dated June, 1991.\n"


def _tone(seconds: float, sr: int, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def _write(path: Path, wav: np.ndarray, sr: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".ogg": ("OGG", "VORBIS"), ".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16")}[path.suffix]
    sf.write(str(path), wav, sr, format=fmt[0], subtype=fmt[1])


def _package(cache: Path, name: str, copyright_text: str) -> Path:
    root = cache / name
    doc = root / "usr/share/doc" / name
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright_text)
    (root / ".unpacked").write_text("fake\n")
    return root


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """Fake unpacked packages in the folder layouts the source table expects."""
    c = tmp_path_factory.mktemp("debs")
    # Czech dialogue: audio in fillets-ng-data-cs, text in fillets-ng-data
    cs = _package(c, "fillets-ng-data-cs", FREEFORM)
    lines = {"small": ("font_small", "Ahoj."), "big": ("font_big", "Kde jsme?"),
             "statue": ("font_statue", "Vitejte."), "cyan": ("font_cyan", "Ne.")}
    lua, k = [], 0
    for who, (font, text) in lines.items():
        for i in range(3):
            ident = f"lvl-{who}-{i}"
            lua.append(f'dialogId("{ident}", "{font}", "english")\ndialogStr("{text} {i}")\n')
            _write(cs / f"usr/share/games/fillets-ng/sound/level{i}/cs/{ident}.ogg",
                   np.concatenate([np.zeros(2205, np.float32), _tone(1.0, 22050, 200 + 50 * k, k)]), 22050)
            k += 1
    _write(cs / "usr/share/games/fillets-ng/sound/level0/cs/lvl-untold.ogg", _tone(1.0, 22050, 300, 99), 22050)
    (cs / "usr/share/games/fillets-ng/sound/level1/cs/lvl-broken-0.ogg").write_bytes(b"OggS not really audio")
    lua.append('dialogId("lvl-broken-0", "font_small", "english")\ndialogStr("Rozbite.")\n')
    text = _package(c, "fillets-ng-data", FREEFORM)
    (text / "usr/share/games/fillets-ng/script/level0").mkdir(parents=True)
    (text / "usr/share/games/fillets-ng/script/level0/dialogs_cs.lua").write_text("\n".join(lua), encoding="utf-8")
    # hedgewars: voices (speech, no transcript), music (tracks), sounds (sfx)
    hw = _package(c, "hedgewars-data", DEP5)
    for v in ("Default", "Pirate"):
        _write(hw / f"usr/share/games/hedgewars/Data/Sounds/voices/{v}/Hello.ogg", _tone(0.8, 44100, 400, 5), 44100)
    for i in range(6):
        _write(hw / f"usr/share/games/hedgewars/Data/Music/track_{i}.ogg", _tone(24.0, 44100, 110 * (i + 1), 10 + i), 44100)
    for name in ("Explosion", "Splash"):
        _write(hw / f"usr/share/games/hedgewars/Data/Sounds/{name}.ogg", _tone(1.5, 44100, 900, 20), 44100)
    st = _package(c, "supertux-data", DEP5.replace("GPL-2+", "GPL-3+"))
    _write(st / "usr/share/games/supertux2/sounds/jump.wav", _tone(0.5, 44100, 700, 30), 44100)
    _write(st / "usr/share/games/supertux2/music/forest/forest_theme.ogg", _tone(12.0, 44100, 330, 31), 44100)
    sp = _package(c, "sonic-pi-samples", DEP5)
    _write(sp / "usr/share/sonic-pi/samples/ambi_choir.flac", _tone(2.0, 44100, 500, 40), 44100)
    return c


def _build(cache: Path, domain: str, out: Path, **kw) -> Path:
    kw.setdefault("packages", {"speech": ["fillets-ng-data-cs", "hedgewars-data"],
                               "music": ["hedgewars-data", "supertux-data"],
                               "sfx": ["hedgewars-data", "supertux-data", "sonic-pi-samples"]}[domain])
    return real.build_real(domain, out, minutes=30, seed=kw.pop("seed", 0), cache=cache, download=False, workers=1, **kw)


def test_speech_holds_out_speakers_and_counts_what_it_skips(cache, tmp_path):
    out = _build(cache, "speech", tmp_path / "speech")
    rows = read_manifest(out)
    by_split = {s: {r["speaker"] for r in rows if r["split"] == s} for s in ("train", "valid", "test")}
    assert by_split["test"] == {"fillets:font_statue"}
    assert by_split["valid"] == {"fillets:font_cyan"}
    assert by_split["train"] == {"fillets:font_small", "fillets:font_big", "hedgewars:Default", "hedgewars:Pirate"}
    cz = [r for r in rows if r["package"] == "fillets-ng-data-cs"]
    assert len(cz) == 12 and all(r["language"] == "cs" and r["licence"] == "GPL-2" for r in cz)
    assert {r["text"] for r in cz if r["speaker"] == "fillets:font_statue"} == {"Vitejte. 0", "Vitejte. 1", "Vitejte. 2"}
    assert all(r["original_sample_rate"] == 22050 and r["sample_rate"] == 24000 for r in cz)
    assert all(r["source"].startswith("usr/share/games/fillets-ng/sound/") for r in cz)
    # the clips without a transcript (hedgewars voices) keep their label and no text, and stay in train
    hw = [r for r in rows if r["package"] == "hedgewars-data"]
    assert len(hw) == 2 and all("text" not in r and r["label"] == "Hello" and r["licence"] == "GFDL-1.3" for r in hw)
    info = json.loads((out / "dataset.json").read_text())
    assert info["skipped"]["no transcript"]["count"] == 1
    assert info["skipped"]["unreadable clip"]["count"] == 1
    assert info["packages"]["fillets-ng-data-cs"]["clips"] == 12


def test_music_holds_out_whole_tracks_in_10_s_segments(cache, tmp_path):
    rows = read_manifest(_build(cache, "music", tmp_path / "music"))
    split_of: dict[str, set] = {}
    for r in rows:
        split_of.setdefault(r["piece"], set()).add(r["split"])
        assert r["duration"] <= real.SEGMENT_SECONDS + 1e-6
    assert all(len(s) == 1 for s in split_of.values())  # a track never straddles splits
    assert {next(iter(s)) for s in split_of.values()} >= {"train", "test"}
    track0 = sorted((r for r in rows if r["source"].endswith("track_0.ogg")), key=lambda r: r["offset"])
    assert [r["offset"] for r in track0] == [0.0, 10.0, 20.0] and [r["duration"] for r in track0] == [10.0, 10.0, 4.0]
    assert track0[0]["caption"] == "Hedgewars music: track 0" and track0[0]["tags"] == {"game": "Hedgewars"}
    forest = [r for r in rows if r["package"] == "supertux-data"]
    assert forest[0]["caption"] == "SuperTux music: forest theme (forest)" and forest[0]["licence"] == "GPL-2"


def test_sfx_holds_out_packages_with_captions_from_names(cache, tmp_path):
    out = _build(cache, "sfx", tmp_path / "sfx")
    rows = read_manifest(out)
    stats = dataset_stats(out)
    assert stats["splits"]["test"]["packages"] == 2 and stats["splits"]["train"]["packages"] == 1
    assert stats["clips_per_package"]["hedgewars-data"] == {"train": 2}
    splits = {r["package"]: r["split"] for r in rows}
    assert splits == {"hedgewars-data": "train", "supertux-data": "test", "sonic-pi-samples": "test"}
    captions = {r["caption"] for r in rows}
    assert captions == {"Explosion", "Splash", "jump", "ambi choir"}
    assert {r["licence"] for r in rows if r["package"] == "hedgewars-data"} == {"GFDL-1.3"}


def test_same_seed_same_manifest(cache, tmp_path):
    a = _build(cache, "music", tmp_path / "a")
    b = _build(cache, "music", tmp_path / "b")
    assert read_manifest(a) == read_manifest(b)
    for ra, rb in zip(read_manifest(a), read_manifest(b)):
        assert np.array_equal(sf.read(a / ra["path"])[0], sf.read(b / rb["path"])[0])


def test_a_failed_build_leaves_no_dataset(cache, tmp_path, monkeypatch):
    calls, cut = [], real.cut_clips

    def failing(item, domain):
        calls.append(item)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if interrupted half-way
        return cut(item, domain)

    monkeypatch.setattr(real, "cut_clips", failing)
    with pytest.raises(KeyboardInterrupt):
        _build(cache, "sfx", tmp_path / "sfx")
    assert not (tmp_path / "sfx").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_missing_package_is_reported_and_skipped(cache, tmp_path):
    out = _build(cache, "sfx", tmp_path / "sfx", packages=["hedgewars-data", "hydrogen-drumkits"])
    info = json.loads((out / "dataset.json").read_text())
    assert info["skipped"]["package missing or failed"]["count"] == 1
    assert "hydrogen-drumkits" in info["skipped"]["package missing or failed"]["examples"][0]
    assert info["sources"] == ["hedgewars-data"]
    with pytest.raises(InvalidArgumentError, match="not a sfx source"):
        _build(cache, "sfx", tmp_path / "x", packages=["no-such-package"])


def test_bandwidth_of_a_low_passed_clip():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(48000 * 2).astype(np.float32) * 0.1
    low = resample(resample(noise, 48000, 8000), 8000, 48000)  # content below 4 kHz only
    assert 3500 <= real.bandwidth_hz(low, 48000) <= 4200
    assert real.bandwidth_hz(noise, 48000) >= 23000
    assert real.bandwidth_hz(np.zeros(100, np.float32), 48000) == 0.0


def test_licence_and_transcript_readers():
    assert real.licence_of(DEP5, "usr/share/games/hedgewars/Data/Sounds/voices/A/x.ogg") == "GFDL-1.3"
    assert real.licence_of(DEP5, "usr/share/games/hedgewars/Data/Music/x.ogg") == "GPL-2"
    assert real.licence_of(FREEFORM, "anything") == "GPL-2"
    assert real.licence_of("no licence here", "x") == "unknown"
    text = "; Core Sounds\n\ndigits/1: one\nbeep: [a beep tone]\nvm-intro: Please leave a message: after the tone.\n"
    assert real.read_asterisk_transcripts(text) == {"digits/1": "one", "vm-intro": "Please leave a message: after the tone."}
    lua = 'dialogId("a-1", "font_big", "Hi \\"you\\"")\ndialogStr("Ahoj \\"ty\\"")\n'
    assert real.read_fillets_dialogs(lua) == {"a-1": ("font_big", 'Ahoj "ty"')}


def test_cli_builds_real_sfx_from_the_cache(cache, tmp_path):
    result = CliRunner().invoke(app, ["data", "build", "real-sfx", "--out", str(tmp_path / "fx"), "--cache", str(cache),
                                      "--no-download", "--packages", "hedgewars-data,sonic-pi-samples"])
    assert result.exit_code == 0, result.output
    rows = read_manifest(tmp_path / "fx")
    assert {r["package"] for r in rows} == {"hedgewars-data", "sonic-pi-samples"} and len(rows) == 3
    refused = CliRunner().invoke(app, ["data", "build", "sfx", "--out", str(tmp_path / "y"), "--packages", "x"])
    assert "--packages and --cache are for real recordings" in str(refused.exception)


def test_packages_are_cached_in_the_users_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENWAVE_CACHE", str(tmp_path))
    assert real.default_cache() == tmp_path / "debs"
    with pytest.raises(MissingSystemPackageError, match="not in the cache"):
        real.PackageCache(real.default_cache(), download=False).path("hedgewars-data")


def _mp3(seconds: float, freq: float, seed: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, _tone(seconds, 11025, freq, seed), 11025, format="MP3", subtype="MPEG_LAYER_III")
    return buf.getvalue()


def _queen_1c(entries: dict[str, bytes], compression: int = 1) -> bytes:
    """A resource file in queen.1c's layout: QTBL header, 21-byte entries (name, bundle, offset, size), the data."""
    head = b"QTBL" + b"CEM10\0" + b"\0\0" + bytes([compression]) + struct.pack(">H", len(entries))
    offset = len(head) + 21 * len(entries)
    table, data = b"", b""
    for name, blob in entries.items():
        table += struct.pack(">12sBII", name.encode(), 1, offset + len(data), len(blob))
        data += blob
    return head + table + data


def test_queen_speech_from_the_resource_table(tmp_path):
    entries = {"020006J1.SB": _mp3(1.0, 300, 1), "C100A032.SB": _mp3(0.8, 500, 2), "1000SSSS.SB": _mp3(0.5, 900, 3),
               "ROOM1.PCX": b"not audio"}
    blob = _queen_1c(entries)
    compression, table = real.read_queen_table(blob)
    assert compression == "mp3" and [t[0] for t in table] == list(entries)
    assert [blob[o:o + n] for _, o, n in table] == list(entries.values())
    assert real.queen_speaker("020006J1.SB") == real.queen_speaker("JOE00012.SB") == "queen:Joe"
    assert real.queen_speaker("020006P1.SB") == real.queen_speaker("C100A032.SB") == "unknown"
    with pytest.raises(CorruptAudioError, match="no QTBL"):
        real.read_queen_table(b"RIFF" + blob[4:])
    with pytest.raises(CorruptAudioError, match="compression 0"):
        real.read_queen_table(_queen_1c(entries, compression=0))
    with pytest.raises(CorruptAudioError, match="truncated"):
        real.read_queen_table(blob[:40])

    package = _package(tmp_path / "debs", "flight-of-the-amazon-queen", DEP5)
    (package / "usr/share/scummvm/flight-of-the-amazon-queen").mkdir(parents=True)
    (package / "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c").write_bytes(blob)
    out = real.build_real("speech", tmp_path / "q", minutes=30, cache=tmp_path / "debs", download=False, workers=1,
                          packages=["flight-of-the-amazon-queen"])
    rows = sorted(read_manifest(out), key=lambda r: r["resource"])
    assert [(r["resource"], r["speaker"], r["split"]) for r in rows] == [
        ("020006J1.SB", "queen:Joe", "train"), ("C100A032.SB", "unknown", "train")]
    assert all("text" not in r and r["language"] == "en" and r["licence"] == "GPL-2" and r["codec"] == "mp3"
               and r["original_sample_rate"] == 11025 and r["sample_rate"] == 24000 for r in rows)
    assert rows[0]["source"] == "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c:020006J1.SB"
    assert 0.8 <= rows[0]["duration"] <= 1.2 and 0.6 <= rows[1]["duration"] <= 1.0
    assert 400 <= rows[1]["bandwidth_hz"] <= 5600
    wav, sr = sf.read(out / rows[0]["path"])
    spectrum = np.abs(np.fft.rfft(wav))
    assert sr == 24000 and abs(np.argmax(spectrum) * sr / len(wav) - 300) < 10  # the 300 Hz tone came through
    info = json.loads((out / "dataset.json").read_text())
    assert info["skipped"]["sound effect, not speech"]["count"] == 1
