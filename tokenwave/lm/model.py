"""Decoder-only transformer over summed codebook embeddings, K output heads, rotary positions and a KV cache.

Inputs are pattern sequences ``seq [B, S, L]`` (see :mod:`tokenwave.patterns`); the slot of stream s at step l
holds codebook ``book[s, l]``, so one embedding table of ``K * (V + 1)`` rows and one head of ``K * V`` outputs
serve every pattern. The model sees ``[prefix (P) | start, step 0, ..., step L-2]`` and predicts steps 0..L-1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.checkpoint import Checkpointable
from tokenwave.conditioning import Conditioning
from tokenwave.lm.config import LMConfig
from tokenwave.nn import Attention, KVCache, Linear
from tokenwave.patterns import Pattern

KIND = "lm"


class Block(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads)
        self.cross = Attention(cfg.dim, cfg.heads, cross=True) if cfg.cross_attention else None
        self.norm_c = nn.LayerNorm(cfg.dim) if cfg.cross_attention else None
        self.norm2 = nn.LayerNorm(cfg.dim)
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.mlp = nn.Sequential(Linear(cfg.dim, hidden), nn.GELU(), Linear(hidden, cfg.dim))

    def forward(self, x, mask, rope, cache, layer, cross, cross_mask):
        h = self.norm1(x)
        x = x + self.attn(h, h, mask, rope, cache, layer)
        if self.cross is not None and cross is not None:
            x = x + self.cross(self.norm_c(x), cross, cross_mask, cache=cache, layer=layer)
        return x + self.mlp(self.norm2(x))


class TokenLM(Checkpointable, nn.Module):
    KIND = KIND
    CONFIG = LMConfig
    kv_dtype: torch.dtype | None = None  # the KV cache's dtype at inference (None: the weights'; set_precision sets it)

    @property
    def cache_dtype(self) -> torch.dtype:
        """The dtype a decoding cache for this model holds its keys and values in."""
        return self.kv_dtype or self.null_cond.dtype

    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pattern = Pattern(cfg.pattern, cfg.K)
        V = cfg.codebook_size
        self.embed = nn.Embedding(cfg.K * (V + 1), cfg.dim)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(cfg.dim)
        self.head = Linear(cfg.dim, cfg.K * V, bias=False)
        self.null_cond = nn.Parameter(torch.zeros(cfg.dim))
        hd = cfg.dim // cfg.heads
        inv = 1.0 / cfg.rope_base ** (torch.arange(0, hd // 2, dtype=torch.float32) / (hd // 2))
        angles = torch.arange(cfg.max_len, dtype=torch.float32)[:, None] * inv[None]
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)

    # --- pieces ------------------------------------------------------------------------------------------
    def embed_steps(self, tokens: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        """``tokens [B, S, n]`` with codebooks ``book [B or 1, S, n]`` -> summed embeddings ``[B, n, D]``."""
        return self.embed(book * (self.cfg.codebook_size + 1) + tokens).sum(dim=1)

    def logits_for(self, h: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
        """Hidden ``[B, n, D]`` -> logits ``[B, S, n, V]`` of the codebooks ``book [B or 1, S, n]`` the slots hold."""
        B, n, _ = h.shape
        V = self.cfg.codebook_size
        all_logits = self.head(self.norm(h)).view(B, n, self.cfg.K, V)  # [B, n, K, V]
        S = book.shape[1]
        if S == self.cfg.K and (book == torch.arange(S, device=book.device)[:, None]).all():
            return all_logits.permute(0, 2, 1, 3)  # stream s holds codebook s (delay, parallel, vall-e): no gather
        idx = book.expand(B, -1, -1).permute(0, 2, 1)  # [B, n, S]
        return torch.gather(all_logits, 2, idx[..., None].expand(-1, -1, -1, V)).permute(0, 2, 1, 3)

    def _rope(self, start: int, n: int):
        if start + n > self.cfg.max_len:
            raise ValueError(f"sequence of {start + n} positions exceeds max_len {self.cfg.max_len}; use sliding windows")
        return self.rope_cos[start: start + n], self.rope_sin[start: start + n]

    def run(self, x: torch.Tensor, cond: Conditioning, valid: torch.Tensor | None = None,
            cache: KVCache | None = None) -> torch.Tensor:
        """Transformer over ``x [B, n, D]`` (causal; ``valid [B, n]`` marks real positions), with the cache if given."""
        B, n, _ = x.shape
        start = cache.pos if cache is not None else 0
        lo = cache.lo if cache is not None else 0  # keys before lo are never attended to (KVCache.lo)
        if cache is not None:
            cache.valid[:, start: start + n] = True if valid is None else valid
            if valid is not None and cache.all_valid:
                cache.all_valid = bool(valid.all())
            keys_valid = cache.valid[:, lo: start + n]
        else:
            keys_valid = valid if valid is not None else torch.ones(B, n, dtype=torch.bool, device=x.device)
        if n == 1 and cache is not None and (cache.all_valid or (lo and bool(keys_valid.all()))):
            mask = None  # one query, every cached key it sees valid
        else:
            causal = torch.ones(n, start + n - lo, dtype=torch.bool, device=x.device).tril(start - lo)
            mask = causal[None, None] & keys_valid[:, None, None, :]
            mask = mask | ~mask.any(-1, keepdim=True)  # a fully padded query row attends to all (output unused)
        cross_mask = None if cond.cross_mask is None else cond.cross_mask[:, None, None, :]
        rope = self._rope(start, n)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, rope, cache, i, cond.cross, cross_mask)
        if cache is not None:
            cache.pos += n
        return x

    # --- training ----------------------------------------------------------------------------------------
    def forward(self, codes: torch.Tensor, cond: Conditioning | None = None, lengths: torch.Tensor | None = None,
                kv_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: ``codes [B, K, T] -> (logits [B, S, L, V], targets [B, S, L] with -100 where masked)``.
        ``lengths [B]``: real frames per item (the rest is padding, left out of the loss). In training, conditioning
        is replaced by the null vector for a ``cond_dropout`` share of items. ``kv_dtype``: attend through a KV cache
        of that dtype, as decoding does (e.g. to measure what a bfloat16 cache changes); None: no cache."""
        cond = cond or Conditioning()
        B, _, T = codes.shape
        seq, mask = self.pattern.build(codes, self.cfg.special)
        frame, book, _ = self.pattern.layout(T)
        book = book.to(codes.device)[None]
        inp = torch.cat([torch.full_like(seq[..., :1], self.cfg.special), seq[..., :-1]], dim=-1)
        inp_book = torch.cat([book[..., :1], book[..., :-1]], dim=-1)
        if self.training and self.cfg.cond_dropout > 0 and cond.batch_size:
            keep = torch.rand(B, device=codes.device) >= self.cfg.cond_dropout
            cond = cond.drop(keep, self.null_cond)
        x = self.embed_steps(inp, inp_book)
        per_frame = cond.frame_inputs(frame[0].to(codes.device))  # e.g. melody, at the step predicting its frame
        if per_frame is not None:
            x = x + per_frame
        P = cond.prefix_len
        valid = None
        if P:
            x = torch.cat([cond.prefix, x], dim=1)
            if cond.prefix_mask is not None:
                valid = torch.cat([cond.prefix_mask, torch.ones(B, x.shape[1] - P, dtype=torch.bool, device=x.device)], 1)
        cache = None if kv_dtype is None else KVCache(self.cfg, B, x.device, kv_dtype, max_len=x.shape[1])
        h = self.run(x, cond, valid, cache)[:, P:]
        logits = self.logits_for(h, book)
        keep = mask.to(seq.device)[None].expand(B, -1, -1)
        if lengths is not None:
            keep = keep & (frame.to(seq.device)[None] < lengths.to(seq.device)[:, None, None])
        targets = seq.masked_fill(~keep, -100)
        return logits, targets

    def loss(self, codes: torch.Tensor, cond: Conditioning | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        logits, targets = self(codes, cond, lengths)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    # --- checkpoints -------------------------------------------------------------------------------------
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def param_count_str(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


__all__ = ["Block", "TokenLM", "param_count_str"]
