"""Random fixed-length segments from one or more dataset folders, held in memory, for training."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from tokenwave import SAMPLE_RATE
from tokenwave.audio import load_audio
from tokenwave.data.manifest import audio_path, read_manifest
from tokenwave.errors import DatasetError
from tokenwave.progress import progress_bar


class SegmentSampler:
    """Draws ``[B, 1, segment]`` batches: a domain uniformly, then a clip in proportion to its length, then an offset.

    Clips shorter than a segment are zero-padded. Deterministic under ``seed`` (numpy Generator, state saveable).
    """

    def __init__(self, datasets: Sequence[str | os.PathLike], split: str, segment: int, seed: int = 0,
                 max_clips: int | None = None, gain_db: tuple[float, float] = (-6.0, 3.0)) -> None:
        self.segment, self.gain_db = segment, gain_db
        self.rng = np.random.default_rng(seed)
        self.clips: dict[str, list[np.ndarray]] = {}
        self.ids: dict[str, list[str]] = {}  # each clip's manifest id, in the order of ``clips``
        self.bands: dict[str, list[float]] = {}  # each clip's bandwidth in Hz (:func:`clip_bandwidth`)
        rows = [(d, r) for d in datasets for r in read_manifest(d, split)]
        if max_clips is not None:
            rows = rows[:max_clips]
        if not rows:
            raise DatasetError(f"no {split!r} clips in {', '.join(map(str, datasets))}", "build or import a dataset first")
        with progress_bar(f"loading {split} audio", total=len(rows), unit="clips") as bar:
            for d, r in rows:
                wav, _ = load_audio(audio_path(d, r), SAMPLE_RATE)
                self.clips.setdefault(r["domain"], []).append(wav)
                self.ids.setdefault(r["domain"], []).append(r["id"])
                self.bands.setdefault(r["domain"], []).append(clip_bandwidth(r))
                bar.advance()
        self.domains = sorted(self.clips)
        self.weights = {d: np.array([len(w) for w in c], dtype=np.float64) / sum(len(w) for w in c) for d, c in self.clips.items()}

    @property
    def seconds(self) -> float:
        return sum(len(w) for c in self.clips.values() for w in c) / SAMPLE_RATE

    def sample(self, batch_size: int) -> torch.Tensor:
        return self.draw(batch_size)[0]

    def sample_banded(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch ``[B, 1, segment]`` (the same draw as :meth:`sample`) and each item's bandwidth ``[B]`` in Hz."""
        wav, _, bands = self.draw(batch_size, with_bandwidth=True)
        return wav, torch.tensor(bands, dtype=torch.float32)

    def draw(self, batch_size: int, align: int = 1, with_bandwidth: bool = False):
        """A batch and where each item comes from: ``(clip id, first sample)``; ``align``: starts fall on multiples
        of it (a codec hop, so the segment's frames are the clip's frames); ``with_bandwidth``: each item's bandwidth
        in Hz as a third element."""
        out = np.zeros((batch_size, 1, self.segment), dtype=np.float32)
        where, bands = [], []
        for b in range(batch_size):
            domain = self.domains[self.rng.integers(len(self.domains))]
            i = self.rng.choice(len(self.clips[domain]), p=self.weights[domain])
            wav, start = self.clips[domain][i], 0
            if len(wav) > self.segment:
                start = int(self.rng.integers((len(wav) - self.segment) // align + 1)) * align
            piece = wav[start: start + self.segment]
            gain = 10 ** (self.rng.uniform(*self.gain_db) / 20)
            out[b, 0, : len(piece)] = np.clip(piece * gain, -1, 1)
            where.append((self.ids[domain][i], start))
            bands.append(self.bands[domain][i])
        return (torch.from_numpy(out), where, bands) if with_bandwidth else (torch.from_numpy(out), where)

    def fixed(self, count: int, seconds: float) -> list[tuple[str, torch.Tensor]]:
        """Up to ``count`` clips per domain (first ``seconds`` of each), for validation: ``[(domain, [1, 1, N])]``."""
        n = int(seconds * SAMPLE_RATE)
        return [(d, torch.from_numpy(w[:n].copy())[None, None]) for d in self.domains for w in self.clips[d][:count]]

    def fixed_ids(self, count: int) -> list[str]:
        """The ids of the clips :meth:`fixed` returns, in its order."""
        return [i for d in self.domains for i in self.ids[d][:count]]


def clip_bandwidth(row: dict) -> float:
    """A manifest row -> the highest frequency its original recording holds, in Hz: ``bandwidth_hz`` where the builder
    measured it (real recordings), else half its ``original_sample_rate``, else the working rate's Nyquist frequency."""
    nyquist = SAMPLE_RATE / 2
    if row.get("bandwidth_hz"):
        return float(min(row["bandwidth_hz"], nyquist))
    if row.get("original_sample_rate"):
        return float(min(row["original_sample_rate"] / 2, nyquist))
    return float(nyquist)
