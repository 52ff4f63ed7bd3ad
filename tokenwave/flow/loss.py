"""Conditional flow matching (rectified flow): straight paths from noise to data, velocity regression."""
from __future__ import annotations

import torch

from tokenwave.conditioning import Conditioning
from tokenwave.flow.model import FlowDiT


def frame_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """``lengths [B]`` -> ``mask [B, frames]``, True on each item's first ``lengths[b]`` frames."""
    return torch.arange(frames, device=lengths.device)[None] < lengths[:, None]


def sample_times(B: int, kind: str = "logit_normal", generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Training times ``t [B]`` in (0, 1): ``uniform`` or ``logit_normal`` (sigmoid of a standard normal, as in
    SD3: more weight on the middle of the path, where the velocity is hardest to predict)."""
    if kind == "uniform":
        return torch.rand(B, generator=generator, device=device)
    if kind == "logit_normal":
        return torch.sigmoid(torch.randn(B, generator=generator, device=device))
    raise ValueError(f"unknown time distribution {kind!r}; use uniform or logit_normal")


def random_prompt_mask(lengths: torch.Tensor, frames: int, share: float,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, frames]``: for a ``share`` of items a given prefix of 1 .. lengths/2 frames (continuation training)."""
    B = lengths.shape[0]
    dev = lengths.device
    pick = torch.rand(B, generator=generator, device=dev) < share
    n = (torch.rand(B, generator=generator, device=dev) * (lengths // 2).clamp_min(1)).long() + 1
    n = torch.where(pick & (lengths > 1), n, torch.zeros_like(n))
    return torch.arange(frames, device=dev)[None] < n[:, None]


def flow_loss(model: FlowDiT, x1: torch.Tensor, lengths: torch.Tensor | None = None, cond: Conditioning | None = None,
              prompt_share: float = 0.3, times: str = "logit_normal",
              generator: torch.Generator | None = None) -> torch.Tensor:
    """Masked MSE between the predicted and the target velocity ``x1 - x0``.

    ``x1 [B, D, T]``: normalised latents (codec latents / ``latent_scale``); ``lengths [B]``: valid frames per
    item (default: all). x0 ~ N(0, I), t from ``times``, x_t = (1 - t) x0 + t x1. A ``prompt_share`` of items get
    a given prefix (fed through the prompt channels) that is left out of the loss.
    """
    B, D, T = x1.shape
    lengths = torch.full((B,), T, device=x1.device) if lengths is None else lengths.to(x1.device)
    valid = frame_mask(lengths, T)
    given = random_prompt_mask(lengths, T, prompt_share, generator) if prompt_share > 0 else torch.zeros_like(valid)
    x1 = x1 * valid[:, None]
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype) * valid[:, None]
    t = sample_times(B, times, generator, x1.device).to(x1.dtype)
    x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * x1
    v = model(x_t, t, cond, valid, x1 if bool(given.any()) else None, given)
    w = (valid & ~given).to(x1.dtype)[:, None]
    return ((v - (x1 - x0)) ** 2 * w).sum() / (w.sum() * D).clamp_min(1.0)
