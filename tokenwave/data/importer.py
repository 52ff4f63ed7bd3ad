"""Import a user's own audio folder into the project's dataset format (24 kHz mono FLAC + manifest.jsonl).

Any common format, any rate, stereo or mono. An optional metadata file (CSV or JSONL) keyed by ``file``
(or ``path``) relative to the source folder adds ``caption``, ``text``, ``speaker``, ``tags`` or any other
column to the rows. Long files without a transcript are cut into clips; files with a ``text`` are kept
whole so the transcript stays aligned. Unreadable files are reported and skipped, never dropped silently.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokenwave import SAMPLE_RATE
from tokenwave.audio import AUDIO_EXTENSIONS, load_audio, loudness_normalize
from tokenwave.data.writer import DatasetWriter, check_output_dir
from tokenwave.errors import AudioFileError, DatasetError, InvalidArgumentError, MissingSystemPackageError
from tokenwave.progress import progress_bar

DOMAINS = ("speech", "music", "sfx", "custom")


@dataclass
class ImportReport:
    out: Path
    files: int = 0
    clips: int = 0
    seconds: float = 0.0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_metadata(path: str | os.PathLike) -> dict[str, dict]:
    """``{relative file path: {column: value}}`` from a CSV (header row) or JSONL file with a ``file``/``path`` key."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"metadata file not found: {path}", "check the --meta path")
    rows: list[dict] = []
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix.lower() in {".jsonl", ".json"}:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise DatasetError(f"{path}:{n} is not valid JSON ({err.msg})", "fix that line") from err
    else:
        raise DatasetError(f"metadata must be .csv or .jsonl, got {path.name}", "convert it to CSV with a `file` column")
    out = {}
    for n, row in enumerate(rows, 1):
        key = row.get("file") or row.get("path")
        if not key:
            raise DatasetError(f"{path} row {n} has no `file` column", "add a `file` column with paths relative to the source folder")
        extra = {k: v for k, v in row.items() if k not in ("file", "path") and v not in (None, "")}
        if isinstance(extra.get("tags"), str):
            extra["tags"] = [t.strip() for t in extra["tags"].replace(";", ",").split(",") if t.strip()]
        out[Path(key).as_posix()] = extra
    return out


def split_of(key: str, seed: int, valid_fraction: float, test_fraction: float) -> str:
    """Stable split of one source file (all its clips share it), from a hash of its path and the seed."""
    h = int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
    if h < test_fraction:
        return "test"
    if h < test_fraction + valid_fraction:
        return "valid"
    return "train"


def cut_clips(wav: np.ndarray, sr: int, clip_seconds: float, min_seconds: float) -> list[np.ndarray]:
    """Cut ``wav`` into near-equal clips of at most ``clip_seconds``; drop pieces shorter than ``min_seconds``."""
    n = len(wav)
    per = int(clip_seconds * sr)
    count = max(1, -(-n // per))
    bounds = np.linspace(0, n, count + 1).astype(int)
    return [wav[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b - a >= int(min_seconds * sr)]


def import_audio(src: str | os.PathLike, out: str | os.PathLike, meta: str | os.PathLike | None = None,
                 domain: str = "custom", clip_seconds: float = 10.0, min_seconds: float = 1.0,
                 valid_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 0,
                 normalize: bool = True, overwrite: bool = False) -> ImportReport:
    """Import every audio file under ``src`` into a dataset at ``out``; see the module docstring."""
    src = Path(src).expanduser()
    if not src.is_dir():
        raise DatasetError(f"source folder not found: {src}", "pass a folder of audio files")
    if domain not in DOMAINS:
        raise InvalidArgumentError(f"unknown domain {domain!r}", f"use one of {', '.join(DOMAINS)}")
    if not 0 < min_seconds <= clip_seconds <= 600:
        raise InvalidArgumentError(f"need 0 < min-seconds ({min_seconds}) <= clip-seconds ({clip_seconds}) <= 600",
                                   "e.g. --clip-seconds 10 --min-seconds 1")
    if valid_fraction < 0 or test_fraction < 0 or valid_fraction + test_fraction >= 1:
        raise InvalidArgumentError("valid and test fractions must be >= 0 and sum below 1", "e.g. 0.05 and 0.05")
    check_output_dir(Path(out), overwrite)
    metadata = read_metadata(meta) if meta else {}
    out_abs = Path(out).expanduser().absolute()
    files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                   and out_abs not in p.absolute().parents)
    if not files:
        raise DatasetError(f"no audio files under {src}", f"audio files end in one of {', '.join(sorted(AUDIO_EXTENSIONS))}")
    unmatched = set(metadata) - {p.relative_to(src).as_posix() for p in files}
    report = ImportReport(out=out_abs, files=len(files))
    info = {"builder": "import", "source": str(src.absolute()), "seed": seed, "clip_seconds": clip_seconds,
            "metadata": str(meta) if meta else None}
    with DatasetWriter(out, domain, info, overwrite=overwrite) as writer, \
            progress_bar("import", total=len(files), unit="files") as bar:
        for n, path in enumerate(files):
            rel = path.relative_to(src).as_posix()
            bar.advance(1)
            try:
                wav, _ = load_audio(path, SAMPLE_RATE)
            except MissingSystemPackageError:
                raise
            except AudioFileError as err:
                report.skipped.append((rel, err.message))
                continue
            fields = metadata.get(rel, {})
            pieces = [wav] if "text" in fields else cut_clips(wav, SAMPLE_RATE, clip_seconds, min_seconds)
            if not pieces or (len(pieces) == 1 and len(pieces[0]) < int(min_seconds * SAMPLE_RATE)):
                report.skipped.append((rel, f"shorter than --min-seconds {min_seconds}"))
                continue
            if float(np.abs(wav).max()) < 1e-4:
                report.skipped.append((rel, "silent"))
                continue
            split = split_of(rel, seed, valid_fraction, test_fraction)
            for k, piece in enumerate(pieces):
                clip = loudness_normalize(piece, SAMPLE_RATE) if normalize else piece
                writer.add(clip, split, f"im-{n:06d}-{k:03d}", source=rel, source_offset=round(
                    sum(len(p) for p in pieces[:k]) / SAMPLE_RATE, 3), **fields)
                report.clips += 1
                report.seconds += len(piece) / SAMPLE_RATE
        if report.clips == 0:
            raise DatasetError(f"none of the {len(files)} audio files under {src} could be imported",
                               "see the reasons listed above; " + "; ".join(f"{f}: {r}" for f, r in report.skipped[:3]))
        writer.info["skipped"] = [{"file": f, "reason": r} for f, r in report.skipped]
        writer.info["metadata_unmatched"] = sorted(unmatched)
    return report
