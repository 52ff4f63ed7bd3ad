"""Write a dataset folder atomically: audio and manifest go to a hidden temp folder, renamed into place at the end.

A failed or interrupted build leaves nothing at the output path (and an existing dataset there untouched).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tokenwave import SAMPLE_RATE, __version__
from tokenwave.audio import save_audio
from tokenwave.data.manifest import INFO, MANIFEST, SPLITS, atomic_write_text, write_manifest
from tokenwave.errors import InvalidArgumentError, OutputPathError

MAX_MINUTES = 6000.0


def check_minutes(minutes: float) -> float:
    if not np.isfinite(minutes) or minutes <= 0:
        raise InvalidArgumentError(f"--minutes must be positive, got {minutes}", "pass a size such as --minutes 2")
    if minutes > MAX_MINUTES:
        raise InvalidArgumentError(f"--minutes {minutes} is over the limit of {MAX_MINUTES:.0f}", "build in parts or ask for less")
    return float(minutes)


def check_output_dir(out: Path, overwrite: bool) -> Path:
    """Fail early, with a fix, if ``out`` cannot be (re)written."""
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise OutputPathError(f"{out} exists and is a file", "choose a folder path for --out")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise OutputPathError(f"{out} already exists and is not empty", "pass --overwrite or choose another --out")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OutputPathError(f"cannot create {out}: {parent} is a file", "choose a folder path for --out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write to {parent} (permission denied)", "choose a writable --out folder")
    return out


class DatasetWriter:
    """Context manager collecting clips into ``out`` (24 kHz mono FLAC under ``audio/<split>/``)."""

    def __init__(self, out: str | os.PathLike, domain: str, info: dict[str, Any], overwrite: bool = False,
                 sample_rate: int = SAMPLE_RATE) -> None:
        self.out = check_output_dir(Path(out), overwrite)
        self.domain = domain
        self.info = dict(info)
        self.sample_rate = sample_rate
        self.rows: list[dict] = []
        self.tmp = self.out.parent / f".{self.out.name}.partial-{os.getpid()}"

    def __enter__(self) -> DatasetWriter:
        try:
            if self.tmp.exists():
                shutil.rmtree(self.tmp)
            self.tmp.mkdir(parents=True)
        except OSError as err:
            raise OutputPathError(f"cannot create {self.tmp}: {err.strerror}", "choose a writable --out folder") from err
        self.started = time.time()
        return self

    def add(self, wav: np.ndarray, split: str, clip_id: str, **fields: Any) -> dict:
        """Save one clip (float32 ``[N]`` at the writer's rate) and record its manifest row."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rel = Path("audio") / split / f"{clip_id}.flac"
        save_audio(self.tmp / rel, wav, self.sample_rate)
        row = {"id": clip_id, "path": rel.as_posix(), "duration": round(len(wav) / self.sample_rate, 4),
               "sample_rate": self.sample_rate, "domain": self.domain, "split": split, **fields}
        self.rows.append(row)
        return row

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        try:
            write_manifest(self.rows, self.tmp / MANIFEST)
            hours = {s: round(sum(r["duration"] for r in self.rows if r["split"] == s) / 3600, 5) for s in SPLITS}
            info = {"domain": self.domain, "tokenwave": __version__, "sample_rate": self.sample_rate,
                    "clips": len(self.rows), "hours": hours, "build_seconds": round(time.time() - self.started, 1),
                    **self.info}
            atomic_write_text(self.tmp / INFO, json.dumps(info, indent=2, ensure_ascii=False) + "\n")
            trash = None
            if self.out.exists():
                trash = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
                os.replace(self.out, trash)
            os.replace(self.tmp, self.out)
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        except BaseException:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise


def render_in_order(jobs: Iterable[Any], render: Callable[[Any], Any], workers: int = 2, lookahead: int = 8) -> Iterator[tuple[Any, Any]]:
    """Yield ``(job, render(job))`` in job order, rendering up to ``lookahead`` jobs ahead on ``workers`` threads.

    Threads suit renderers that spend their time in subprocesses (espeak-ng, fluidsynth) or numpy.
    Stopping the iteration early cancels the jobs not yet started.
    """
    it = iter(jobs)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[tuple[Any, Any]] = []
        try:
            for job in it:
                pending.append((job, pool.submit(render, job)))
                if len(pending) >= lookahead:
                    j, fut = pending.pop(0)
                    yield j, fut.result()
            while pending:
                j, fut = pending.pop(0)
                yield j, fut.result()
        finally:
            for _, fut in pending:
                fut.cancel()


def split_schedule(index: int, valid_every: int = 10, test_every: int = 10) -> str:
    """Deterministic split for the ``index``-th clip: 1 in ``test_every`` test, 1 in ``valid_every`` valid, rest train."""
    if index % test_every == test_every - 1:
        return "test"
    if index % valid_every == valid_every // 2 - 1:
        return "valid"
    return "train"


def check_audio(wav: np.ndarray, what: str, min_rms: float = 1e-3) -> np.ndarray:
    """Refuse silent, non-finite or clipped renders: a builder bug must not produce a bad dataset quietly."""
    wav = np.asarray(wav, dtype=np.float32)
    if len(wav) == 0 or not np.all(np.isfinite(wav)):
        raise RuntimeError(f"render of {what} is empty or not finite")
    rms = float(np.sqrt(np.mean(wav.astype(np.float64) ** 2)))
    if rms < min_rms:
        raise RuntimeError(f"render of {what} is silent (rms {rms:.2e})")
    return wav
