"""TTS recipe: a token LM over the codec's codes (delay pattern), conditioned on phonemes, a 3-second voice prompt
from another clip of the same speaker, and the target length (see :mod:`tokenwave.conditioning.speech`).

Training items are whole utterances (up to ``max_frames``); the prompt is a random window of 1.5-3 s from another
utterance of the same speaker, so at inference any 3-second recording of a voice works as the prompt, with no
transcript. The length is predicted from the phoneme count by a least-squares line fitted on the training split.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from tokenwave.conditioning.speech import PhonemeVocab, alignment_inputs, prefix_positions
from tokenwave.data.align import read_alignments
from tokenwave.data.tokens import open_split
from tokenwave.errors import DatasetError
from tokenwave.lm.config import LMConfig
from tokenwave.models.folder import data_codec_hash
from tokenwave.models.tts import TTSFolder, TTSModel
from tokenwave.train.lm import PRESETS  # noqa: F401  (the same model sizes as the token LM)
from tokenwave.train.tagged import TaggedRecipe
from tokenwave.train.trainer import DistInfo, wrap_ddp

PROMPT_FRAMES = 225  # 3 s at 75 Hz


@dataclass
class TTSTrainConfig:
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 200
    total_steps: int = 10_000
    max_frames: int = 450       # longest utterance trained on (6 s)
    min_prompt: int = 112       # prompt windows of 1.5-3 s
    val_batches: int = 4
    alignments: str | None = None  # alignments.jsonl (`tokenwave data align`): per-frame phones (an aligned model)


class UtteranceDataset:
    """Whole utterances of one split of a speech tokens folder, each with a voice prompt from another utterance of
    the same speaker."""

    def __init__(self, folder: str | os.PathLike, split: str, vocab: PhonemeVocab | None, max_frames: int,
                 seed: int = 0, alignments: dict[str, dict] | None = None, phones: PhonemeVocab | None = None) -> None:
        self.info, codes, rows = open_split(folder, "tokens", split)
        self.codes = codes.long()
        self.rows = [r for r in rows if r.get("phonemes") and 2 <= r["frames"] <= max_frames
                     and (alignments is None or r["id"] in alignments)]
        if not self.rows:
            raise DatasetError(f"{folder} has no {split} utterances with phonemes{' and alignments' if alignments else ''}"
                               f" of at most {max_frames} frames",
                               "tokenize a speech dataset (`tokenwave data build speech`) and align it "
                               "(`tokenwave data align`)")
        self.vocab = vocab or PhonemeVocab.from_texts([r["phonemes"] for r in self.rows])
        self.alignments = alignments
        self.phones = None
        if alignments is not None:
            self.phones = phones or PhonemeVocab(sorted({p for r in self.rows for p in alignments[r["id"]]["phones"]}))
        self.by_speaker: dict[str, list[dict]] = {}
        for r in self.rows:
            self.by_speaker.setdefault(r.get("speaker", ""), []).append(r)
        self.rng = np.random.default_rng(seed)

    def clip(self, r: dict) -> torch.Tensor:
        return self.codes[:, r["offset"]: r["offset"] + r["frames"]]

    def prompt_for(self, r: dict, frames: int) -> torch.Tensor:
        """A window of ``frames`` frames from another utterance of ``r``'s speaker (the same one if it has none)."""
        pool = self.by_speaker[r.get("speaker", "")]
        other = [o for o in pool if o["id"] != r["id"]] or pool
        o = other[self.rng.integers(len(other))]
        n = min(frames, o["frames"])
        start = int(self.rng.integers(o["frames"] - n + 1))
        return self.clip(o)[:, start: start + n]

    def aligned(self, r: dict) -> torch.Tensor:
        """``LongTensor [3, frames]``: the row's phone per frame and the frame's place in it."""
        return alignment_inputs(self.phones, self.alignments[r["id"]], r["frames"], self.info["frame_rate"])

    def sample(self, batch: int, min_prompt: int) -> tuple[torch.Tensor, torch.Tensor, list, list, list | None]:
        """``(codes [B, K, Tmax] zero-padded, lengths [B], phoneme id tensors, prompt code tensors, per-frame phone
        tensors or None)``."""
        rows = [self.rows[i] for i in self.rng.integers(len(self.rows), size=batch)]
        T = max(r["frames"] for r in rows)
        codes = torch.zeros(batch, self.codes.shape[0], T, dtype=torch.long)
        for b, r in enumerate(rows):
            codes[b, :, : r["frames"]] = self.clip(r)
        lengths = torch.tensor([r["frames"] for r in rows])
        phonemes = [torch.tensor(self.vocab.encode(r["phonemes"])) for r in rows]
        prompts = [self.prompt_for(r, int(self.rng.integers(min_prompt, PROMPT_FRAMES + 1))) for r in rows]
        aligned = None if self.alignments is None else [self.aligned(r) for r in rows]
        return codes, lengths, phonemes, prompts, aligned


def fit_duration(rows: list[dict]) -> tuple[float, float]:
    """Least-squares ``frames ~ a * len(phonemes) + b`` over utterances."""
    n = np.array([len(r["phonemes"]) for r in rows], dtype=np.float64)
    f = np.array([r["frames"] for r in rows], dtype=np.float64)
    a, b = np.polyfit(n, f, 1)
    return float(a), float(b)


class TTSRecipe(TaggedRecipe):
    """The token-LM recipe's optimiser step, schedule and RNG state (:class:`TaggedRecipe`), with utterance batches
    and speech conditioning instead of windows and tags."""

    def __init__(self, tokens: str, preset: str, tcfg: TTSTrainConfig, info: DistInfo, seed: int = 0) -> None:
        self.tcfg, self.info, self.seed = tcfg, info, seed
        alignments = None if tcfg.alignments is None else read_alignments(tcfg.alignments)
        self.train_data = UtteranceDataset(tokens, "train", None, tcfg.max_frames, seed=seed + info.rank,
                                           alignments=alignments)
        self.vocab = self.train_data.vocab
        self.phones = self.train_data.phones
        self.valid_data = UtteranceDataset(tokens, "valid", self.vocab, tcfg.max_frames, seed=seed,
                                           alignments=alignments, phones=self.phones)
        k = self.train_data.info
        longest_phonemes = max(len(r["phonemes"]) for r in self.train_data.rows)
        max_len = prefix_positions(2 * longest_phonemes, PROMPT_FRAMES) + 2 * tcfg.max_frames + k["K"]
        cfg = LMConfig(K=k["K"], codebook_size=k["codebook_size"], pattern="delay", **PRESETS[preset],
                       max_len=int(math.ceil(max_len / 64) * 64))
        self.model = TTSModel(cfg, len(self.vocab), 0 if self.phones is None else len(self.phones)).to(info.device)
        self.ddp = wrap_ddp(self.model, info)
        self.modules = {"model": self.model}
        self.optimizers = {"opt": torch.optim.AdamW(self.model.parameters(), lr=tcfg.lr, weight_decay=0.01,
                                                    betas=(0.9, 0.95))}
        self.duration = fit_duration(self.train_data.rows)
        self.tokens_info = k

    def _batch(self, data: UtteranceDataset):
        codes, lengths, phonemes, prompts, aligned = data.sample(self.tcfg.batch_size, self.tcfg.min_prompt)
        return codes.to(self.info.device), lengths.to(self.info.device), phonemes, prompts, aligned

    def validate(self) -> dict[str, float]:
        return self.cross_entropy_validation()

    def export(self, folder: Path, metrics: dict) -> None:
        extra = {"validation": metrics, "train": asdict(self.tcfg), "tokens": self.tokens_info,
                 "phonemes": self.vocab.symbols[2:], "duration": list(self.duration),
                 **({"phones": self.phones.symbols[2:]} if self.phones is not None else {})}
        TTSFolder(self.model, extra, builtin_voices(self.train_data)).save(folder, data_codec_hash(self.tokens_info))


def builtin_voices(data: UtteranceDataset) -> dict[str, torch.Tensor]:
    """One 3-second prompt (codes ``[K, <=225]``) per training speaker, named by its voice (the longest clip's
    first 3 s, so the choice is deterministic)."""
    out = {}
    for speaker, rows in sorted(data.by_speaker.items()):
        r = max(rows, key=lambda r: (r["frames"], r["id"]))
        name = r.get("voice") or speaker
        out[name] = data.clip(r)[:, :PROMPT_FRAMES].clone()
    return out
