"""The dataset manifest: one JSON object per clip, in ``manifest.jsonl`` next to the audio.

Every row has ``id``, ``path`` (relative to the dataset folder), ``duration`` (seconds), ``sample_rate``,
``domain`` (speech | music | sfx | custom) and ``split`` (train | valid | test); builders add their own
fields (text, phonemes, speaker, caption, tags, melody, ...). ``dataset.json`` beside it records how the
dataset was made.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from tokenwave.errors import DatasetError
from tokenwave.fileio import atomic_write_bytes, atomic_write_text  # noqa: F401 (re-exported)

MANIFEST = "manifest.jsonl"
INFO = "dataset.json"
SPLITS = ("train", "valid", "test")
REQUIRED_FIELDS = ("id", "path", "duration", "domain", "split")


def write_manifest(rows: Iterable[dict], path: Path) -> None:
    atomic_write_text(Path(path), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_manifest(dataset: str | os.PathLike, split: str | None = None) -> list[dict]:
    """Rows of ``dataset/manifest.jsonl`` (or of a manifest file given directly), optionally one split only."""
    dataset = Path(dataset)
    path = dataset / MANIFEST if dataset.is_dir() else dataset
    if not path.exists():
        raise DatasetError(
            f"no dataset manifest at {path}",
            "build one with `tokenwave data build …` or `tokenwave data import …`, or pass the dataset folder",
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}:{n} is not valid JSON ({err.msg})", "rebuild the dataset") from err
            missing = [k for k in REQUIRED_FIELDS if k not in row]
            if missing:
                raise DatasetError(f"{path}:{n} lacks {', '.join(missing)}", "rebuild the dataset with this version")
            if split is None or row["split"] == split:
                rows.append(row)
    return rows


def audio_path(dataset: str | os.PathLike, row: dict) -> Path:
    """Absolute path of a manifest row's audio file."""
    return Path(dataset) / row["path"]
