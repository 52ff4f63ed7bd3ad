"""DiT-style velocity network over continuous codec latents (flow matching).

``x_t [B, D, T]`` (latents / latent_scale, 75 Hz frames) plus the prompt channels ``prompt * prompt_mask`` and
``prompt_mask`` (continuation / inpainting) are cut into patches of ``cfg.patch`` frames (the last one
zero-padded) and each patch is projected to the model width, one token per patch; conditioning tokens
(``Conditioning.prefix``) are prepended in context; every block is modulated (adaLN-zero) by the timestep
embedding plus the pooled conditioning; attention is bidirectional with rotary positions on the frames (prefix
tokens get none, so frame positions do not depend on the prefix length) and a key padding mask from the
valid-frame mask (variable durations). Optional cross-attention reads ``Conditioning.cross``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.checkpoint import Checkpointable
from tokenwave.conditioning import Conditioning
from tokenwave.flow.config import FlowConfig
from tokenwave.nn import Attention, Linear

KIND = "flow"


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of ``t [B]`` in [0, 1] (scaled by 1000, as in DiT) -> ``[B, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x [B, L, dim]`` scaled and shifted per item by ``shift, scale [B, dim]``."""
    return x * (1 + scale[:, None]) + shift[:, None]


class FlowBlock(nn.Module):
    """Pre-norm transformer block with adaLN-zero: attention and MLP, each scaled/shifted/gated by ``c [B, dim]``."""

    def __init__(self, cfg: FlowConfig) -> None:
        super().__init__()
        d = cfg.dim
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(d, cfg.heads)
        self.cross = Attention(d, cfg.heads, cross=True) if cfg.cross_attention else None
        self.norm_c = nn.LayerNorm(d) if cfg.cross_attention else None
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(Linear(d, hidden), nn.GELU(), Linear(hidden, d))
        self.ada = Linear(d, 6 * d)  # zero-initialised: every block starts as the identity

    def forward(self, x: torch.Tensor, c: torch.Tensor, mask: torch.Tensor | None, rope,
                cross: torch.Tensor | None, cross_mask: torch.Tensor | None) -> torch.Tensor:
        s1, sc1, g1, s2, sc2, g2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        h = modulate(self.norm1(x), s1, sc1)
        x = x + g1[:, None] * self.attn(h, h, mask, rope)
        if self.cross is not None and cross is not None:
            x = x + self.cross(self.norm_c(x), cross, cross_mask)
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), s2, sc2))


class FlowDiT(Checkpointable, nn.Module):
    """Velocity ``v [B, D, T]`` of the straight path from noise (t=0) to normalised latents (t=1)."""

    KIND = KIND
    CONFIG = FlowConfig

    def __init__(self, cfg: FlowConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or FlowConfig()
        if cfg.dim % cfg.heads or (cfg.dim // cfg.heads) % 2:
            raise ValueError("dim must split into heads of an even size")
        D, d = cfg.latent_dim, cfg.dim
        if cfg.patch < 1:
            raise ValueError("patch must be >= 1")
        p = cfg.patch
        self.inp = Linear((2 * D + 1) * p, d)  # a patch of p frames of (x_t, prompt * prompt_mask, prompt_mask)
        self.t_freq = 256
        self.t_mlp = nn.Sequential(Linear(self.t_freq, d), nn.SiLU(), Linear(d, d))
        self.pool = Linear(d, d)  # pooled conditioning -> added to the timestep embedding
        self.blocks = nn.ModuleList([FlowBlock(cfg) for _ in range(cfg.depth)])
        self.norm_out = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada_out = Linear(d, 2 * d)
        self.out = Linear(d, D * p)
        self.null_cond = nn.Parameter(torch.zeros(d))
        hd = d // cfg.heads
        inv = 1.0 / cfg.rope_base ** (torch.arange(0, hd // 2, dtype=torch.float32) / (hd // 2))
        angles = torch.arange(-(-cfg.max_frames // p), dtype=torch.float32)[:, None] * inv[None]
        self.register_buffer("rope_cos", angles.cos(), persistent=False)
        self.register_buffer("rope_sin", angles.sin(), persistent=False)
        self.apply(self._init)
        for m in [b.ada for b in self.blocks] + [self.ada_out, self.out]:  # adaLN-zero
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

    def _rope(self, P: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotary tables ``[P + N, head_dim / 2]`` for T frames in N patches: identity for the P prefix tokens,
        positions 0..N-1 for the patches."""
        if T > self.cfg.max_frames:
            raise ValueError(f"{T} frames exceed max_frames {self.cfg.max_frames}; use sample_long (sliding windows)")
        N = -(-T // self.cfg.patch)
        cos, sin = self.rope_cos[:N], self.rope_sin[:N]
        if P:
            cos = torch.cat([cos.new_ones(P, cos.shape[1]), cos])
            sin = torch.cat([sin.new_zeros(P, sin.shape[1]), sin])
        return cos, sin

    def _pooled(self, cond: Conditioning, B: int) -> torch.Tensor:
        """Masked mean of the prefix and cross tokens ``[B, dim]``; the null vector when there are none."""
        toks, masks = [], []
        for t, m in ((cond.prefix, cond.prefix_mask), (cond.cross, cond.cross_mask)):
            if t is not None:
                toks.append(t)
                masks.append(torch.ones(t.shape[:2], dtype=torch.bool, device=t.device) if m is None else m)
        if not toks:
            return self.null_cond[None].expand(B, -1)
        tok, m = torch.cat(toks, 1), torch.cat(masks, 1).to(toks[0].dtype)[..., None]
        return (tok * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning | None = None,
                mask: torch.Tensor | None = None, prompt: torch.Tensor | None = None,
                prompt_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x_t [B, D, T]``, ``t [B]`` in [0, 1], ``mask [B, T]`` (True: a valid frame), ``prompt [B, D, T]`` with
        ``prompt_mask [B, T]`` (True: a given frame) -> velocity ``[B, D, T]`` (zero at invalid frames). In training,
        conditioning is replaced by the null vector for a ``cond_dropout`` share of items."""
        cond = cond or Conditioning()
        B, _, T = x_t.shape
        if self.training and self.cfg.cond_dropout > 0 and cond.batch_size:
            keep = torch.rand(B, device=x_t.device) >= self.cfg.cond_dropout
            cond = cond.drop(keep, self.null_cond)
        if prompt is None or prompt_mask is None:
            pin = x_t.new_zeros(B, x_t.shape[1] + 1, T)
        else:
            pm = prompt_mask.to(x_t.dtype)[:, None]
            pin = torch.cat([prompt * pm, pm], dim=1)
        p = self.cfg.patch
        N = -(-T // p)
        frames_in = F.pad(torch.cat([x_t, pin], dim=1), (0, N * p - T))  # [B, 2D+1, N*p]
        h = self.inp(frames_in.unflatten(2, (N, p)).permute(0, 2, 1, 3).flatten(2))  # [B, N, dim]
        if cond.frames is not None:  # per-frame conditioning (melody; the last frame held as in the token LM), per patch
            fc = cond.frame_inputs(torch.arange(N * p, device=h.device)).to(h.dtype)
            h = h + fc.unflatten(1, (N, p)).mean(2)
        c = self.t_mlp(timestep_embedding(t.expand(B), self.t_freq).to(h.dtype)) + self.pool(self._pooled(cond, B))
        P = cond.prefix_len
        attn_mask = None
        if mask is not None or (P and cond.prefix_mask is not None):
            fm = mask if mask is not None else torch.ones(B, T, dtype=torch.bool, device=h.device)
            fm = F.pad(fm, (0, N * p - T)).unflatten(1, (N, p)).any(-1)  # a patch with a valid frame is valid
            pm_ = cond.prefix_mask if cond.prefix_mask is not None else torch.ones(B, P, dtype=torch.bool, device=h.device)
            keys = torch.cat([pm_[:, :P], fm], dim=1)
            if not bool(keys.all()):
                attn_mask = keys[:, None, None, :]
        if P:
            h = torch.cat([cond.prefix.to(h.dtype), h], dim=1)
        rope = self._rope(P, T)
        cross_mask = None if cond.cross_mask is None else cond.cross_mask[:, None, None, :]
        for block in self.blocks:
            h = block(h, c, attn_mask, rope, cond.cross, cross_mask)
        shift, scale = self.ada_out(F.silu(c)).chunk(2, dim=-1)
        v = self.out(modulate(self.norm_out(h[:, P:]), shift, scale))  # [B, N, D*p]
        v = v.unflatten(2, (-1, p)).permute(0, 2, 1, 3).flatten(2)[..., :T]  # [B, D, T]
        return v if mask is None else v * mask[:, None].to(v.dtype)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())
