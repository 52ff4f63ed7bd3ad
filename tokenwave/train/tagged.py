"""What the tag-conditioned generator recipes (token LM, flow) share: windows + tag ids per batch, one AdamW step
with the shared schedule, the tag conditioner exported beside the model, and the samplers' RNG states."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from tokenwave.conditioning import Conditioning, TagConditioner, TagVocab, row_tags
from tokenwave.conditioning.melody import NO_PITCH, MelodyConditioner, pitch_classes
from tokenwave.errors import InvalidArgumentError
from tokenwave.models.folder import data_codec_hash, trained_codec_hash
from tokenwave.models.tagged import Generator
from tokenwave.paths import shown_path
from tokenwave.train.state import numpy_rng_state, set_numpy_rng_state
from tokenwave.train.trainer import DistInfo, set_schedule_lr, wrap_ddp


@dataclass
class ConditioningOptions:
    """Training options of the tag- (and melody-) conditioned generators (token LM and flow configs extend it)."""

    tag_dropout: float = 0.0     # share of tags left out per training item (partial prompts)
    melody: bool = False         # condition on the rows' melody (pitch class per frame)
    melody_dropout: float = 0.5  # share of training items whose melody is hidden (melody is optional)
    init: str | None = None      # a trained model folder the run starts from (fine-tuning), as recorded


@dataclass
class InitModel:
    """A trained generator folder a run starts from (``--init``): its network's config and weights, its tag vocabulary
    and embeddings, and its melody conditioner if it has one."""

    folder: str
    cfg: object
    state: dict[str, torch.Tensor]
    tags: list[str]
    tag_embed: torch.Tensor
    melody: dict[str, torch.Tensor] | None
    raw: dict

    @classmethod
    def read(cls, folder: str | Path, net_cls: type) -> InitModel:
        """``net_cls`` (``FlowDiT`` or ``TokenLM``) names the checkpoint kind; a folder of another kind, or one
        without its tag conditioner, is refused with a :class:`CheckpointError` (:meth:`Generator.load`)."""
        with torch.random.fork_rng(devices=[]):  # building the modules draws initial weights: keep the run's seed
            g = Generator.load(folder, kind=net_cls.KIND)
        melody = None if g.melody is None else g.melody.state_dict()
        return cls(str(folder), g.model.cfg, g.model.state_dict(), list(g.extra["tags"]), g.tags.embed.weight.detach(),
                   melody, g.extra)

    def check_source(self, key: str, data_info: dict, data: str) -> None:
        """Warn when the model's training data (``raw[key]``, e.g. its latents' info) came from another codec than
        ``data``: by content hash where both are known, else by the codec's path as recorded (so a moved folder
        also warns)."""
        mine, theirs = trained_codec_hash(self.raw), data_codec_hash(data_info)
        if not (mine and theirs):
            mine, theirs = (self.raw.get(key) or {}).get("codec"), data_info.get("codec")
        if mine and theirs and mine != theirs:
            warnings.warn(f"{self.folder} was trained on {key} of the codec {mine}, but {data} holds those of {theirs}; "
                          "fine-tuning on another codec's output starts from a model that does not know it",
                          stacklevel=3)


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

    def setup_init(self, init: InitModel, make_model, data_vocab: TagVocab, net: str) -> None:
        """:meth:`setup` for a run started from ``init``: its architecture and weights, its melody conditioner (the
        run is melody-conditioned exactly when the model is), and a vocabulary of its tags and the data's. Each tag
        keeps its embedding by name; a tag new to the model starts as the unknown tag's embedding, which is what
        the model has seen for it so far. ``--melody`` without a melody conditioner to start from is refused."""
        if self.tcfg.melody and init.melody is None:
            raise InvalidArgumentError(f"--melody given but {init.folder} has no melody conditioner",
                                       "drop --melody, or train a melody-conditioned model without --init")
        vocab = TagVocab(init.tags + data_vocab.tags)
        self.tcfg.init = shown_path(init.folder)
        self.tcfg.melody = init.melody is not None
        model = make_model(init.cfg, len(vocab), melody=self.tcfg.melody)
        getattr(model, net).load_state_dict(init.state)
        known = {t: i for i, t in enumerate(init.tags)}
        with torch.no_grad():
            model.tags.embed.weight.copy_(init.tag_embed[[known.get(t, 0) for t in vocab.tags]])
        if init.melody is not None:
            model.melody.load_state_dict(init.melody)
        self.setup(model, vocab)

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
    def validation_losses(self) -> list[float]:
        """The loss of each of ``val_batches`` validation batches (token models: their cross-entropy)."""
        self.model.eval()
        return [float(self.model(*self._batch(self.valid_data))) for _ in range(self.tcfg.val_batches)]

    def cross_entropy_validation(self) -> dict[str, float]:
        """Mean loss over ``val_batches`` validation batches, as ``valid_loss`` and ``valid_perplexity`` (token
        models, whose loss is a cross-entropy)."""
        losses = self.validation_losses()
        val = sum(losses) / len(losses)
        return {"valid_loss": round(val, 4), "valid_perplexity": round(math.exp(val), 2)}

    def export_generator(self, folder: Path, kind: str, net: torch.nn.Module, extra: dict, data_info: dict) -> None:
        """Write the trained ``net`` ("lm" or "flow") with the tag (and melody) conditioners as a generator folder
        (:meth:`Generator.save`), naming the codec that made the training data (``data_info``) by its hash."""
        Generator(kind, Path(folder), net, extra, self.vocab, self.model.tags, self.model.melody).save(
            folder, data_codec_hash(data_info))

    def rng_state(self) -> dict:
        return {"train": numpy_rng_state(self.train_data.rng), "valid": numpy_rng_state(self.valid_data.rng)}

    def set_rng_state(self, state: dict) -> None:
        set_numpy_rng_state(self.train_data.rng, state["train"])
        set_numpy_rng_state(self.valid_data.rng, state["valid"])
