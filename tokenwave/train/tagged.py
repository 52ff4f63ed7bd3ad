"""What the tag-conditioned generator recipes (token LM, flow) share: windows + tag ids per batch, one AdamW step
with the shared schedule, the tag conditioner exported beside the model, and the samplers' RNG states."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from tokenwave.conditioning import Conditioning, TagConditioner, TagVocab, row_tags
from tokenwave.conditioning.melody import NO_PITCH, MelodyConditioner, pitch_classes
from tokenwave.train.state import numpy_rng_state, set_numpy_rng_state
from tokenwave.train.trainer import DistInfo, set_schedule_lr, wrap_ddp


@dataclass
class ConditioningOptions:
    """Training options of the tag- (and melody-) conditioned generators (token LM and flow configs extend it)."""

    tag_dropout: float = 0.0     # share of tags left out per training item (partial prompts)
    melody: bool = False         # condition on the rows' melody (pitch class per frame)
    melody_dropout: float = 0.5  # share of training items whose melody is hidden (melody is optional)


class TaggedModel(torch.nn.Module):
    """A generator's conditioners: tags (prefix tokens) and optionally a melody (one pitch class per frame)."""

    def __init__(self, n_tags: int, dim: int, melody: bool = False) -> None:
        super().__init__()
        self.tags = TagConditioner(n_tags, dim)
        self.melody = MelodyConditioner(dim) if melody else None

    def condition(self, ids: torch.Tensor, mask: torch.Tensor, melody: torch.Tensor | None = None) -> Conditioning:
        cond = self.tags(ids, mask)
        if self.melody is not None:
            if melody is None:
                melody = torch.full((ids.shape[0], 1), NO_PITCH, dtype=torch.long, device=ids.device)
            cond.frames = self.melody(melody)
        return cond


class TaggedRecipe:
    """Subclasses set ``train_data``/``valid_data`` (``.sample(batch, frames) -> (x, lengths, rows)``, ``.rng``) and
    call :meth:`setup` with a model holding ``.tags`` (a TagConditioner) whose forward returns the loss."""

    tcfg: object
    info: DistInfo

    def setup(self, model: torch.nn.Module, vocab: TagVocab) -> None:
        self.vocab = vocab
        self.model = model.to(self.info.device)
        self.ddp = wrap_ddp(self.model, self.info)
        self.modules = {"model": self.model}
        self.optimizers = {"opt": torch.optim.AdamW(self.model.parameters(), lr=self.tcfg.lr, weight_decay=0.01,
                                                    betas=(0.9, 0.95))}

    def _batch(self, data) -> tuple:
        """``(windows, tag ids, tag mask, lengths, melody)`` on the training device; melody (pitch class per frame,
        ``NO_PITCH`` where unknown or hidden for a ``melody_dropout`` share of training items) is None unless the
        config asks for it."""
        x, lengths, rows = self._windows(data)
        ids, mask = self.vocab.encode([self._tags(r, data.rng, data is self.train_data) for r in rows])
        d = self.info.device
        mel = self._melody(data, rows, x.shape[-1]) if getattr(self.tcfg, "melody", False) else None
        return x.to(d), ids.to(d), mask.to(d), lengths.to(d), None if mel is None else mel.to(d)

    def _melody(self, data, rows: list[dict], T: int) -> torch.Tensor:
        mel = torch.full((len(rows), T), NO_PITCH, dtype=torch.long)
        for b, r in enumerate(rows):
            hide = data is self.train_data and data.rng.random() < self.tcfg.melody_dropout
            if r.get("melody") and not hide:
                m = pitch_classes(r["melody"][r["window_start"]: r["window_start"] + T])
                mel[b, : m.numel()] = m
        return mel

    def _windows(self, data) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        x, lengths, rows = data.sample(self.tcfg.batch_size, self.tcfg.frames)
        self.last_rows = rows
        return x, lengths, rows

    def _tags(self, row: dict, rng, training: bool) -> list[str]:
        """The row's tags; in training each tag but the domain is left out with ``tag_dropout`` probability, so the
        model also renders prompts that name only some tags."""
        tags = row_tags(row)
        p = getattr(self.tcfg, "tag_dropout", 0.0)
        if not training or p <= 0:
            return tags
        keep = rng.random(len(tags)) >= p
        return [t for t, k in zip(tags, keep) if k or t.startswith("domain=")]

    def loss_args(self) -> tuple:
        """Extra arguments of the model's training forward after the batch."""
        return ()

    def train_step(self, step: int) -> dict[str, float]:
        t = self.tcfg
        set_schedule_lr(self.optimizers, t.lr, step, t.warmup, t.total_steps)
        self.model.train()
        loss = self.ddp(*self._batch(self.train_data), *self.loss_args())
        self.optimizers["opt"].zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizers["opt"].step()
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def cross_entropy_validation(self) -> dict[str, float]:
        """Mean loss over ``val_batches`` validation batches, as ``valid_loss`` and ``valid_perplexity`` (token
        models, whose loss is a cross-entropy)."""
        import math

        self.model.eval()
        losses = [float(self.model(*self._batch(self.valid_data))) for _ in range(self.tcfg.val_batches)]
        val = sum(losses) / len(losses)
        return {"valid_loss": round(val, 4), "valid_perplexity": round(math.exp(val), 2)}

    def export_tags(self, folder: Path) -> None:
        """``tags.safetensors`` (and ``melody.safetensors`` when the model has a melody conditioner)."""
        save_file({k: v.contiguous() for k, v in self.model.tags.state_dict().items()}, str(Path(folder) / "tags.safetensors"))
        if getattr(self.model, "melody", None) is not None:
            save_file({k: v.contiguous() for k, v in self.model.melody.state_dict().items()},
                      str(Path(folder) / "melody.safetensors"))

    def rng_state(self) -> dict:
        return {"train": numpy_rng_state(self.train_data.rng), "valid": numpy_rng_state(self.valid_data.rng)}

    def set_rng_state(self, state: dict) -> None:
        set_numpy_rng_state(self.train_data.rng, state["train"])
        set_numpy_rng_state(self.valid_data.rng, state["valid"])
