"""Music/sfx adherence: an audio tagger trained by the project (``tokenwave train tagger``) on real renders of its
music and sfx datasets, shipped in ``checkpoints/eval/tagger``.

Fields: ``domain`` (music | sfx), the music tags ``collection``, ``genre``, ``instrument``, ``tempo`` (band) and
``mode``, and the sfx ``family``. On top of the classifier: tag accuracy against a prompt's tags, MusicGen's KL
between the tag distributions of generated and reference audio (:func:`tag_kl`), and the Fréchet distance between
embedding sets (:func:`frechet_distance`, FAD on this model's embeddings).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.checkpoint import Checkpointable
from tokenwave.eval.encoder import AudioEncoder, EncoderConfig, mel_windows
from tokenwave.paths import default_checkpoint

#: Tag fields per domain, read from a manifest row's ``tags`` (``domain`` from the row itself).
DOMAIN_FIELDS = {"music": ("collection", "genre", "instrument", "tempo", "mode"), "sfx": ("family",)}
IGNORE = -100


@dataclass
class TaggerConfig(EncoderConfig):
    fields: list[str] = field(default_factory=list)          # "domain" first, then the tag fields
    classes: list[list[str]] = field(default_factory=list)   # class names per field
    crop_frames: int = 400                                   # training crop: 4 s of log-mel frames


def row_labels(row: dict) -> dict[str, str]:
    """The tagger's target labels of a manifest row: ``domain`` plus its domain's tag fields that the row has."""
    tags = row.get("tags") or {}
    out = {"domain": row["domain"]}
    out.update({f: str(tags[f]) for f in DOMAIN_FIELDS.get(row["domain"], ()) if f in tags})
    return out


def content_labels(row: dict) -> dict[str, str]:
    """The labels a generated clip's tag accuracy is scored on: :func:`row_labels` without ``domain`` (music or
    sound effect, which the task itself fixes and which would pad the score), unless the row has no other field."""
    out = row_labels(row)
    return {f: v for f, v in out.items() if f != "domain"} or out


def content_accuracy(per_field: dict[str, float]) -> float | None:
    """The mean of :func:`tag_accuracy`'s per-field accuracies without ``domain`` (``None`` when no other field)."""
    vals = [v for f, v in per_field.items() if f not in ("domain", "mean")]
    return float(np.mean(vals)) if vals else None


class Tagger(nn.Module, Checkpointable):
    KIND = "tagger"
    CONFIG = TaggerConfig

    def __init__(self, cfg: TaggerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = AudioEncoder(cfg)
        self.heads = nn.ModuleList([nn.Linear(cfg.emb_dim, len(c)) for c in cfg.classes])

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``[B, n_mels, T]`` -> (embeddings ``[B, emb_dim]``, logits per field ``[B, n_classes]``)."""
        emb = self.encoder(mel)
        h = F.gelu(emb)
        return emb, [head(h) for head in self.heads]

    def targets(self, rows: list[dict]) -> torch.Tensor:
        """``[B, n_fields]`` class indices (IGNORE where a row lacks the field or has an unseen class)."""
        index = [{c: i for i, c in enumerate(cs)} for cs in self.cfg.classes]
        return torch.tensor([[index[j].get(row_labels(r).get(f, ""), IGNORE) for j, f in enumerate(self.cfg.fields)]
                             for r in rows], dtype=torch.long)

    def loss(self, mel: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        _, logits = self(mel)
        losses, acc = [], {}
        for j, (f, lg) in enumerate(zip(self.cfg.fields, logits)):
            t = targets[:, j]
            if (t != IGNORE).any():
                losses.append(F.cross_entropy(lg, t, ignore_index=IGNORE))
                acc[f"acc_{f}"] = float((lg.argmax(-1) == t)[t != IGNORE].float().mean())
        return torch.stack(losses).sum(), acc

    @torch.no_grad()
    def analyse_mel(self, mel: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """One clip's log-mel ``[n_mels, T]`` -> (class probabilities per field, embedding ``[emb_dim]``), both
        averaged over the clip's 4 s windows."""
        emb, logits = self(mel_windows(mel, self.cfg.crop_frames))
        probs = {f: lg.softmax(-1).mean(0).numpy() for f, lg in zip(self.cfg.fields, logits)}
        return probs, emb.mean(0).numpy().astype(np.float32)

    def analyse(self, wav: np.ndarray, sr: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return self.analyse_mel(self.encoder.wav_mel(wav, sr))

    def probs(self, wav: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """Class probabilities per field (``self.cfg.classes[i]`` names them)."""
        return self.analyse(wav, sr)[0]

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """The clip's embedding ``[emb_dim]`` (float32), the space FAD is measured in."""
        return self.analyse(wav, sr)[1]

    def predict(self, wav: np.ndarray, sr: int) -> dict[str, str]:
        """The most likely ``domain`` and, for it, the most likely class of each of its fields."""
        return self.labels(self.probs(wav, sr))

    def labels(self, probs: dict[str, np.ndarray]) -> dict[str, str]:
        names = dict(zip(self.cfg.fields, self.cfg.classes))
        domain = names["domain"][int(np.argmax(probs["domain"]))]
        keep = ("domain", *DOMAIN_FIELDS.get(domain, ()))
        return {f: names[f][int(np.argmax(p))] for f, p in probs.items() if f in keep}


def load_tagger(path: str | os.PathLike | None = None) -> Tagger:
    """The tagger in ``path`` (default: the shipped ``checkpoints/eval/tagger``)."""
    return _load(str(Path(path) if path else default_checkpoint("eval/tagger")))


@lru_cache(maxsize=4)
def _load(path: str) -> Tagger:
    return Tagger.load(path)


def tag_accuracy(predicted: list[dict[str, str]], wanted: list[dict[str, str]]) -> dict[str, float]:
    """Share of items whose predicted class equals the wanted one, per field (over the items that have it), plus
    ``mean`` over fields."""
    out = {}
    for f in sorted({k for w in wanted for k in w}):
        pairs = [(p.get(f), w[f]) for p, w in zip(predicted, wanted) if f in w]
        out[f] = float(np.mean([a == b for a, b in pairs]))
    if out:
        out["mean"] = float(np.mean(list(out.values())))
    return out


def tag_kl(ref: list[dict[str, np.ndarray]], gen: list[dict[str, np.ndarray]], fields: list[str] | None = None,
           eps: float = 1e-6) -> float:
    """MusicGen's KL: the mean over items and fields of ``KL(p_ref || p_gen)`` of the tagger's class distributions
    (0 for identical audio, higher when the generated audio's tags drift from the reference's)."""
    kls = []
    for r, g in zip(ref, gen):
        for f in fields or list(r):
            p, q = np.clip(r[f], eps, 1), np.clip(g[f], eps, 1)
            p, q = p / p.sum(), q / q.sum()
            kls.append(float(np.sum(p * np.log(p / q))))
    return float(np.mean(kls))
