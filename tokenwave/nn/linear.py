"""``nn.Linear`` with oneDNN's prepacked fp32 GEMM at inference on CPU, and the packed GEMM itself for layers that fuse
several weights into one call (attention's q, k, v); beside it an int8 path (:func:`set_precision`): weights
quantized per output channel, activations per call, fbgemm's dynamic int8 GEMM."""
from __future__ import annotations

import warnings
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from tokenwave.errors import InvalidArgumentError
from tokenwave.sysdeps import cpuinfo

# oneDNN's prepacked fp32 GEMM: at inference on CPU it runs 2-3x faster than the default BLAS for more than one row on
# some CPUs (AMD EPYC with MKL) and for more than a few on others (FEW_ROWS); one packed copy per weight, rebuilt when
# the weight changes (tracked by its version).
_PACKED_OK = (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
              and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # module -> (weight versions, packed, plain)
PRECISIONS = ("fp32", "int8")


# Rows up to which a packed layer's GEMM runs on the default BLAS instead. MKL's GEMM is fast for a few rows on Intel
# CPUs (on an Intel Xeon with AMX: 2 rows through a 256 x 1024 weight 21 us, the packed copy 50 us), where the
# packed copy pays off from about 4 rows on (the guided batch-2 decoding loops stay on BLAS, the server's batch
# engine goes packed); elsewhere (AMD EPYC) MKL is the slow one and every multi-row GEMM goes packed. A fixed rule
# per machine, never a timing, so every process (the server's engine process too) takes the same path.
FEW_ROWS = 3 if torch.backends.mkl.is_available() and cpuinfo("vendor_id") == "GenuineIntel" else 0


def reduced_kv_dtype(flags: str | None = None) -> torch.dtype | None:
    """The KV cache dtype of reduced-precision decoding on this CPU (``flags``: /proc/cpuinfo's, read when None):
    bfloat16 where the CPU computes in it (AVX512-BF16 or AMX), else None (the weights' float32).

    Half the bytes makes attention over a long cache cheaper only where bfloat16 is native: on an Intel Xeon with AMX
    an 8-stream TTS engine step took 0.87x as long; on an AMD EPYC with AVX2 alone, scaled dot-product attention of
    one query over 300-600 bfloat16 keys took 5-7x as long as over float32 ones, and the offline TTS 1.2-1.3x as
    long (benchmarks/kv_cache.py). A fixed rule per machine, never a timing, so every process (the server's engine
    process too) keeps the same cache."""
    have = set((cpuinfo("flags") if flags is None else flags).split())
    return torch.bfloat16 if have & {"avx512_bf16", "amx_bf16"} else None


#: :func:`reduced_kv_dtype` of this machine: the KV cache of "int8" decoding and of the TTS (None: float32).
REDUCED_KV = reduced_kv_dtype()


def packable(x: torch.Tensor, rows_out: int) -> bool:
    """Packed GEMM for ``x [..., D]`` through a ``[rows_out, D]`` weight? (inference, CPU, fp32; a single row
    through a small weight stays on the default GEMV, which is faster there)."""
    return (_PACKED_OK and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and (x.numel() > x.shape[-1] or rows_out * x.shape[-1] >= 1 << 20))


def packed_linear(owner: nn.Module, x: torch.Tensor, weights: tuple[torch.Tensor, ...],
                  bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ cat(weights).T + bias`` with oneDNN's packed copy of the weights, cached on ``owner`` (at most
    :data:`FEW_ROWS` rows: the default BLAS on the concatenated weights, cached too)."""
    few = x.numel() <= FEW_ROWS * x.shape[-1]
    if few and len(weights) == 1:  # nothing to concatenate or pack: the weight itself
        return F.linear(x, weights[0], bias)
    key = tuple((w.data_ptr(), w._version, w.dtype) for w in weights)
    hit = _PACKED.get(owner)
    if hit is None or hit[0] != key:
        hit = [key, None, (weights[0] if len(weights) == 1 else torch.cat(weights)).detach()]
        _PACKED[owner] = hit
    if few:
        return F.linear(x, hit[2], bias)
    if hit[1] is None:  # packed on first use
        hit[1] = torch.ops.mkldnn._reorder_linear_weight(hit[2], None)
    return torch.ops.mkldnn._linear_pointwise(x, hit[1], bias, "none", [], "")


def int8_pack(weight: torch.Tensor, bias: torch.Tensor | None = None):
    """``weight [out, in]`` (and ``bias [out]``) -> fbgemm's packed int8 copy: symmetric, one scale per output row."""
    w = weight.detach().float()
    scale = (w.abs().amax(1).clamp_min(1e-12) / 127).double()
    with warnings.catch_warnings():  # quantized tensors are deprecated in torch.ao, still the packed GEMM's input
        warnings.simplefilter("ignore", UserWarning)
        q = torch.quantize_per_channel(w, scale, torch.zeros(len(scale), dtype=torch.long), 0, torch.qint8)
    return torch.ops.quantized.linear_prepack(q, None if bias is None else bias.detach().float())


def int8_linear(x: torch.Tensor, packed) -> torch.Tensor:
    """``x [..., in]`` through an :func:`int8_pack` copy -> ``[..., out]`` float32: ``x`` quantized per call to 7 bits
    (``reduce_range``, as ``torch.ao`` dynamic quantization does, so the int16 sums of AVX2 kernels cannot saturate)."""
    return torch.ops.quantized.linear_dynamic(x, packed, True)


def check_precision(precision: str) -> str:
    """``precision`` -> itself when it is one of :data:`PRECISIONS`, else an error naming them."""
    if precision not in PRECISIONS:
        raise InvalidArgumentError(f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    return precision


def set_precision(module: nn.Module, precision: str) -> nn.Module:
    """``module`` -> the same module, its :class:`Linear` layers (and attention's fused q, k, v) run at inference in
    ``precision``: "fp32" (the weights as trained) or "int8" (a per-channel int8 copy beside each fp32 weight, which
    stays for training and for "fp32"; a copy made before the weights change is stale: set the precision again). With
    "int8" a model that keeps a KV cache (``kv_dtype``) keeps it in :data:`REDUCED_KV` too (bfloat16 where the CPU
    computes in it): decoding at batch > 1 reads the cached keys and values of every row at every step, and half the
    bytes is most of the attention's time there."""
    check_precision(precision)
    for m in module.modules():
        if hasattr(m, "use_int8"):
            m.use_int8(precision == "int8")
        if hasattr(m, "kv_dtype"):
            m.kv_dtype = REDUCED_KV if precision == "int8" else None
    return module


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and state dict) that runs the packed oneDNN GEMM at inference on CPU in fp32, or
    its int8 copy once :func:`set_precision` asked for int8."""

    int8 = None  # fbgemm's packed int8 weight (set_precision "int8")

    def use_int8(self, on: bool) -> None:
        self.int8 = int8_pack(self.weight, self.bias) if on else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8 is not None and not torch.is_grad_enabled():
            return int8_linear(x, self.int8)
        if self.weight.dtype == torch.float32 and packable(x, self.out_features):
            return packed_linear(self, x, (self.weight,), self.bias)
        return super().forward(x)


__all__ = ["FEW_ROWS", "PRECISIONS", "REDUCED_KV", "Linear", "check_precision", "int8_linear", "int8_pack", "packable", "packed_linear",
           "reduced_kv_dtype", "set_precision"]
