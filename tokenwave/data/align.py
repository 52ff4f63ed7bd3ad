"""Phone alignments of speech: which phone sounds when, from the engines that spoke it.

The speech datasets are spoken by espeak-ng and flite, which both report their own phone timings: espeak-ng as
phoneme events of its library (IPA names, the output sample each phone starts at), flite as ``-psdur`` (phone
names and end times). Speaking a row again with the same engine, voice, rate and pitch gives the same audio, so its
timings, shifted by the silence the dataset builder trimmed, are the clip's alignment (checked: the re-spoken,
trimmed length must match the clip's). flite's phones are mapped to IPA, so both engines share one phone set.

At inference the same espeak-ng library gives the timings of new text (:mod:`tokenwave.speech.timing`), in this
same form.

Alignment: ``{"phones": [...], "starts": [...], "end": s}`` in seconds from the clip's first sample; a pause is
``SIL``.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve

from tokenwave.audio import load_audio, resample
from tokenwave.data.manifest import audio_path, read_manifest
from tokenwave.errors import DatasetError, MissingSystemPackageError
from tokenwave.fileio import atomic_write_text
from tokenwave.progress import progress_bar
from tokenwave.speech.envelope import envelope, trim_bounds
from tokenwave.speech.espeak import SIL, espeak_accents, espeak_timings
from tokenwave.speech.timing import shifted_timings
#: flite (CMU) phones -> the IPA espeak-ng's en-us events name them with
FLITE_IPA = {"aa": "ɑː", "ae": "æ", "ah": "ʌ", "ao": "ɔː", "aw": "aʊ", "ax": "ə", "axr": "ɚ", "ay": "aɪ", "b": "b",
             "ch": "tʃ", "d": "d", "dh": "ð", "eh": "ɛ", "er": "ɜː", "ey": "eɪ", "f": "f", "g": "ɡ", "hh": "h",
             "ih": "ɪ", "iy": "iː", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ", "ow": "oʊ",
             "oy": "ɔɪ", "p": "p", "r": "ɹ", "s": "s", "sh": "ʃ", "t": "t", "th": "θ", "uh": "ʊ", "uw": "uː",
             "v": "v", "w": "w", "y": "j", "z": "z", "zh": "ʒ", "pau": SIL}


def flite_timings(text: str, voice: str, stretch: float, pitch: float | None) -> tuple[np.ndarray, int, list[str], list[float]]:
    """flite speaking ``text`` (as the dataset builder runs it): ``(audio, sample rate, IPA phones, start seconds)``."""
    with tempfile.TemporaryDirectory(prefix="tokenwave-flite-") as tmp:
        path = Path(tmp) / "x.wav"
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}"]
        if pitch is not None:
            cmd += ["--setf", f"int_f0_target_mean={pitch}"]
        cmd += ["-psdur", "-t", text, "-o", str(path)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        except FileNotFoundError as e:
            raise MissingSystemPackageError("flite", "flite") from e
        audio, sr = sf.read(str(path), dtype="float32")
    phones, starts, t = [], [], 0.0
    for tok in res.stdout.split():
        name, _, end = tok.rpartition(":")
        phones.append(FLITE_IPA.get(name, name))
        starts.append(t)
        t = float(end)
    return audio, sr, phones, starts


def _trimmed(audio: np.ndarray, sr: int, phones: list[str], starts: list[float], out_sr: int) -> dict:
    """Timings of the trimmed audio (trimmed the way the speech builder trims its clips, at ``out_sr``)."""
    wav = resample(audio, sr, out_sr) if sr != out_sr else audio
    a, b = trim_bounds(wav, out_sr)
    return shifted_timings(phones, starts, a / out_sr, (b - a) / out_sr)


def clip_offset(spoken: np.ndarray, clip: np.ndarray, sr: int, max_lag_s: float = 0.5) -> tuple[float, float]:
    """Where ``clip`` starts within ``spoken`` (seconds, to 2.5 ms; both at ``sr``, the clip a trimmed, rescaled
    rendering of the same speech) and how well their loudness envelopes agree there (Pearson correlation; espeak-ng's
    noise sources differ between renderings, so samples are compared through their envelopes)."""
    hop = max(1, int(0.0025 * sr))
    es, ec = np.log(envelope(spoken, hop)), np.log(envelope(clip, hop))
    n = min(len(es), len(ec))
    if n < 8:
        return 0.0, 0.0
    c = ec[:n] - ec[:n].mean()
    corr = fftconvolve(es - es.mean(), c[::-1], mode="full")[n - 1:]
    lags = max(1, min(len(corr), int(max_lag_s * sr / hop) + 1))
    k = int(np.argmax(corr[:lags]))
    seg = es[k: k + n]
    m = min(len(seg), n)
    match = float(np.corrcoef(seg[:m], ec[:m])[0, 1]) if m > 2 else 0.0
    return k * hop / sr, match


def align_row(row: dict, clip: np.ndarray | None = None, sample_rate: int = 24_000) -> dict:
    """The alignment of one speech-dataset row: speak it again with its engine, voice, rate and pitch; with the
    row's audio ``clip`` (at ``sample_rate``) the offset is where the clip matches the re-spoken audio best (and
    ``match`` says how well: the normalised correlation), else the builder's trim rule on the re-spoken audio."""
    engine, voice = row["speaker"].split(":", 1)
    if engine == "espeak-ng":
        accent, variant = voice.split("+")
        audio, sr, phones, starts = espeak_timings(row["text"], f"{espeak_accents()[accent]}+{variant}",
                                                   int(row["rate"]), None if row.get("pitch") is None else int(row["pitch"]))
    elif engine == "flite":
        audio, sr, phones, starts = flite_timings(row["text"], voice, float(row["rate"]), row.get("pitch"))
    else:
        raise DatasetError(f"row {row.get('id')} was spoken by {engine!r}, which gives no timings",
                           "align espeak-ng and flite rows only")
    if clip is None:
        return _trimmed(audio, sr, phones, starts, sample_rate)
    spoken = resample(audio, sr, sample_rate) if sr != sample_rate else audio
    off, match = clip_offset(spoken, clip, sample_rate)
    return {**shifted_timings(phones, starts, off, len(clip) / sample_rate), "match": round(match, 4)}


def align_dataset(folder: str | os.PathLike, out: str | os.PathLike | None = None, min_match: float = 0.9) -> dict:
    """Write ``alignments.jsonl`` (one ``{"id", "phones", "starts", "end", "match"}`` per row) beside a speech
    dataset's manifest; a row whose clip matches its re-spoken audio with a correlation under ``min_match`` is left
    out. Returns ``{"path", "rows", "aligned", "skipped"}``."""
    folder = Path(folder)
    rows = list(read_manifest(folder))
    if not rows or rows[0].get("domain") != "speech" or "speaker" not in rows[0]:
        raise DatasetError(f"{folder} is not a speech dataset built by `tokenwave data build speech`",
                           "align a speech dataset (rows with text, speaker, rate and pitch)")
    lines, skipped = [], 0
    with progress_bar("align", total=len(rows), unit="clips") as bar:
        for r in rows:
            clip, _ = load_audio(audio_path(folder, r), 24_000)
            a = align_row(r, clip)
            if a["match"] < min_match:
                skipped += 1
            else:
                lines.append(json.dumps({"id": r["id"], **a}, ensure_ascii=False))
            bar.advance(1)
    path = Path(out) if out is not None else folder / "alignments.jsonl"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return {"path": str(path), "rows": len(rows), "aligned": len(lines), "skipped": skipped}


def dataset_alignments(folder: str | os.PathLike) -> dict[str, dict]:
    """A dataset's ``alignments.jsonl`` by clip id, or ``{}`` when it has not been aligned."""
    path = Path(folder) / "alignments.jsonl"
    return read_alignments(path) if path.exists() else {}


def read_alignments(path: str | os.PathLike) -> dict[str, dict]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no alignments at {path}", "make them with `tokenwave data align --data DATASET`")
    return {a["id"]: a for a in map(json.loads, path.read_text().splitlines()) if a}
