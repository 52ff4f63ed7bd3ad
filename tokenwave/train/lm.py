"""Token-LM training recipe on a tokens folder (``tokenwave codec tokenize``), conditioned on manifest tags."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from tokenwave.checkpoint import CheckpointError
from tokenwave.conditioning import TagVocab
from tokenwave.data.tokens import TokenDataset
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.models.tagged import tag_cooccurrence
from tokenwave.patterns import Pattern
from tokenwave.train.tagged import ConditioningOptions, InitModel, TaggedModel, TaggedRecipe
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


PREFIX_ROOM = 64  # positions kept for the tag prefix beyond a training window's codes


class LMModel(TaggedModel):
    """The LM and its tag (and melody) conditioners, trained and saved together."""

    def __init__(self, cfg: LMConfig, n_tags: int, melody: bool = False, text_dim: int | None = None,
                 text_tokens: int = 4) -> None:
        super().__init__(n_tags, cfg.dim, melody, text_dim, text_tokens)
        self.lm = TokenLM(cfg)

    def forward(self, codes, ids, mask, lengths, melody=None, text=None, has_text=None):
        return self.lm.loss(codes, self.condition(ids, mask, melody, text, has_text), lengths)


class LMRecipe(TaggedRecipe):
    def __init__(self, tokens: str, pattern: str, preset: str, tcfg: LMTrainConfig, info: DistInfo, seed: int = 0) -> None:
        self.tcfg, self.info = tcfg, info
        self.train_data = TokenDataset(tokens, "train", seed=seed + info.rank, balance=tcfg.balance)
        self.valid_data = TokenDataset(tokens, "valid", seed=seed)
        vocab = TagVocab.from_rows(self.train_data.rows)
        k = self.train_data.info
        if tcfg.init:
            self._setup_init(InitModel.read(tcfg.init, TokenLM), vocab, tokens)
        else:
            cfg = LMConfig(K=k["K"], codebook_size=k["codebook_size"], pattern=pattern, **PRESETS[preset],
                           max_len=pattern_length(pattern, k["K"], tcfg.frames) + PREFIX_ROOM)
            self.prepare_text()
            self.setup(LMModel(cfg, len(vocab), melody=tcfg.melody, text_dim=self.text_dim,
                               text_tokens=tcfg.text_tokens), vocab)
        self.tokens_info = k

    def _setup_init(self, init: InitModel, vocab: TagVocab, tokens: str) -> None:
        """Fine-tune ``init``: its architecture and delay pattern are kept; the data must hold codes of its codebooks."""
        k, cfg = self.train_data.info, init.cfg
        if (cfg.K, cfg.codebook_size) != (k["K"], k["codebook_size"]):
            raise CheckpointError(f"{init.folder} models {cfg.K} codebooks of {cfg.codebook_size} but {tokens} holds "
                                  f"{k['K']} of {k['codebook_size']}",
                                  "tokenize the data at the model's bitrate (`tokenwave codec tokenize --kbps`), or "
                                  "train without --init")
        need = pattern_length(cfg.pattern, cfg.K, self.tcfg.frames) + PREFIX_ROOM
        if need > cfg.max_len:
            fit = max((f for f in range(1, self.tcfg.frames) if pattern_length(cfg.pattern, cfg.K, f) + PREFIX_ROOM
                       <= cfg.max_len), default=1)
            raise InvalidArgumentError(f"--frames {self.tcfg.frames} needs {need} positions (with its tag prefix) but "
                                       f"{init.folder} has {cfg.max_len}", f"use --frames {fit} or fewer")
        init.check_source("tokens", k, tokens)
        self.setup_init(init, LMModel, vocab, "lm")

    def validate(self) -> dict[str, float]:
        return self.cross_entropy_validation()

    def export(self, folder: Path, metrics: dict) -> None:
        self.export_generator(folder, "lm", self.model.lm,
                              {"validation": metrics, "train": asdict(self.tcfg), "tokens": self.tokens_info,
                               "cooccur": tag_cooccurrence(self.train_data.rows)}, self.tokens_info)


def pattern_length(pattern: str, K: int, frames: int) -> int:
    """A pattern's name, the codebook count and a window in frames -> the steps of its interleaved sequence."""
    return Pattern(pattern, K).length(frames)
