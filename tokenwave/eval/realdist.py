"""Distance of generated audio to real recordings: render prompts, embed the clips, Fréchet distance to the
embeddings of a real dataset's held-out clips (FAD when the embedding is an audio model's).

- :func:`distance_to_real`: a music / sfx task, prompts and seeds -> Fréchet distance of its renders to a real split.
- :func:`real_halves`: a real split cut into two halves of whole groups (tracks, files), so that the distance
  between the halves shows what "close" means for these recordings (the floor).
- :func:`embed_clips` / :func:`embed_rows`: waveforms or manifest rows -> ``[N, D]`` embeddings, each clip cut to
  the same length first so that every set is judged on equal footing.

An embedding is any callable ``embed(wav [N], sr) -> [D]`` (e.g. :meth:`tokenwave.eval.judges.SfxEmbedding.embed`).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from tokenwave.audio import load_audio
from tokenwave.data.manifest import audio_path, read_manifest
from tokenwave.errors import InvalidArgumentError
from tokenwave.eval.frechet import frechet_distance

Embed = Callable[[np.ndarray, int], np.ndarray]


def group_of(row: dict) -> str:
    """What a manifest row belongs to as a whole: its track (``piece``) or else its source file."""
    return str(row.get("piece") or f"{row.get('package', '')}:{row.get('source', row['id'])}")


def real_halves(rows: list[dict], seed: int = 0, per_half: int | None = None) -> tuple[list[dict], list[dict]]:
    """Manifest rows -> two halves holding whole groups (:func:`group_of`), groups dealt alternately after a seeded
    shuffle; each half then keeps at most ``per_half`` rows (a seeded draw, in id order). Same seed, same halves."""
    groups = sorted({group_of(r) for r in rows})
    if len(groups) < 2:
        raise InvalidArgumentError(f"halves need rows from at least 2 tracks or files, got {len(groups)}",
                                   "pass a split with more recordings")
    order = np.random.default_rng(seed).permutation(len(groups))
    side = {groups[g]: i % 2 for i, g in enumerate(order)}
    halves = []
    for h in (0, 1):
        part = sorted((r for r in rows if side[group_of(r)] == h), key=lambda r: r["id"])
        if per_half is not None and len(part) > per_half:
            keep = np.sort(np.random.default_rng(seed + 1 + h).choice(len(part), per_half, replace=False))
            part = [part[i] for i in keep]
        halves.append(part)
    return halves[0], halves[1]


def crop(wav: np.ndarray, sr: int, seconds: float | None) -> np.ndarray:
    """A mono waveform -> its first ``seconds`` (all of it when ``None`` or shorter)."""
    x = np.asarray(wav, dtype=np.float32).reshape(-1)
    return x if seconds is None else x[: round(seconds * sr)]


def embed_clips(wavs: Sequence[np.ndarray], sr: int, embed: Embed, seconds: float | None = None) -> np.ndarray:
    """Waveforms at ``sr`` Hz -> ``[N, D]`` float64 embeddings of their first ``seconds``."""
    if not wavs:
        raise InvalidArgumentError("no clips to embed", "pass at least two clips")
    return np.stack([np.asarray(embed(crop(w, sr, seconds), sr), dtype=np.float64).reshape(-1) for w in wavs])


def load_rows(dataset: str | os.PathLike, rows: list[dict], sr: int) -> list[np.ndarray]:
    """Manifest rows of ``dataset`` -> their waveforms at ``sr`` Hz (``[N]`` each)."""
    return [load_audio(audio_path(dataset, r), sr)[0] for r in rows]


def embed_rows(dataset: str | os.PathLike, rows: list[dict], embed: Embed, sr: int,
               seconds: float | None = None) -> np.ndarray:
    """Manifest rows of ``dataset`` -> ``[N, D]`` embeddings of their audio (loaded at ``sr`` Hz, cut to ``seconds``)."""
    return embed_clips(load_rows(dataset, rows, sr), sr, embed, seconds)


def render(task, prompts: Sequence[str], seeds: Sequence[int], seconds: float,
           generator: str | None = None) -> list[np.ndarray]:
    """A music / sfx task -> one ``seconds`` clip (at most 10 s) per (prompt, seed), unwatermarked, at
    ``task.sample_rate``, through the task's evaluation entry ``generate_row`` as the evaluation suite renders."""
    if len(prompts) != len(seeds):
        raise InvalidArgumentError(f"{len(prompts)} prompts but {len(seeds)} seeds", "give one seed per prompt")
    return [np.asarray(task.generate_row({"caption": p, "duration": seconds}, "", seed=int(s), generator=generator),
                       dtype=np.float32).reshape(-1) for p, s in zip(prompts, seeds)]


def distance_to_real(task, real_dataset: str | os.PathLike, prompts: Sequence[str], seeds: Sequence[int],
                     embed: Embed, *, seconds: float = 6.0, generator: str | None = None, split: str = "test",
                     reference: np.ndarray | None = None, reference_rows: list[dict] | None = None) -> dict:
    """A task, prompts with one seed each and an embedding -> ``{"fd", "clips", "real_clips", "embeddings" [N, D],
    "wavs"}``: the Fréchet distance between the renders (``seconds`` long) and the real clips (their first
    ``seconds``). The real side is ``reference`` (embeddings computed before, e.g. shared by several generators),
    else ``reference_rows`` of ``real_dataset``, else its whole ``split``. Same seeds, same figure."""
    if reference is None:
        rows = reference_rows if reference_rows is not None else read_manifest(real_dataset, split)
        reference = embed_rows(real_dataset, rows, embed, task.sample_rate, seconds)
    wavs = render(task, prompts, seeds, seconds, generator)
    emb = embed_clips(wavs, task.sample_rate, embed, seconds)
    return {"fd": frechet_distance(emb, reference), "clips": len(wavs), "real_clips": len(reference),
            "embeddings": emb, "wavs": wavs}


__all__ = ["Embed", "crop", "distance_to_real", "embed_clips", "embed_rows", "group_of", "load_rows", "real_halves",
           "render"]
