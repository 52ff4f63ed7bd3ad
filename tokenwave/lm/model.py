"""Decoder-only transformer over summed codebook embeddings, K output heads, rotary positions and a KV cache.

Inputs are pattern sequences ``seq [B, S, L]`` (see :mod:`tokenwave.patterns`); the slot of stream s at step l
holds codebook ``book[s, l]``, so one embedding table of ``K * (V + 1)`` rows and one head of ``K * V`` outputs
serve every pattern. The model sees ``[prefix (P) | start, step 0, ..., step L-2]`` and predicts steps 0..L-1.
"""
from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.checkpoint import Checkpointable
from tokenwave.conditioning import Conditioning
from tokenwave.lm.config import LMConfig
from tokenwave.patterns import Pattern

KIND = "lm"

# oneDNN's prepacked fp32 GEMM: at inference on CPU it runs 2-3x faster than the default BLAS for more than one row on
# some CPUs (AMD EPYC with MKL); one packed copy per weight, rebuilt when the weight changes (tracked by its version).
_PACKED_OK = (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
              and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (weight versions, packed weight)


def _packable(x: torch.Tensor, rows_out: int) -> bool:
    """Packed GEMM for ``x [..., D]`` through a ``[rows_out, D]`` weight? (inference, CPU, fp32; a single row
    through a small weight stays on the default GEMV, which is faster there)."""
    return (_PACKED_OK and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and (x.numel() > x.shape[-1] or rows_out * x.shape[-1] >= 1 << 20))


def _packed_linear(owner: nn.Module, x: torch.Tensor, weights: tuple[torch.Tensor, ...],
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ cat(weights).T + bias`` with oneDNN's packed copy of the weights, cached on ``owner``."""
    key = tuple((w.data_ptr(), w._version, w.dtype) for w in weights)
    hit = _PACKED.get(owner)
    if hit is None or hit[0] != key:
        w = weights[0] if len(weights) == 1 else torch.cat(weights)
        hit = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), None))
        _PACKED[owner] = hit
    return torch.ops.mkldnn._linear_pointwise(x, hit[1], bias, "none", [], "")


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) that runs the packed oneDNN GEMM at inference on CPU in fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.dtype == torch.float32 and _packable(x, self.out_features):
            return _packed_linear(self, x, (self.weight,), self.bias)
        return super().forward(x)


class KVCache:
    """Preallocated keys/values ``[B, H, max_len, Dh]`` per layer and a validity mask ``[B, max_len]``; also the
    cross-attention keys/values of the conditioning, computed once per stream."""

    def __init__(self, cfg: LMConfig, batch: int, device: torch.device, dtype: torch.dtype, max_len: int | None = None) -> None:
        n = max_len or cfg.max_len
        hd = cfg.dim // cfg.heads
        self.k = [torch.zeros(batch, cfg.heads, n, hd, device=device, dtype=dtype) for _ in range(cfg.depth)]
        self.v = [torch.zeros_like(self.k[0]) for _ in range(cfg.depth)]
        self.valid = torch.zeros(batch, n, dtype=torch.bool, device=device)
        self.pos = 0
        self.max_len = n
        self.all_valid = True  # no padded key so far: single-step decoding needs no mask
        self.cross_src: torch.Tensor | None = None
        self.cross_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, cross: bool = False) -> None:
        super().__init__()
        self.heads, self.cross = heads, cross
        self.q = Linear(dim, dim, bias=False)
        self.kv = Linear(dim, 2 * dim, bias=False)
        self.out = Linear(dim, dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        return x.view(B, L, self.heads, D // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None, rope=None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        if self.cross and cache is not None:  # the conditioning is fixed for a stream: its keys/values once
            if cache.cross_src is not ctx:
                cache.cross_src, cache.cross_kv = ctx, {}
            if layer not in cache.cross_kv:
                cache.cross_kv[layer] = tuple(self._split(t) for t in self.kv(ctx).chunk(2, dim=-1))
            k, v = cache.cross_kv[layer]
            q = self._split(self.q(x))
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.out(y.transpose(1, 2).reshape(x.shape))
        if ctx is x and self.q.weight.dtype == torch.float32 and _packable(x, 3 * x.shape[-1]):
            B, n, D = x.shape  # self-attention: one GEMM for q, k, v and one rotary call for q and k
            qkv = _packed_linear(self, x, (self.q.weight, self.kv.weight)).view(B, n, 3, self.heads, D // self.heads)
            qk, v = qkv[:, :, :2], qkv[:, :, 2].transpose(1, 2)
            if rope is not None:
                qk = rotary(qk, rope[0][:, None, None], rope[1][:, None, None])
            q, k = (t.transpose(1, 2) for t in qk.unbind(2))
        else:
            q = self._split(self.q(x))
            k, v = (self._split(t) for t in self.kv(ctx).chunk(2, dim=-1))
            if rope is not None:
                cos, sin = rope
                q, k = rotary(q, cos, sin), rotary(k, cos, sin)
        if cache is not None:
            p, n = cache.pos, k.shape[2]
            cache.k[layer][:, :, p: p + n] = k
            cache.v[layer][:, :, p: p + n] = v
            k, v = cache.k[layer][:, :, : p + n], cache.v[layer][:, :, : p + n]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(x.shape))


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
        if cache is not None:
            cache.valid[:, start: start + n] = True if valid is None else valid
            if valid is not None and cache.all_valid:
                cache.all_valid = bool(valid.all())
            keys_valid = cache.valid[:, : start + n]
        else:
            keys_valid = valid if valid is not None else torch.ones(B, n, dtype=torch.bool, device=x.device)
        if n == 1 and cache is not None and cache.all_valid:
            mask = None  # one query, every cached key valid
        else:
            causal = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(start)
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
    def forward(self, codes: torch.Tensor, cond: Conditioning | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass: ``codes [B, K, T] -> (logits [B, S, L, V], targets [B, S, L] with -100 where masked)``.
        ``lengths [B]``: real frames per item (the rest is padding, left out of the loss). In training, conditioning
        is replaced by the null vector for a ``cond_dropout`` share of items."""
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
        h = self.run(x, cond, valid)[:, P:]
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


__all__ = ["KVCache", "TokenLM", "LMConfig", "param_count_str", "math"]
