"""``nn.Linear`` with oneDNN's prepacked fp32 GEMM at inference on CPU, and the packed GEMM itself for layers that fuse
several weights into one call (attention's q, k, v)."""
from __future__ import annotations

import weakref

import torch
from torch import nn

# oneDNN's prepacked fp32 GEMM: at inference on CPU it runs 2-3x faster than the default BLAS for more than one row on
# some CPUs (AMD EPYC with MKL); one packed copy per weight, rebuilt when the weight changes (tracked by its version).
_PACKED_OK = (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
              and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (weight versions, packed weight)


def packable(x: torch.Tensor, rows_out: int) -> bool:
    """Packed GEMM for ``x [..., D]`` through a ``[rows_out, D]`` weight? (inference, CPU, fp32; a single row
    through a small weight stays on the default GEMV, which is faster there)."""
    return (_PACKED_OK and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and (x.numel() > x.shape[-1] or rows_out * x.shape[-1] >= 1 << 20))


def packed_linear(owner: nn.Module, x: torch.Tensor, weights: tuple[torch.Tensor, ...],
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
        if self.weight.dtype == torch.float32 and packable(x, self.out_features):
            return packed_linear(self, x, (self.weight,), self.bias)
        return super().forward(x)


__all__ = ["Linear", "packable", "packed_linear"]
