"""Layers two models share: causal convs with streaming state, ConvNeXt blocks, attention with rotary positions
and a KV cache, CPU weight packing."""
from tokenwave.nn.attention import Attention, CacheShape, KVCache, rotary
from tokenwave.nn.layers import CausalConv1d, ConvNeXtBlock, ConvNeXtStack
from tokenwave.nn.linear import (
    PRECISIONS,
    REDUCED_KV,
    Linear,
    check_precision,
    packable,
    packed_linear,
    reduced_kv_dtype,
    set_precision,
)
from tokenwave.nn.streaming import StreamingModule, streaming

__all__ = ["PRECISIONS", "REDUCED_KV", "Attention", "CacheShape", "CausalConv1d", "ConvNeXtBlock", "ConvNeXtStack", "KVCache", "Linear", "check_precision",
           "StreamingModule", "packable", "packed_linear", "reduced_kv_dtype", "rotary", "set_precision", "streaming"]
