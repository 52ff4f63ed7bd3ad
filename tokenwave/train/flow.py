"""Flow-matching recipe on a latents folder (``tokenwave codec latents``), conditioned on manifest tags."""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from tokenwave.checkpoint import CheckpointError
from tokenwave.conditioning import TagVocab
from tokenwave.data.tokens import LatentDataset
from tokenwave.errors import DatasetError, InvalidArgumentError
from tokenwave.flow.config import FlowConfig
from tokenwave.flow.loss import flow_loss
from tokenwave.flow.model import FlowDiT
from tokenwave.models.tagged import tag_cooccurrence
from tokenwave.train.tagged import ConditioningOptions, InitModel, TaggedModel, TaggedRecipe
from tokenwave.train.trainer import DistInfo

PRESETS = {
    "small": dict(dim=256, depth=6, heads=4),
    "medium": dict(dim=512, depth=12, heads=8),
    "tiny": dict(dim=32, depth=1, heads=2),
}


@dataclass
class FlowTrainConfig(ConditioningOptions):
    frames: int = 300          # training window (4 s at 75 Hz)
    batch_size: int = 16
    lr: float = 5e-4
    warmup: int = 200
    total_steps: int = 20_000
    prompt_share: float = 0.3  # items trained with a given prefix (continuation / long-form windows)
    times: str = "logit_normal"
    val_batches: int = 4
    patch: int = 2             # frames per transformer token (FlowConfig.patch)


class FlowModel(TaggedModel):
    """The velocity model and its tag (and melody) conditioners, trained and saved together."""

    def __init__(self, cfg: FlowConfig, n_tags: int, melody: bool = False, text_dim: int | None = None,
                 text_tokens: int = 4) -> None:
        super().__init__(n_tags, cfg.dim, melody, text_dim, text_tokens)
        self.flow = FlowDiT(cfg)

    def forward(self, latents: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor,
                melody: torch.Tensor | None = None, text: torch.Tensor | None = None,
                has_text: torch.Tensor | None = None, prompt_share: float = 0.3, times: str = "logit_normal",
                generator: torch.Generator | None = None) -> torch.Tensor:
        x1 = latents / self.flow.cfg.latent_scale
        return flow_loss(self.flow, x1, lengths, self.condition(ids, mask, melody, text, has_text), prompt_share,
                         times, generator)


class FlowRecipe(TaggedRecipe):
    def __init__(self, latents: str, preset: str, tcfg: FlowTrainConfig, info: DistInfo, seed: int = 0) -> None:
        self.tcfg, self.info, self.seed = tcfg, info, seed
        self.train_data = LatentDataset(latents, "train", seed=seed + info.rank, balance=tcfg.balance)
        self.valid_split = "valid"
        try:
            self.valid_data = LatentDataset(latents, "valid", seed=seed)
        except DatasetError:  # tiny datasets (a few clips) may have no valid clip: say so, and record it
            warnings.warn(f"{latents} has no valid clips; validating on train windows (valid_split=train)", stacklevel=2)
            self.valid_split = "train"
            self.valid_data = LatentDataset(latents, "train", seed=seed)
        vocab = TagVocab.from_rows(self.train_data.rows)
        k = self.train_data.info
        if tcfg.init:
            self._setup_init(InitModel.read(tcfg.init, FlowDiT), vocab, latents)
        else:
            cfg = FlowConfig(latent_dim=k["latent_dim"], latent_scale=float(k["stats"]["overall_std"]) or 1.0,
                             max_frames=max(FlowConfig.max_frames, tcfg.frames), patch=tcfg.patch, **PRESETS[preset])
            self.prepare_text()
            self.setup(FlowModel(cfg, len(vocab), melody=tcfg.melody, text_dim=self.text_dim,
                                 text_tokens=tcfg.text_tokens), vocab)
        self.latents_info = {key: v for key, v in k.items() if key != "stats"}

    def _setup_init(self, init: InitModel, vocab: TagVocab, latents: str) -> None:
        """Fine-tune ``init``: its architecture, patch and latent scale (the scale its inputs were trained at) are
        kept; the data must hold latents of its width."""
        k, cfg = self.train_data.info, init.cfg
        if cfg.latent_dim != k["latent_dim"]:
            raise CheckpointError(f"{init.folder} generates {cfg.latent_dim}-channel latents but {latents} holds "
                                  f"{k['latent_dim']}-channel ones",
                                  "encode the data with the codec the model was trained on (`tokenwave codec latents "
                                  "--model CODEC`), or train without --init")
        if self.tcfg.frames > cfg.max_frames:
            raise InvalidArgumentError(f"--frames {self.tcfg.frames} is longer than {init.folder}'s longest window "
                                       f"({cfg.max_frames} frames)", f"use --frames {cfg.max_frames} or fewer")
        init.check_source("latents", k, latents)
        self.tcfg.patch = cfg.patch
        self.setup_init(init, FlowModel, vocab, "flow")

    def loss_args(self) -> tuple:
        return (self.tcfg.prompt_share, self.tcfg.times)

    @torch.no_grad()
    def validation_losses(self) -> list[float]:
        """The flow-matching loss of each of ``val_batches`` valid batches, with fixed noise and times (the same
        for every model validated from the same valid RNG state: comparable across steps and across models)."""
        self.model.eval()
        gen = torch.Generator(device=self.info.device).manual_seed(self.seed)
        return [float(self.model(*self._batch(self.valid_data), 0.0, "uniform", gen)) for _ in range(self.tcfg.val_batches)]

    def validate(self) -> dict[str, float]:
        """Mean flow-matching loss on valid windows (:meth:`validation_losses`)."""
        losses = self.validation_losses()
        out: dict = {"valid_loss": round(sum(losses) / len(losses), 5)}
        return out if self.valid_split == "valid" else {**out, "valid_split": self.valid_split}

    def export(self, folder: Path, metrics: dict) -> None:
        self.export_generator(folder, "flow", self.model.flow,
                              {"validation": metrics, "train": asdict(self.tcfg), "latents": self.latents_info,
                               "cooccur": tag_cooccurrence(self.train_data.rows)}, self.latents_info)

