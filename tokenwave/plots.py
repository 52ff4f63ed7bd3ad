"""Figures people would rather look at than numbers: spectrogram grids and curves, saved as PNG atomically."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import json

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tokenwave.audio.spectrogram import log_mel_spectrogram  # noqa: E402
from tokenwave.fileio import atomic_path  # noqa: E402


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically and close it."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return Path(path)


def spectrogram_grid(items: Sequence[tuple[str, np.ndarray, int]], path: str | os.PathLike, cols: int = 2) -> Path:
    """Log-mel spectrograms of ``(title, wav [N], sample_rate)`` items in a grid, written to ``path`` (PNG)."""
    if not items:
        raise ValueError("spectrogram_grid needs at least one item")
    rows = (len(items) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 2.6 * rows), squeeze=False)
    for ax, (title, wav, sr) in zip(axes.flat, items):
        mel = log_mel_spectrogram(wav, sr)
        ax.imshow(mel, origin="lower", aspect="auto", cmap="magma",
                  extent=(0, len(wav) / sr, 0, mel.shape[0]), vmin=mel.max() - 7, vmax=mel.max())  # 70 dB
        ax.set_title(title if len(title) <= 70 else title[:67] + "...", fontsize=8)
        ax.set_xlabel("seconds", fontsize=7)
        ax.set_ylabel("mel bin", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)



def training_curves(log: str | os.PathLike, path: str | os.PathLike, title: str = "",
                    ylabel: str = "cross-entropy (nats)") -> Path:
    """Training loss (smoothed) and validation loss against steps, from a run's ``log.jsonl``."""
    import matplotlib.pyplot as plt  # lazy: matplotlib (half a second to import) only when a figure is drawn

    rows = [json.loads(line) for line in Path(log).read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
    valid = [(r["validation"]["step"], r["validation"]["valid_loss"]) for r in rows if "validation" in r]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    if train:
        s, v = map(np.asarray, zip(*train))
        k = max(1, len(v) // 20)
        smooth = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(s, v, color="#9bc", lw=0.8, label="train loss")
        ax.plot(s[k - 1:], smooth, color="#26a", lw=1.5, label=f"train loss (mean of {k})")
    if valid:
        s, v = zip(*valid)
        ax.plot(s, v, "o-", color="#c52", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title or Path(log).parent.name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
