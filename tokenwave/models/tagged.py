"""A trained music / sound-effects generator folder (``tokenwave train lm`` or ``tokenwave train flow``): one writer
(:meth:`Generator.save`), one reader (:meth:`Generator.load`).

A folder holds ``model.safetensors`` + ``config.json`` (the network: a :class:`TokenLM`, kind "lm", or a
:class:`FlowDiT`, kind "flow"; the config's extra fields: the tag vocabulary ``tags``, the fields seen beside each tag
``cooccur`` (:func:`tag_cooccurrence`), ``train``, ``tokens`` / ``latents``, the codec's ``codec_hash``),
``tags.safetensors`` (the :class:`TagConditioner`), ``melody.safetensors`` (the :class:`MelodyConditioner`, a
melody-conditioned model only), ``text.safetensors`` and ``captions.json`` (a text-conditioned model only: the
:class:`TextConditioner` with the embeddings of its training captions, the captions; the config's ``text`` names
the sentence encoder) and optionally ``decoder/`` (:func:`tokenwave.models.folder.folder_decoder`). A
task folder (``checkpoints/music``) is a token-LM folder with a flow folder in ``flow/`` and a ``generators.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from tokenwave.checkpoint import CheckpointError, load_checkpoint
from tokenwave.conditioning import Conditioning, TagConditioner, TagVocab
from tokenwave.conditioning.melody import MelodyConditioner
from tokenwave.conditioning.text import CaptionBank, TextConditioner, join_prefixes, sentence_encoder
from tokenwave.fileio import atomic_write_text
from tokenwave.flow.model import KIND as FLOW_KIND
from tokenwave.flow.model import FlowDiT
from tokenwave.lm.model import KIND as LM_KIND
from tokenwave.lm.model import TokenLM
from tokenwave.models.folder import CODEC_HASH, MissingModelError, check_codec, checkpoint_kind, load_weights

TAGS = "tags.safetensors"
MELODY = "melody.safetensors"
TEXT = "text.safetensors"
CAPTIONS = "captions.json"
BANK_KEY = "bank.embeddings"  # the training captions' embeddings, stored beside the text conditioner's weights
NETWORKS: dict[str, type] = {LM_KIND: TokenLM, FLOW_KIND: FlowDiT}  # checkpoint kind -> network class


def tag_cooccurrence(rows: list[dict]) -> dict[str, list[str]]:
    """Manifest rows -> for each ``field=value`` tag, the tag fields that appear beside it; ``__required__``: the
    fields every row has (a folder's ``cooccur``, which reading a prompt keeps to). Real recordings' tags (rows from
    a package: game, source, folder) describe where a clip came from, not what it sounds like, so when the rows mix
    them with described clips, the required fields are the described clips'."""
    seen: dict[str, set[str]] = {}
    fields_per_row = []
    mixed = any(not r.get("package") for r in rows)
    for r in rows:
        tags = r.get("tags") if isinstance(r.get("tags"), dict) else {}
        if not (mixed and r.get("package")):
            fields_per_row.append(set(tags))
        for f, v in tags.items():
            seen.setdefault(f"{f}={v}", set()).update(tags)
    required = set.intersection(*fields_per_row) if fields_per_row else set()
    return {"__required__": sorted(required), **{k: sorted(v) for k, v in sorted(seen.items())}}


@dataclass
class Generator:
    """One trained generator and its conditioners: ``kind`` "lm" (a :class:`TokenLM`, from ``tokenwave train lm``)
    or "flow" (a :class:`FlowDiT`, from ``tokenwave train flow``); ``extra``: its config's extra fields; ``text``
    and ``captions``: a text-conditioned model's caption conditioner and training captions."""

    kind: str
    folder: Path
    model: torch.nn.Module
    extra: dict
    vocab: TagVocab
    tags: TagConditioner
    melody: MelodyConditioner | None
    text: TextConditioner | None = None
    captions: CaptionBank | None = None

    @property
    def text_encoder(self) -> str | None:
        """The sentence encoder a text-conditioned model reads prompts with (None: tags only)."""
        return (self.extra.get("text") or {}).get("encoder") if self.text is not None else None

    def embed(self, prompt: str) -> torch.Tensor:
        """A text-conditioned model's sentence embedding of ``prompt`` ``[text_dim]``."""
        return sentence_encoder(self.text_encoder).encode([prompt])[0]

    def condition(self, tags: list[str], prompt: str | None = None, nearest: int = 3, emb: torch.Tensor | None = None
                  ) -> tuple[Conditioning, list[tuple[str, float]]]:
        """Tags (``field=value``) and, for a text-conditioned model, the prompt itself (``emb``: its :meth:`embed`,
        if already made) -> the conditioning of one request, and the training captions nearest to the prompt with
        their cosine (empty without text)."""
        ids, mask = self.vocab.encode([tags])
        cond = self.tags(ids, mask)
        if self.text is None:
            return cond, []
        has = torch.tensor([bool(prompt)])
        if emb is None:
            emb = self.embed(prompt or "")
        near = self.captions.nearest(emb, nearest) if self.captions is not None and prompt else []
        return join_prefixes(self.text(emb[None], has), cond), near

    @property
    def window(self) -> int:
        """The trained window in frames (long renders slide windows of this size)."""
        return int(self.extra.get("train", {}).get("frames", 150))

    def save(self, folder: str | os.PathLike, codec_hash: str | None) -> Path:
        """Write the folder: the network and its config (atomically), then the tag and melody conditioners;
        ``codec_hash``: the content hash of the codec whose codes / latents it was trained on (None: unknown, not
        recorded)."""
        extra = {**{k: v for k, v in self.extra.items() if k not in ("kind", "config")}, "tags": self.vocab.tags,
                 **({CODEC_HASH: codec_hash} if codec_hash else {})}
        self.model.save(folder, extra=extra)
        folder = Path(folder)
        save_file({k: v.contiguous() for k, v in self.tags.state_dict().items()}, str(folder / TAGS))
        if self.melody is not None:
            save_file({k: v.contiguous() for k, v in self.melody.state_dict().items()}, str(folder / MELODY))
        if self.text is not None:
            bank = self.captions or CaptionBank([], torch.zeros(0, self.text.text_dim))
            save_file({**{k: v.contiguous() for k, v in self.text.state_dict().items()},
                       BANK_KEY: bank.embeddings.to(torch.float16).contiguous()}, str(folder / TEXT))
            atomic_write_text(folder / CAPTIONS, json.dumps(bank.captions, indent=0, ensure_ascii=False) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, codec=None, kind: str | None = None) -> Generator:
        """Read a folder written by :meth:`save` (every module in eval mode). ``codec``, when given, must be the one
        the model was trained on (:func:`tokenwave.models.folder.check_codec`); ``kind`` ("lm" or "flow"), when
        given, is the kind the folder must hold (a :class:`CheckpointError` otherwise), else either."""
        if kind is None:
            kind = checkpoint_kind(folder)
            if kind not in NETWORKS:
                raise MissingModelError(f"{folder} holds a {kind!r} model, not a music/sfx generator",
                                        "pass a folder from `tokenwave train lm` or `tokenwave train flow`")
        net_cls = NETWORKS[kind]
        state, cfg, extra = load_checkpoint(folder, net_cls.CONFIG, kind)
        folder = Path(folder)
        if "tags" not in extra or not (folder / TAGS).exists():
            raise CheckpointError(f"{folder} holds a {kind} network but no tag conditioner ({TAGS} and the config's "
                                  "tag list)",
                                  f"pass a model folder written by `tokenwave train {kind}`, e.g. OUT/model")
        if codec is not None:
            check_codec(folder, extra, codec)
        model = net_cls(cfg)
        load_weights(folder, model, state)
        vocab = TagVocab(extra["tags"])
        tags = TagConditioner(len(vocab), model.cfg.dim)
        load_weights(folder, tags, load_file(str(folder / TAGS)), TAGS)
        melody = None
        if (folder / MELODY).exists():
            melody = MelodyConditioner(model.cfg.dim)
            load_weights(folder, melody, load_file(str(folder / MELODY)), MELODY)
            melody.eval()
        text = captions = None
        if extra.get("text"):
            if not (folder / TEXT).exists():
                raise CheckpointError(f"{folder} is text-conditioned but has no {TEXT}",
                                      f"copy the whole folder written by `tokenwave train {kind} --text`")
            t = extra["text"]
            state = load_file(str(folder / TEXT))
            bank = state.pop(BANK_KEY, torch.zeros(0, int(t["dim"])))
            text = TextConditioner(int(t["dim"]), model.cfg.dim, int(t["tokens"]))
            load_weights(folder, text, state, TEXT)
            text.eval()
            names = json.loads((folder / CAPTIONS).read_text()) if (folder / CAPTIONS).exists() else []
            captions = CaptionBank(names, bank.float()) if len(names) == len(bank) else None
        return cls(kind, folder, model.eval(), extra, vocab, tags.eval(), melody, text, captions)


__all__ = ["CAPTIONS", "MELODY", "NETWORKS", "TAGS", "TEXT", "Generator", "tag_cooccurrence"]
