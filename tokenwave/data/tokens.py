"""Pre-tokenised datasets: every clip encoded once by a codec, so generators train on codes, not audio.

A tokens folder holds ``codes.safetensors`` (one ``int16 [K, frames]`` tensor per split, clips end to end),
``index.jsonl`` (one row per clip: its manifest fields plus ``offset`` and ``frames`` into its split's tensor)
and ``tokens.json`` (codec, rates, K, codebook size).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from tokenwave.audio import load_audio
from tokenwave.data.manifest import SPLITS, audio_path, read_manifest, write_manifest
from tokenwave.data.writer import check_output_dir
from tokenwave.errors import DatasetError
from tokenwave.progress import progress_bar


@torch.no_grad()
def tokenize(datasets: list[str | os.PathLike], out: str | os.PathLike, codec, n_q: int | None = None,
             codec_name: str = "", overwrite: bool = False) -> Path:
    """Encode every clip of ``datasets`` with ``codec`` (``n_q`` codebooks) into a tokens folder at ``out``."""
    out = check_output_dir(Path(out), overwrite)
    rows = [(d, r) for d in datasets for r in read_manifest(d)]
    if not rows:
        raise DatasetError("the datasets hold no clips", "build or import a dataset first")
    n_q = n_q or codec.n_q
    per_split: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    offsets = {s: 0 for s in SPLITS}
    index = []
    with progress_bar("tokenize", total=len(rows), unit="clips") as bar:
        for d, r in rows:
            wav, _ = load_audio(audio_path(d, r), codec.sample_rate)
            codes = codec.encode(torch.from_numpy(wav)[None, None], n_q)[0].numpy().astype(np.int16)
            s = r["split"]
            per_split[s].append(codes)
            index.append({**r, "dataset": str(Path(d).absolute()), "offset": offsets[s], "frames": codes.shape[1]})
            offsets[s] += codes.shape[1]
            bar.advance()
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tensors = {s: torch.from_numpy(np.concatenate(v, axis=1)) for s, v in per_split.items() if v}
        save_file(tensors, str(tmp / "codes.safetensors"))
        write_manifest(index, tmp / "index.jsonl")
        info = {"codec": codec_name, "sample_rate": codec.sample_rate, "frame_rate": codec.frame_rate, "K": n_q,
                "codebook_size": codec.codebook_size, "clips": len(index), "frames": offsets}
        (tmp / "tokens.json").write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


class TokenDataset:
    """Random windows of ``frames`` frames from one split of a tokens folder (shorter clips come padded, with lengths)."""

    def __init__(self, folder: str | os.PathLike, split: str, seed: int = 0) -> None:
        folder = Path(folder)
        if not (folder / "tokens.json").exists():
            raise DatasetError(f"no tokens folder at {folder}", "make one with `tokenwave codec tokenize --data DIR --out TOKENS`")
        self.info = json.loads((folder / "tokens.json").read_text())
        codes = load_file(str(folder / "codes.safetensors"))
        if split not in codes:
            raise DatasetError(f"{folder} has no {split!r} clips", "tokenize a dataset that has that split")
        self.codes = codes[split].long()
        self.rows = [r for r in read_manifest(folder / "index.jsonl") if r["split"] == split]
        self.rng = np.random.default_rng(seed)

    def sample(self, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        """``(codes [B, K, frames], lengths [B], rows)``; frames past a clip's end are zeros (mask them by length)."""
        K = self.codes.shape[0]
        out = torch.zeros(batch, K, frames, dtype=torch.long)
        lengths = torch.zeros(batch, dtype=torch.long)
        picked = []
        for b in range(batch):
            r = self.rows[self.rng.integers(len(self.rows))]
            start = r["offset"] + (self.rng.integers(r["frames"] - frames + 1) if r["frames"] > frames else 0)
            n = min(frames, r["frames"])
            out[b, :, :n] = self.codes[:, start: start + n]
            lengths[b] = n
            picked.append(r)
        return out, lengths, picked
