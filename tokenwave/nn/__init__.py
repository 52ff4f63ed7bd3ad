"""Layers two models share: causal convs with streaming state, ConvNeXt blocks, attention with rotary positions
and a KV cache, CPU weight packing."""
from tokenwave.nn.attention import Attention, CacheShape, KVCache, rotary
from tokenwave.nn.layers import CausalConv1d, ConvNeXtBlock, ConvNeXtStack
from tokenwave.nn.linear import Linear, packable, packed_linear
from tokenwave.nn.streaming import StreamingModule, streaming

__all__ = ["Attention", "CacheShape", "CausalConv1d", "ConvNeXtBlock", "ConvNeXtStack", "KVCache", "Linear",
           "StreamingModule", "packable", "packed_linear", "rotary", "streaming"]
