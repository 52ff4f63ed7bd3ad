"""Multi-head attention (self or cross) with rotary positions, a preallocated KV cache and, at inference on CPU,
one packed GEMM for q, k and v."""
from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.nn.linear import Linear, int8_linear, int8_pack, packable, packed_linear


class CacheShape(Protocol):
    """What a :class:`KVCache` reads from a model's config (e.g. ``LMConfig``)."""

    dim: int
    heads: int
    depth: int
    max_len: int


class KVCache:
    """Preallocated keys/values ``[B, H, max_len, Dh]`` per layer and a validity mask ``[B, max_len]``; also the
    cross-attention keys/values of the conditioning, computed once per stream. Queries attend to the slots
    ``lo .. pos`` (``lo`` 0 but in the server's batch engine, whose rows hold nothing before its window)."""

    def __init__(self, cfg: CacheShape, batch: int, device: torch.device, dtype: torch.dtype, max_len: int | None = None) -> None:
        n = max_len or cfg.max_len
        hd = cfg.dim // cfg.heads
        self.k = [torch.zeros(batch, cfg.heads, n, hd, device=device, dtype=dtype) for _ in range(cfg.depth)]
        self.v = [torch.zeros_like(self.k[0]) for _ in range(cfg.depth)]
        self.valid = torch.zeros(batch, n, dtype=torch.bool, device=device)
        self.pos = 0
        self.lo = 0  # first slot any query attends to: every row's valid keys lie in [lo, pos) (a batch engine's window)
        self.max_len = n
        self.all_valid = True  # no padded key so far: single-step decoding needs no mask
        self.cross_src: torch.Tensor | None = None
        self.cross_kv: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


def rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x [..., Dh]`` -> ``[..., Dh]``: its two halves rotated as pairs by the angles' ``cos, sin [..., Dh / 2]``."""
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    """Queries of ``x [B, n, D]`` over keys/values of ``ctx [B, m, D]`` -> ``[B, n, D]``: self-attention when ``ctx is
    x`` (rotary positions, written into the cache at its position), cross-attention to the conditioning when ``cross``
    (its keys/values computed once per stream and kept in the cache)."""

    def __init__(self, dim: int, heads: int, cross: bool = False) -> None:
        super().__init__()
        self.heads, self.cross = heads, cross
        self.q = Linear(dim, dim, bias=False)
        self.kv = Linear(dim, 2 * dim, bias=False)
        self.out = Linear(dim, dim, bias=False)
        self.qkv_int8 = None  # q, k, v in one int8 GEMM (set_precision "int8")

    def use_int8(self, on: bool) -> None:
        self.qkv_int8 = int8_pack(torch.cat([self.q.weight, self.kv.weight])) if on and not self.cross else None

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
        fused_int8 = ctx is x and self.qkv_int8 is not None and not torch.is_grad_enabled()
        if fused_int8 or (ctx is x and self.q.weight.dtype == torch.float32 and packable(x, 3 * x.shape[-1])):
            B, n, D = x.shape  # self-attention: one GEMM for q, k, v and one rotary call for q and k
            qkv = int8_linear(x, self.qkv_int8) if fused_int8 else packed_linear(self, x, (self.q.weight, self.kv.weight))
            qkv = qkv.view(B, n, 3, self.heads, D // self.heads)
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
            k, v = cache.k[layer][:, :, cache.lo: p + n], cache.v[layer][:, :, cache.lo: p + n]
        if k.dtype != q.dtype:  # a reduced-precision cache (set_precision "int8": bfloat16 keys and values)
            y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=mask).to(x.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out(y.transpose(1, 2).reshape(x.shape))


__all__ = ["Attention", "CacheShape", "KVCache", "rotary"]
