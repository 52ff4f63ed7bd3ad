"""Token-LM training recipe on a tokens folder (``tokenwave codec tokenize``), conditioned on manifest tags."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tokenwave.conditioning import TagVocab
from tokenwave.data.tokens import TokenDataset
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.train.tagged import ConditioningOptions, TaggedModel, TaggedRecipe
from tokenwave.train.trainer import DistInfo

PRESETS = {
    "small": dict(dim=256, depth=4, heads=4),
    "medium": dict(dim=512, depth=8, heads=8),
    "tiny": dict(dim=32, depth=1, heads=2),
}


@dataclass
class LMTrainConfig(ConditioningOptions):
    frames: int = 150        # training window (2 s at 75 Hz)
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 200
    total_steps: int = 10_000
    val_batches: int = 4


class LMModel(TaggedModel):
    """The LM and its tag (and melody) conditioners, trained and saved together."""

    def __init__(self, cfg: LMConfig, n_tags: int, melody: bool = False) -> None:
        super().__init__(n_tags, cfg.dim, melody)
        self.lm = TokenLM(cfg)

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

    def validate(self) -> dict[str, float]:
        return self.cross_entropy_validation()

    def export(self, folder: Path, metrics: dict) -> None:
        from tokenwave.tasks.tagged import tag_cooccurrence

        self.model.lm.save(folder, extra={"validation": metrics, "train": asdict(self.tcfg), "tags": self.vocab.tags,
                                          "tokens": self.tokens_info, "cooccur": tag_cooccurrence(self.train_data.rows)})
        self.export_tags(folder)



def pattern_length(pattern: str, K: int, frames: int) -> int:
    from tokenwave.patterns import Pattern

    return Pattern(pattern, K).length(frames)
