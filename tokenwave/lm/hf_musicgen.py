"""MusicGen's decoder (``transformers``) driven by our sampling, delay pattern and streaming API.

``load_musicgen(folder)`` reads a folder written by ``save_pretrained`` -- a ``MusicgenForCausalLM`` (the decoder
alone) or a full ``MusicgenForConditionalGeneration`` (its decoder is taken) -- with ``local_files_only=True``.
The returned :class:`MusicgenLM` exposes the surface :func:`tokenwave.lm.generate.stream` uses from
:class:`~tokenwave.lm.model.TokenLM` (``cfg``, ``pattern``, ``null_cond``, ``embed_steps``, ``run``,
``logits_for``, ``new_cache``), so ``generate(load_musicgen(folder), frames, cond, params)`` works unchanged.

MusicGen's conventions: the delay pattern; ``pad_token_id == vocab_size`` pads, starts and fills empty slots (our
``special``); the input is the sum of K embeddings plus sinusoidal positions; K linear heads. Conditioning goes
through cross-attention: ``Conditioning.cross [B, C, hidden]`` becomes ``encoder_hidden_states`` (already projected
to the decoder width, i.e. after ``enc_to_dec_proj`` -- :meth:`MusicgenLM.project_text` applies it when the folder
held a full model) and ``cross_mask`` the ``encoder_attention_mask``. The unconditional input is zeros, as in
MusicGen's own classifier-free guidance. Keys and values live in transformers' ``EncoderDecoderCache``; the
cross-attention keys/values are computed once, at the first call.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from tokenwave.conditioning import Conditioning
from tokenwave.errors import TokenwaveError
from tokenwave.lm.config import LMConfig
from tokenwave.patterns import Pattern


class MusicgenLoadError(TokenwaveError):
    pass


class MusicgenCache:
    """transformers' self/cross-attention cache plus our position counter and key validity ``[B, max_len]``."""

    def __init__(self, batch: int, max_len: int, device: torch.device) -> None:
        from transformers import DynamicCache, EncoderDecoderCache  # lazy: optional backend (MusicGen), a slow import

        self.hf = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.pos = 0
        self.max_len = max_len
        self.all_valid = True  # while True, decode steps need no mask at all

    def bytes(self) -> int:
        """Bytes held by the self- and cross-attention keys/values."""
        total = 0
        for cache in (self.hf.self_attention_cache, self.hf.cross_attention_cache):
            for layer in cache.layers:
                for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                    if isinstance(t, torch.Tensor):
                        total += t.numel() * t.element_size()
        return total


def musicgen_lm_config(dec) -> LMConfig:
    """Our :class:`LMConfig` mirroring a ``MusicgenDecoderConfig`` (for the shared generation code and figures)."""
    return LMConfig(K=int(dec.num_codebooks), codebook_size=int(dec.vocab_size), pattern="delay",
                    dim=int(dec.hidden_size), depth=int(dec.num_hidden_layers), heads=int(dec.num_attention_heads),
                    mlp_ratio=dec.ffn_dim / dec.hidden_size, max_len=int(dec.max_position_embeddings),
                    cross_attention=True, cond_dropout=0.0)


class MusicgenLM(nn.Module):
    """A ``transformers.MusicgenForCausalLM`` behind TokenLM's generation surface (inference only)."""

    def __init__(self, model: nn.Module, text_proj: nn.Module | None = None) -> None:
        super().__init__()
        dec_cfg = model.config
        if getattr(dec_cfg, "audio_channels", 1) != 1:
            raise MusicgenLoadError("stereo MusicGen checkpoints are not supported", "use a mono checkpoint")
        if dec_cfg.pad_token_id != dec_cfg.vocab_size:
            raise MusicgenLoadError(f"pad_token_id {dec_cfg.pad_token_id} != vocab_size {dec_cfg.vocab_size}",
                                    "MusicGen checkpoints pad with id vocab_size; check the config")
        self.model = model.eval()
        self.text_proj = text_proj
        self.cfg = musicgen_lm_config(dec_cfg)
        self.pattern = Pattern("delay", self.cfg.K)
        decoder = model.model.decoder
        self.embeds, self.layers, self.norm = decoder.embed_tokens, decoder.layers, decoder.layer_norm
        self.positions = decoder.embed_positions
        self.heads = model.lm_heads
        self.register_buffer("null_cond", torch.zeros(self.cfg.dim, dtype=next(model.parameters()).dtype))

    # --- the surface stream()/generate() use -------------------------------------------------------------
    def new_cache(self, batch: int, max_len: int) -> MusicgenCache:
        return MusicgenCache(batch, max_len, self.null_cond.device)

    def embed_steps(self, tokens: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        """``tokens [B, K, n]`` -> summed embeddings ``[B, n, D]``. Delay pattern: stream k holds codebook k, so
        ``book`` is implied (kept for the shared signature)."""
        return sum(self.embeds[k](tokens[:, k]) for k in range(self.cfg.K))

    def logits_for(self, h: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        """Hidden ``[B, n, D]`` -> logits ``[B, K, n, V]`` (stream k = codebook k, MusicGen's K heads)."""
        h = self.norm(h)
        return torch.stack([head(h) for head in self.heads], dim=1)

    def _positions(self, start: int, n: int) -> torch.Tensor:
        if start + n > self.positions.weights.shape[0]:
            self.positions.make_weights(start + n, self.positions.embedding_dim)
        return self.positions.weights[start: start + n]

    def run(self, x: torch.Tensor, cond: Conditioning, valid: torch.Tensor | None = None,
            cache: MusicgenCache | None = None) -> torch.Tensor:
        """The decoder layers over ``x [B, n, D]`` (causal; ``valid [B, n]`` marks real positions), with the cache
        if given. Returns the hidden states before the final norm (``logits_for`` applies it)."""
        B, n, _ = x.shape
        start = cache.pos if cache is not None else 0
        h = x + self._positions(start, n).to(x)
        if cache is not None:
            if valid is not None:
                cache.valid[:, start: start + n] = valid
                cache.all_valid = cache.all_valid and bool(valid.all())
            else:
                cache.valid[:, start: start + n] = True
            keys_valid = cache.valid[:, : start + n]
        else:
            keys_valid = valid if valid is not None else torch.ones(B, n, dtype=torch.bool, device=x.device)
        mask = None
        if n > 1 or cache is None or not cache.all_valid:
            causal = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(start)
            mask = causal[None, None] & keys_valid[:, None, None, :]
            mask = mask | ~mask.any(-1, keepdim=True)  # a fully padded query row attends to all (output unused)
        cross, cross_mask = cond.cross, None
        if cross is not None:
            cross = cross.to(h)
            if cond.cross_mask is not None:
                cross_mask = cond.cross_mask[:, None, None, :].to(torch.bool)
        hf_cache = cache.hf if cache is not None else None
        for layer in self.layers:
            h = layer(h, attention_mask=mask, encoder_hidden_states=cross, encoder_attention_mask=cross_mask,
                      cache=hf_cache, use_cache=cache is not None)
        if cache is not None:
            cache.pos += n
        return h

    # --- helpers -----------------------------------------------------------------------------------------
    def project_text(self, states: torch.Tensor, mask: torch.Tensor | None = None) -> Conditioning:
        """Text-encoder states ``[B, C, E]`` -> cross conditioning at the decoder width (MusicGen's
        ``enc_to_dec_proj`` when the folder held a full model; padded positions zeroed as MusicGen does)."""
        if self.text_proj is not None:
            states = self.text_proj(states)
        if states.shape[-1] != self.cfg.dim:
            raise MusicgenLoadError(f"text states of width {states.shape[-1]} for a decoder of width {self.cfg.dim}",
                                    "load the full MusicGen folder (it holds enc_to_dec_proj) or project the states")
        if mask is not None:
            states = states * mask[..., None].to(states)
            mask = mask.to(torch.bool)
        return Conditioning(cross=states, cross_mask=mask)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def musicgen_model_type(folder: str | os.PathLike) -> str | None:
    """``model_type`` of ``folder/config.json`` (``musicgen`` or ``musicgen_decoder``), else None."""
    path = Path(folder) / "config.json"
    if not path.exists():
        return None
    try:
        kind = json.loads(path.read_text()).get("model_type")
    except json.JSONDecodeError:
        return None
    return kind if kind in ("musicgen", "musicgen_decoder") else None


def load_musicgen(folder: str | os.PathLike, dtype: torch.dtype = torch.float32) -> MusicgenLM:
    """A :class:`MusicgenLM` from a local ``save_pretrained`` folder (decoder alone or full model); nothing is
    fetched."""
    kind = musicgen_model_type(folder)
    if kind is None:
        raise MusicgenLoadError(f"{folder} is not a MusicGen folder",
                                "pass a folder written by save_pretrained (config.json with model_type musicgen "
                                "or musicgen_decoder)")
    # lazy: optional backend (MusicGen); transformers is a slow import
    from transformers import MusicgenForCausalLM, MusicgenForConditionalGeneration

    if kind == "musicgen_decoder":
        return MusicgenLM(MusicgenForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=dtype))
    full = MusicgenForConditionalGeneration.from_pretrained(str(folder), local_files_only=True, dtype=dtype)
    proj = getattr(full, "enc_to_dec_proj", None)
    return MusicgenLM(full.decoder, proj)


__all__ = ["MusicgenCache", "MusicgenLM", "MusicgenLoadError", "load_musicgen", "musicgen_lm_config",
           "musicgen_model_type"]
