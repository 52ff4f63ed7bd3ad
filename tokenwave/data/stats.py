"""Dataset statistics: counts and hours per split, speakers / pieces / recipes, and a PNG of example spectrograms."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from tokenwave.audio import load_audio
from tokenwave.data.manifest import SPLITS, audio_path, read_manifest
from tokenwave.plots import spectrogram_grid

#: The manifest field that names the "source" of a clip in each domain.
GROUP_FIELDS = {"speech": "speaker", "music": "piece", "sfx": "family", "custom": "source"}


def dataset_stats(dataset: str | os.PathLike) -> dict:
    """Counts, hours and distinct sources per split, from the manifest alone (no audio is read)."""
    rows = read_manifest(dataset)
    domains = Counter(r["domain"] for r in rows)
    stats: dict = {"dataset": str(Path(dataset).absolute()), "clips": len(rows), "domains": dict(domains), "splits": {}}
    for split in SPLITS:
        sub = [r for r in rows if r["split"] == split]
        entry = {"clips": len(sub), "hours": round(sum(r["duration"] for r in sub) / 3600, 4),
                 "mean_seconds": round(sum(r["duration"] for r in sub) / max(len(sub), 1), 2)}
        for domain, key in GROUP_FIELDS.items():
            values = {r.get(key) for r in sub if r["domain"] == domain and r.get(key) is not None}
            if values:
                entry[f"{key}s"] = len(values)
        packages = Counter(r["package"] for r in sub if r.get("package"))  # real recordings
        if packages:
            entry["packages"] = len(packages)
            for package, n in sorted(packages.items()):
                stats.setdefault("clips_per_package", {}).setdefault(package, {})[split] = n
        stats["splits"][split] = entry
    return stats


def example_spectrograms(dataset: str | os.PathLike, png: str | os.PathLike, per_split: int = 2) -> Path:
    """Write a grid of log-mel spectrograms of the first ``per_split`` clips of each split to ``png``."""
    rows = read_manifest(dataset)
    picked = [r for s in SPLITS for r in [r for r in rows if r["split"] == s][:per_split]]
    items = []
    for r in picked:
        wav, sr = load_audio(audio_path(dataset, r))
        label = r.get("caption") or r.get("text") or r.get("source") or r["id"]
        who = r.get("speaker") or r.get("instrument") or r.get("family") or ""
        items.append((f"[{r['split']}] {who} — {label}", wav, sr))
    return spectrogram_grid(items, png)
