"""Random fixed-length segments from one or more dataset folders, held in memory, for training."""
from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

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
    ``workers``: threads that decode the clips at start (libsndfile and soxr release the GIL; the order, and so every
    batch, is the same for any count). :meth:`keep_on` moves the clips onto a device and builds batches there.
    """

    def __init__(self, datasets: Sequence[str | os.PathLike], split: str, segment: int, seed: int = 0,
                 max_clips: int | None = None, gain_db: tuple[float, float] = (-6.0, 3.0), workers: int = 1) -> None:
        self.segment, self.gain_db = segment, gain_db
        self.store: torch.Tensor | None = None  # every clip end to end on a device (:meth:`keep_on`), else None
        self.rng = np.random.default_rng(seed)
        self.clips: dict[str, list[np.ndarray]] = {}
        self.ids: dict[str, list[str]] = {}  # each clip's manifest id, in the order of ``clips``
        self.bands: dict[str, list[float]] = {}  # each clip's bandwidth in Hz (:func:`clip_bandwidth`)
        rows = [(d, r) for d in datasets for r in read_manifest(d, split)]
        if max_clips is not None:
            rows = rows[:max_clips]
        if not rows:
            raise DatasetError(f"no {split!r} clips in {', '.join(map(str, datasets))}", "build or import a dataset first")
        with progress_bar(f"loading {split} audio", total=len(rows), unit="clips") as bar, \
                ThreadPoolExecutor(max(1, workers)) as pool:
            loaded = pool.map(lambda dr: load_audio(audio_path(*dr), SAMPLE_RATE)[0], rows)  # in the order of rows
            for (d, r), wav in zip(rows, loaded):
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

    def keep_on(self, device: str | torch.device) -> SegmentSampler:
        """Move every clip onto ``device`` (one float32 tensor, clips end to end): each batch is then gathered there,
        bit-identical to the host batch of the same seed, with no per-item copy on the CPU (a GPU step is not held
        up by numpy). Returns self."""
        flat = [w for d in self.domains for w in self.clips[d]]
        self.store = torch.from_numpy(np.concatenate(flat) if flat else np.zeros(0, np.float32)).to(device)
        ends = np.cumsum([len(w) for w in flat])
        self.store_at, k = {}, 0  # domain -> each clip's first sample in the store
        for d in self.domains:
            n = len(self.clips[d])
            self.store_at[d] = (ends[k: k + n] - [len(w) for w in self.clips[d]]).astype(np.int64)
            k += n
        # rng.choice(n, p=w) draws one rng.random() and searches the normalised cumulative sum: the same draw, with
        # the cumulative sum made once instead of per item (choice also re-checks p every call: 6 ms a batch of 64)
        self.cdf = {d: np.cumsum(w) / np.cumsum(w)[-1] for d, w in self.weights.items()}
        return self

    def draw(self, batch_size: int, align: int = 1, with_bandwidth: bool = False):
        """A batch and where each item comes from: ``(clip id, first sample)``; ``align``: starts fall on multiples
        of it (a codec hop, so the segment's frames are the clip's frames); ``with_bandwidth``: each item's bandwidth
        in Hz as a third element."""
        if self.store is not None:
            return self._draw_kept(batch_size, align, with_bandwidth)
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

    def _draw_kept(self, batch_size: int, align: int, with_bandwidth: bool):
        """:meth:`draw` from the clips kept on a device: the same random draws in the same order, then one gather."""
        first, length, gain, where, bands = [], [], [], [], []
        for _ in range(batch_size):
            domain = self.domains[self.rng.integers(len(self.domains))]
            i = int(self.cdf[domain].searchsorted(self.rng.random(), side="right"))
            n, start = len(self.clips[domain][i]), 0
            if n > self.segment:
                start = int(self.rng.integers((n - self.segment) // align + 1)) * align
            gain.append(10 ** (self.rng.uniform(*self.gain_db) / 20))
            first.append(int(self.store_at[domain][i]) + start)
            length.append(min(self.segment, n - start))
            where.append((self.ids[domain][i], start))
            bands.append(self.bands[domain][i])
        dev = self.store.device
        pos = torch.arange(self.segment, device=dev)
        first_t = torch.tensor(first, dtype=torch.long).to(dev, non_blocking=True)
        inside = pos < torch.tensor(length, dtype=torch.long).to(dev, non_blocking=True)[:, None]
        idx = (first_t[:, None] + pos).clamp_max(len(self.store) - 1)
        gain_t = torch.tensor(gain, dtype=torch.float32).to(dev, non_blocking=True)[:, None]
        # float32 product and clip as numpy's (the gain rounded to float32 first); past a clip's end: zeros
        piece = self.store.index_select(0, idx.reshape(-1)).view(batch_size, self.segment)
        out = torch.where(inside, (piece * gain_t).clamp(-1, 1), 0.0)[:, None]
        return (out, where, bands) if with_bandwidth else (out, where)

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
