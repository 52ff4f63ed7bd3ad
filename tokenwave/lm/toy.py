"""The seed lesson on synthetic token streams: a tiny LM learns conditioned styles and the delay pattern in seconds.

Style 0 ("alternating") alternates a low and a high token; style 1 ("ramp") counts ``token_i = 3 i mod V``. The
two-stream task keeps stream 1 one step behind stream 0 (``codes[1, t] == codes[0, t - 1]``).
"""
from __future__ import annotations

import torch

from tokenwave.conditioning import Conditioning, TagConditioner
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM

LOW, HIGH = 2, 13


def style_batch(styles: torch.Tensor, T: int, V: int, g: torch.Generator) -> torch.Tensor:
    """``codes [B, 1, T]`` following each item's style (random phase / offset)."""
    B = styles.shape[0]
    t = torch.arange(T)[None]
    phase = torch.randint(0, 2, (B, 1), generator=g)
    alt = torch.where((t + phase) % 2 == 0, LOW, HIGH)
    start = torch.randint(0, V, (B, 1), generator=g)
    ramp = (start + 3 * t) % V
    return torch.where(styles[:, None] == 0, alt, ramp)[:, None]


def offset_batch(B: int, T: int, V: int, g: torch.Generator) -> torch.Tensor:
    """``codes [B, 2, T]``: stream 0 random, stream 1 a copy of stream 0 one step later."""
    s0 = torch.randint(0, V, (B, T), generator=g)
    s1 = torch.cat([torch.randint(0, V, (B, 1), generator=g), s0[:, :-1]], dim=1)
    return torch.stack([s0, s1], dim=1)


def train_toy(cfg: LMConfig, batch_fn, steps: int = 300, conditioner: TagConditioner | None = None,
              lr: float = 3e-3, seed: int = 0) -> TokenLM:
    """Train ``TokenLM(cfg)`` on ``batch_fn(g) -> (codes, style ids or None)`` for a few hundred steps."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    lm = TokenLM(cfg)
    params = list(lm.parameters()) + (list(conditioner.parameters()) if conditioner else [])
    opt = torch.optim.AdamW(params, lr=lr)
    lm.train()
    for _ in range(steps):
        codes, ids = batch_fn(g)
        cond = conditioner(ids) if conditioner is not None and ids is not None else None
        loss = lm.loss(codes, cond)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lm.eval()


def style_rule_accuracy(codes: torch.Tensor, style: int, V: int) -> float:
    """Share of next tokens in ``codes [T]`` that follow ``style``'s rule."""
    prev, nxt = codes[:-1], codes[1:]
    if style == 0:
        ok = ((prev == LOW) & (nxt == HIGH)) | ((prev == HIGH) & (nxt == LOW))
    else:
        ok = nxt == (prev + 3) % V
    return float(ok.float().mean())


__all__ = ["Conditioning", "offset_batch", "style_batch", "style_rule_accuracy", "train_toy"]
