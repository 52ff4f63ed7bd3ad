"""Pre-tokenised datasets: every clip encoded once by a codec, so generators train on codes, not audio.

A tokens folder holds ``codes.safetensors`` (one ``int16 [K, frames]`` tensor per split, clips end to end),
``index.jsonl`` (one row per clip: its manifest fields plus ``offset`` and ``frames`` into its split's tensor)
and ``tokens.json`` (codec: its path and ``codec_hash``, its content hash; rates, K, codebook size). A latents folder (for the flow generator) is laid out the
same way: ``latents.safetensors`` (float16 ``[D, frames]`` per split), ``index.jsonl`` and ``latents.json``
(rates, D and the latents' mean/std).
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


def _encode_clips(datasets: list[str | os.PathLike], encode, sample_rate: int, what: str
                  ) -> tuple[dict[str, list[np.ndarray]], list[dict], dict[str, int]]:
    """Run ``encode(wav [1, 1, N]) -> array [C, frames]`` on every clip of ``datasets``: per-split arrays, the
    index rows (manifest fields + ``offset``/``frames`` into the split) and the frames per split."""
    rows = [(d, r) for d in datasets for r in read_manifest(d)]
    if not rows:
        raise DatasetError("the datasets hold no clips", "build or import a dataset first")
    per_split: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    offsets = {s: 0 for s in SPLITS}
    index = []
    with progress_bar(what, total=len(rows), unit="clips") as bar:
        for d, r in rows:
            wav, _ = load_audio(audio_path(d, r), sample_rate)
            arr = encode(torch.from_numpy(wav)[None, None])
            s = r["split"]
            per_split[s].append(arr)
            index.append({**r, "dataset": str(Path(d).absolute()), "offset": offsets[s], "frames": arr.shape[1]})
            offsets[s] += arr.shape[1]
            bar.advance()
    return per_split, index, offsets


def _write_folder(out: Path, tensors_file: str, per_split: dict[str, list[np.ndarray]], index: list[dict],
                  info_file: str, info: dict) -> None:
    """Write ``tensors_file`` (one ``[C, frames]`` tensor per split), ``index.jsonl`` and ``info_file`` into ``out``,
    atomically (a partial folder beside it, swapped in at the end)."""
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        tensors = {s: torch.from_numpy(np.concatenate(v, axis=1)) for s, v in per_split.items() if v}
        save_file(tensors, str(tmp / tensors_file))
        write_manifest(index, tmp / "index.jsonl")
        (tmp / info_file).write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@torch.no_grad()
def tokenize(datasets: list[str | os.PathLike], out: str | os.PathLike, codec, n_q: int | None = None,
             codec_name: str = "", overwrite: bool = False) -> Path:
    """Encode every clip of ``datasets`` with ``codec`` (``n_q`` codebooks) into a tokens folder at ``out``."""
    out = check_output_dir(Path(out), overwrite)
    n_q = n_q or codec.n_q
    per_split, index, offsets = _encode_clips(
        datasets, lambda wav: codec.encode(wav, n_q)[0].numpy().astype(np.int16), codec.sample_rate, "tokenize")
    info = {"codec": codec_name, "codec_hash": codec.content_hash(), "sample_rate": codec.sample_rate,
            "frame_rate": codec.frame_rate, "K": n_q, "codebook_size": codec.codebook_size, "clips": len(index),
            "frames": offsets}
    _write_folder(out, "codes.safetensors", per_split, index, "tokens.json", info)
    return out


@torch.no_grad()
def extract_latents(datasets: list[str | os.PathLike], out: str | os.PathLike, codec, codec_name: str = "",
                    overwrite: bool = False) -> Path:
    """Encode every clip of ``datasets`` to continuous latents (``codec.encode_latents``, 75 Hz) into a latents
    folder at ``out``: ``latents.safetensors`` (float16 ``[D, frames]`` per split), ``index.jsonl`` and
    ``latents.json`` (rates, D, and the train split's per-channel ``mean``/``std`` and overall ``std``)."""
    if not hasattr(codec, "encode_latents"):
        raise DatasetError(f"{type(codec).__name__} has no continuous latents", "use a tokenwave codec checkpoint")
    out = check_output_dir(Path(out), overwrite)
    per_split, index, offsets = _encode_clips(
        datasets, lambda wav: codec.encode_latents(wav)[0].float().numpy().astype(np.float16), codec.sample_rate,
        "latents")
    stats_split = next(s for s in SPLITS if per_split[s])  # train when there is one
    z = np.concatenate(per_split[stats_split], axis=1).astype(np.float64)
    info = {"codec": codec_name, "codec_hash": codec.content_hash(), "sample_rate": codec.sample_rate,
            "frame_rate": codec.frame_rate, "latent_dim": int(z.shape[0]), "clips": len(index), "frames": offsets,
            "stats": {"split": stats_split, "mean": z.mean(1).round(6).tolist(), "std": z.std(1).round(6).tolist(),
                      "overall_mean": round(float(z.mean()), 6), "overall_std": round(float(z.std()), 6)}}
    _write_folder(out, "latents.safetensors", per_split, index, "latents.json", info)
    return out


def source_groups(rows: list[dict]) -> list[list[int]]:
    """Row indices grouped by the dataset folder each clip came from (``dataset``), in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(str(r.get("dataset", "")), []).append(i)
    return list(groups.values())


def _sample_windows(data: torch.Tensor, rows: list[dict], rng: np.random.Generator, batch: int, frames: int,
                    groups: list[list[int]] | None = None) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """Random windows ``[B, C, frames]`` of clips (``rows``) laid end to end in ``data [C, N]``, zero-padded, with
    their lengths ``[B]`` and rows (each with ``window_start``: the window's first frame within its clip). Clips
    are drawn uniformly, or with ``groups`` (:func:`source_groups`) a group first, uniformly, then a clip in it:
    each source dataset gets an equal share of the windows, however many clips it holds."""
    out = torch.zeros(batch, data.shape[0], frames, dtype=data.dtype)
    lengths = torch.zeros(batch, dtype=torch.long)
    picked = []
    for b in range(batch):
        if groups:
            g = groups[rng.integers(len(groups))]
            r = rows[g[rng.integers(len(g))]]
        else:
            r = rows[rng.integers(len(rows))]
        within = int(rng.integers(r["frames"] - frames + 1)) if r["frames"] > frames else 0
        start = r["offset"] + within
        n = min(frames, r["frames"])
        out[b, :, :n] = data[:, start: start + n]
        lengths[b] = n
        picked.append({**r, "window_start": within})
    return out, lengths, picked


def open_split(folder: str | os.PathLike, kind: str, split: str) -> tuple[dict, torch.Tensor, list[dict]]:
    """A ``kind`` ("tokens" or "latents") folder and a split -> ``(info, tensor [C, frames], rows)``: the folder's
    info, the split's clips end to end and their index rows."""
    folder = Path(folder)
    tensors_file = {"tokens": "codes.safetensors", "latents": "latents.safetensors"}[kind]
    if not (folder / f"{kind}.json").exists():
        raise DatasetError(f"no {kind} folder at {folder}",
                           f"make one with `tokenwave codec {'tokenize' if kind == 'tokens' else 'latents'} --data DIR --out {kind.upper()}`")
    tensors = load_file(str(folder / tensors_file))
    if split not in tensors:
        raise DatasetError(f"{folder} has no {split!r} clips", "encode a dataset that has that split")
    rows = [r for r in read_manifest(folder / "index.jsonl") if r["split"] == split]
    return json.loads((folder / f"{kind}.json").read_text()), tensors[split], rows


class TokenDataset:
    """Random windows of ``frames`` frames from one split of a tokens folder (shorter clips come padded, with lengths)."""

    def __init__(self, folder: str | os.PathLike, split: str, seed: int = 0, balance: bool = False) -> None:
        self.info, codes, self.rows = open_split(folder, "tokens", split)
        self.codes = codes.long()
        self.rng = np.random.default_rng(seed)
        self.groups = source_groups(self.rows) if balance else None

    def sample(self, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        """``(codes [B, K, frames], lengths [B], rows)``; frames past a clip's end are zeros (mask them by length)."""
        return _sample_windows(self.codes, self.rows, self.rng, batch, frames, self.groups)


class LatentDataset:
    """Random windows of ``frames`` frames from one split of a latents folder (``tokenwave codec latents``)."""

    def __init__(self, folder: str | os.PathLike, split: str, seed: int = 0, balance: bool = False) -> None:
        self.info, latents, self.rows = open_split(folder, "latents", split)
        self.latents = latents.float()
        self.rng = np.random.default_rng(seed)
        self.groups = source_groups(self.rows) if balance else None

    def sample(self, batch: int, frames: int) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        """``(latents [B, D, frames], lengths [B], rows)``; frames past a clip's end are zeros (mask them by length);
        with ``balance``, each source dataset gives an equal share (:func:`source_groups`)."""
        return _sample_windows(self.latents, self.rows, self.rng, batch, frames, self.groups)
