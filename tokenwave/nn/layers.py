"""Causal frame-rate layers. Every conv is causal (left padding only), so streaming equals offline exactly."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.nn.streaming import StreamingModule


class CausalConv1d(StreamingModule):
    """``Conv1d`` with stride 1 and left padding ``(kernel - 1) * dilation``; ``x: [B, C, T] -> [B, C_out, T]``."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, groups=groups, bias=bias)
        self.pad = (kernel - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == 0:
            return self.conv(x)
        if not self.is_streaming:
            return self.conv(F.pad(x, (self.pad, 0)))
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        past = self.stream_state if self.stream_state is not None else x.new_zeros(x.shape[0], x.shape[1], self.pad)
        full = torch.cat([past, x], dim=-1)
        self.stream_state = full[..., -self.pad:]
        return self.conv(full)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over channels of a ``[B, C, T]`` tensor (per frame, so it is causal)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXtBlock(nn.Module):
    """Causal ConvNeXt block (as in Vocos): depthwise conv, LayerNorm, pointwise MLP, layer scale, residual."""

    def __init__(self, dim: int, mlp_ratio: float = 3.0, kernel: int = 7, layer_scale: float = 1e-2) -> None:
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, kernel, groups=dim)
        self.norm = ChannelLayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.pw1 = nn.Conv1d(dim, hidden, 1)
        self.pw2 = nn.Conv1d(hidden, dim, 1)
        self.gamma = nn.Parameter(torch.full((dim, 1), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the norm and the pointwise MLP over [B, T, C], the 1x1 convs' weights viewed as matrices (the same
        # parameters): at a few frames (a streaming decoder's chunks) torch's 1x1 conv takes its slow im2col path,
        # and 2-frame chunks of the TTS decoder took 1.5x as long on one thread; at many frames the two are alike
        h = F.layer_norm(self.dwconv(x).transpose(1, 2), self.norm.normalized_shape, self.norm.weight, self.norm.bias,
                         self.norm.eps)
        y = F.linear(F.gelu(F.linear(h, self.pw1.weight[..., 0], self.pw1.bias)), self.pw2.weight[..., 0], self.pw2.bias)
        return x + self.gamma * y.transpose(1, 2)


class ConvNeXtStack(nn.Module):
    """``Conv1d(cin -> dim)``, ``depth`` causal ConvNeXt blocks, final LayerNorm; ``[B, cin, T] -> [B, dim, T]``."""

    def __init__(self, cin: int, dim: int, depth: int, mlp_ratio: float = 3.0, kernel: int = 7) -> None:
        super().__init__()
        self.embed = CausalConv1d(cin, dim, kernel)
        self.norm_in = ChannelLayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList([ConvNeXtBlock(dim, mlp_ratio, kernel, layer_scale=1.0 / depth) for _ in range(depth)])
        self.norm_out = ChannelLayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
        """``add`` (``[B, dim, T]``, optional): a per-frame input added after the embedding conv."""
        x = self.embed(x)
        x = self.norm_in(x if add is None else x + add)
        for block in self.blocks:
            x = block(x)
        return self.norm_out(x)
