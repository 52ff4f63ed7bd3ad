"""Eval reports: ``metrics.json`` (summary + per-item figures), ``report.md`` (tables and notes) and PNG plots
(a spectrogram grid of the first items for every system, a bar chart of the summary metrics per system)."""
from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tokenwave.fileio import atomic_write_text
from tokenwave.plots import plt, save_figure, spectrogram_grid


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v).replace("|", "/").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def metric_bars(summary: dict[str, dict[str, float]], path: str | os.PathLike) -> Path:
    """One small bar chart per metric, a bar per system (``summary[system][metric]``)."""
    systems = list(summary)
    metrics = sorted({m for s in summary.values() for m, v in s.items() if isinstance(v, (int, float))})
    cols = min(4, max(1, len(metrics)))
    rows = max(1, math.ceil(len(metrics) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, m in zip(axes.flat, metrics):
        vals = [summary[s].get(m, np.nan) for s in systems]
        ax.bar(range(len(systems)), vals, color=[colors[i % len(colors)] for i in range(len(systems))])
        ax.set_xticks(range(len(systems)), systems, fontsize=7, rotation=20)
        ax.set_title(m, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(out: str | os.PathLike, title: str, summary: dict[str, dict[str, float]], items: list[dict],
                 examples: list[tuple[str, np.ndarray, int]], notes: Sequence[str] = (), meta: dict | None = None) -> Path:
    """Write ``out/metrics.json``, ``out/report.md``, ``out/metrics.png`` and ``out/spectrograms.png``.

    ``summary[system][metric]`` holds the aggregate figures (systems: generated, reference, codec floor, ...),
    ``items`` one dict per evaluated clip, ``examples`` ``(title, wav, sr)`` spectrograms to show, ``notes`` lines
    that say how to read the figures (floors, calibration)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = meta or {}
    atomic_write_text(out / "metrics.json", json.dumps({"title": title, **meta, "summary": summary, "notes": list(notes),
                                                        "items": items}, indent=2, default=float) + "\n")
    metric_bars(summary, out / "metrics.png")
    if examples:
        spectrogram_grid(examples, out / "spectrograms.png", cols=min(3, len(examples)))
    metrics = sorted({m for s in summary.values() for m in s})
    md = [f"# {title}", ""]
    md += [f"- {k}: {_fmt(v)}" for k, v in meta.items()] + [""]
    md += ["## Summary", "", _md_table(["system", *metrics], [[s, *[summary[s].get(m, "") for m in metrics]] for s in summary]), ""]
    if notes:
        md += ["## How to read it", "", *[f"- {n}" for n in notes], ""]
    md += ["![metrics](metrics.png)", ""]
    if examples:
        md += ["## Spectrograms", "", "![spectrograms](spectrograms.png)", ""]
    if items:
        cols = list(dict.fromkeys(k for it in items for k in it))
        md += ["## Per item", "", _md_table(cols, [[it.get(c, "") for c in cols] for it in items]), ""]
    atomic_write_text(out / "report.md", "\n".join(md))
    return out


def training_figure(run: str | os.PathLike, path: str | os.PathLike, keys: Sequence[str]) -> Path:
    """Training loss and the validation figures ``keys`` over steps, from a run folder's ``log.jsonl`` (PNG)."""
    lines = [json.loads(x) for x in (Path(run) / "log.jsonl").read_text().splitlines() if x.strip()]
    train = [x for x in lines if "loss" in x]
    val = [x["validation"] for x in lines if "validation" in x]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.2))
    a.plot([x["step"] for x in train], [x["loss"] for x in train])
    a.set_title("training loss", fontsize=9)
    a.set_xlabel("step")
    for k in keys:
        b.plot([v["step"] for v in val if k in v], [v[k] for v in val if k in v], marker="o", label=k)
    b.set_title("validation", fontsize=9)
    b.set_xlabel("step")
    b.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)
