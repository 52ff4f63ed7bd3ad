"""Token-LM training recipe on a tokens folder (``tokenwave codec tokenize``), conditioned on manifest tags."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from tokenwave.conditioning import Conditioning, TagConditioner, TagVocab
from tokenwave.conditioning.melody import NO_PITCH, MelodyConditioner, pitch_classes
from tokenwave.data.tokens import TokenDataset
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.train.tagged import TaggedRecipe
from tokenwave.train.trainer import DistInfo

PRESETS = {
    "small": dict(dim=256, depth=4, heads=4),
    "medium": dict(dim=512, depth=8, heads=8),
    "tiny": dict(dim=32, depth=1, heads=2),
}


@dataclass
class LMTrainConfig:
    frames: int = 150        # training window (2 s at 75 Hz)
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 200
    total_steps: int = 10_000
    val_batches: int = 4
    tag_dropout: float = 0.0    # share of tags left out per training item (partial prompts)
    melody: bool = False        # condition on the rows' melody (pitch class per frame)
    melody_dropout: float = 0.5  # share of training items whose melody is hidden (melody is optional)


class LMModel(torch.nn.Module):
    """The LM and its tag conditioner, trained and saved together."""

    def __init__(self, cfg: LMConfig, n_tags: int, melody: bool = False) -> None:
        super().__init__()
        self.lm = TokenLM(cfg)
        self.tags = TagConditioner(n_tags, cfg.dim)
        self.melody = MelodyConditioner(cfg.dim) if melody else None

    def condition(self, ids, mask, melody=None) -> Conditioning:
        cond = self.tags(ids, mask)
        if self.melody is not None:
            if melody is None:
                melody = torch.full((ids.shape[0], 1), NO_PITCH, dtype=torch.long, device=ids.device)
            cond.frames = self.melody(melody)
        return cond

    def forward(self, codes, ids, mask, lengths, melody=None):
        return self.lm.loss(codes, self.condition(ids, mask, melody), lengths)


class LMRecipe(TaggedRecipe):
    def __init__(self, tokens: str, pattern: str, preset: str, tcfg: LMTrainConfig, info: DistInfo, seed: int = 0) -> None:
        self.tcfg, self.info = tcfg, info
        self.train_data = TokenDataset(tokens, "train", seed=seed + info.rank)
        self.valid_data = TokenDataset(tokens, "valid", seed=seed)
        vocab = TagVocab.from_rows(self.train_data.rows)
        k = self.train_data.info
        cfg = LMConfig(K=k["K"], codebook_size=k["codebook_size"], pattern=pattern, **PRESETS[preset],
                       max_len=pattern_length(pattern, k["K"], tcfg.frames) + 64)
        self.setup(LMModel(cfg, len(vocab), melody=tcfg.melody), vocab)
        self.tokens_info = k

    def _batch(self, data):
        batch = super()._batch(data)
        if not self.tcfg.melody:
            return batch
        T = self.tcfg.frames
        mel = torch.full((len(self.last_rows), T), NO_PITCH, dtype=torch.long)
        for b, r in enumerate(self.last_rows):
            hide = data is self.train_data and data.rng.random() < self.tcfg.melody_dropout
            if r.get("melody") and not hide:
                m = pitch_classes(r["melody"][r["window_start"]: r["window_start"] + T])
                mel[b, : m.numel()] = m
        return (*batch, mel.to(self.info.device))

    def validate(self) -> dict[str, float]:
        return self.cross_entropy_validation()

    def export(self, folder: Path, metrics: dict) -> None:
        from tokenwave.tasks.tagged import tag_cooccurrence

        self.model.lm.save(folder, extra={"validation": metrics, "train": asdict(self.tcfg), "tags": self.vocab.tags,
                                          "tokens": self.tokens_info, "cooccur": tag_cooccurrence(self.train_data.rows)})
        self.export_tags(folder)
        if self.model.melody is not None:
            save_file({k: v.contiguous() for k, v in self.model.melody.state_dict().items()},
                      str(Path(folder) / "melody.safetensors"))



def pattern_length(pattern: str, K: int, frames: int) -> int:
    from tokenwave.patterns import Pattern

    return Pattern(pattern, K).length(frames)
