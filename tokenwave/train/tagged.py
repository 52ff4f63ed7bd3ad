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
from tokenwave.conditioning.text import CaptionBank, TextConditioner, join_prefixes, sentence_encoder
from tokenwave.data.captions import caption_variants
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
    text: str | None = None      # sentence encoder of the captions (conditioning.text; None: tags only)
    text_tokens: int = 4         # prefix tokens the caption becomes
    text_dropout: float = 0.1    # share of training items without their caption (the learned "no text" tokens)
    tags_off: float = 0.5        # with text: share of items whose tags (but the domain) are all hidden
    paraphrases: int = 8         # captions per clip: its own and paraphrases (data.captions), one drawn per item
    balance: bool = False        # each source dataset of the data folder gets an equal share of the windows


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
    text: dict[str, torch.Tensor] | None = None

    @classmethod
    def read(cls, folder: str | Path, net_cls: type) -> InitModel:
        """``net_cls`` (``FlowDiT`` or ``TokenLM``) names the checkpoint kind; a folder of another kind, or one
        without its tag conditioner, is refused with a :class:`CheckpointError` (:meth:`Generator.load`)."""
        with torch.random.fork_rng(devices=[]):  # building the modules draws initial weights: keep the run's seed
            g = Generator.load(folder, kind=net_cls.KIND)
        melody = None if g.melody is None else g.melody.state_dict()
        text = None if g.text is None else g.text.state_dict()
        return cls(str(folder), g.model.cfg, g.model.state_dict(), list(g.extra["tags"]), g.tags.embed.weight.detach(),
                   melody, g.extra, text)

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
    """A generator's conditioners: tags (prefix tokens), optionally a caption's sentence embedding (prefix tokens
    before the tags) and a melody (one pitch class per frame)."""

    def __init__(self, n_tags: int, dim: int, melody: bool = False, text_dim: int | None = None,
                 text_tokens: int = 4) -> None:
        super().__init__()
        self.tags = TagConditioner(n_tags, dim)
        self.melody = MelodyConditioner(dim) if melody else None
        self.text = TextConditioner(text_dim, dim, text_tokens) if text_dim else None

    def condition(self, ids: torch.Tensor, mask: torch.Tensor, melody: torch.Tensor | None = None,
                  text: torch.Tensor | None = None, has_text: torch.Tensor | None = None) -> Conditioning:
        """Tag ids/mask ``[B, n]``, melody ``[B, T]``, caption embeddings ``[B, E]`` with ``has_text [B]`` (None:
        no caption for any item) -> the :class:`Conditioning` the network reads."""
        cond = self.tags(ids, mask)
        if self.text is not None:
            B = ids.shape[0]
            if text is None:
                text = torch.zeros(B, self.text.text_dim, device=ids.device)
                has_text = torch.zeros(B, dtype=torch.bool, device=ids.device)
            cond = join_prefixes(self.text(text, has_text), cond)
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

    text_dim: int | None = None

    def prepare_text(self) -> None:
        """With ``tcfg.text``: every train clip's caption variants (:func:`caption_variants`; a valid clip's own
        caption only) embedded once by the frozen encoder, so a batch only looks them up. Sets ``text_dim``."""
        t = self.tcfg
        if not getattr(t, "text", None):
            return
        encoder = sentence_encoder(t.text)
        self.variants = {}
        for data, n in ((self.train_data, t.paraphrases), (self.valid_data, 1)):
            for r in data.rows:
                self.variants.setdefault((data is self.train_data, r["id"]), caption_variants(r, n))
        texts = sorted({v for vs in self.variants.values() for v in vs})
        self.text_index = {v: i for i, v in enumerate(texts)}
        self.text_emb = encoder.encode(texts) if texts else torch.zeros(0, encoder.dim)
        self.text_dim = encoder.dim
        self.text_encoder = encoder.name

    def caption_bank(self, limit: int = 4000) -> CaptionBank:
        """The train clips' own captions (first ``limit`` distinct ones) and their embeddings, for the folder."""
        seen = list(dict.fromkeys(vs[0] for (train, _), vs in self.variants.items() if train and vs))[:limit]
        return CaptionBank(seen, self.text_emb[[self.text_index[c] for c in seen]] if seen else self.text_emb[:0])

    def _text(self, data, rows: list[dict]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Caption embeddings ``[B, E]`` and ``has_text [B]`` of a batch's rows (a random variant per train item,
        left out for a ``text_dropout`` share); ``(None, None)`` without text conditioning."""
        if self.text_dim is None:
            return None, None
        training = data is self.train_data
        emb = torch.zeros(len(rows), self.text_dim)
        has = torch.zeros(len(rows), dtype=torch.bool)
        for b, r in enumerate(rows):
            vs = self.variants.get((training, r["id"])) or []
            if not vs or (training and data.rng.random() < self.tcfg.text_dropout):
                continue
            v = vs[int(data.rng.integers(len(vs)))] if training else vs[0]
            emb[b], has[b] = self.text_emb[self.text_index[v]], True
        return emb, has

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
        had_text = (init.raw.get("text") or {}).get("encoder")
        if had_text and self.tcfg.text and self.tcfg.text != had_text:
            raise InvalidArgumentError(f"{init.folder} reads captions with {had_text}, not {self.tcfg.text}",
                                       f"use --text {had_text}, or train without --init")
        if had_text:
            self.tcfg.text, self.tcfg.text_tokens = had_text, int(init.raw["text"]["tokens"])
        self.prepare_text()
        model = make_model(init.cfg, len(vocab), melody=self.tcfg.melody, text_dim=self.text_dim,
                           text_tokens=self.tcfg.text_tokens)
        getattr(model, net).load_state_dict(init.state)
        if init.text is not None:
            model.text.load_state_dict(init.text)
        known = {t: i for i, t in enumerate(init.tags)}
        with torch.no_grad():
            model.tags.embed.weight.copy_(init.tag_embed[[known.get(t, 0) for t in vocab.tags]])
        if init.melody is not None:
            model.melody.load_state_dict(init.melody)
        self.setup(model, vocab)

    def _batch(self, data) -> tuple:
        """``(windows, tag ids, tag mask, lengths, melody, captions, has_caption)`` on the training device; melody
        (pitch class per frame, ``NO_PITCH`` where unknown or hidden for a ``melody_dropout`` share of training
        items) is None unless the config asks for it, captions (:meth:`_text`) unless ``text`` is set."""
        x, lengths, rows = self._windows(data)
        text, has = self._text(data, rows)
        ids, mask = self.vocab.encode([self._tags(r, data.rng, data is self.train_data, text is not None)
                                       for r in rows])
        d = self.info.device
        mel = self._melody(data, rows, x.shape[-1]) if getattr(self.tcfg, "melody", False) else None

        def dev(t):
            return None if t is None else t.to(d)

        return x.to(d), ids.to(d), mask.to(d), lengths.to(d), dev(mel), dev(text), dev(has)

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

    def _tags(self, row: dict, rng, training: bool, text: bool = False) -> list[str]:
        """The row's tags; in training each tag but the domain is left out with ``tag_dropout`` probability, so the
        model also renders prompts that name only some tags, and with captions (``text``) all of them for a
        ``tags_off`` share of items, so a caption alone is enough."""
        tags = row_tags(row)
        p = getattr(self.tcfg, "tag_dropout", 0.0)
        if training and text and rng.random() < self.tcfg.tags_off:
            return [t for t in tags if t.startswith("domain=")]
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
        if self.model.text is not None:
            extra = {**extra, "text": {"encoder": self.text_encoder, "dim": self.text_dim,
                                       "tokens": self.tcfg.text_tokens}}
        bank = self.caption_bank() if self.model.text is not None else None
        Generator(kind, Path(folder), net, extra, self.vocab, self.model.tags, self.model.melody, self.model.text,
                  bank).save(folder, data_codec_hash(data_info))

    def rng_state(self) -> dict:
        return {"train": numpy_rng_state(self.train_data.rng), "valid": numpy_rng_state(self.valid_data.rng)}

    def set_rng_state(self, state: dict) -> None:
        set_numpy_rng_state(self.train_data.rng, state["train"])
        set_numpy_rng_state(self.valid_data.rng, state["valid"])
