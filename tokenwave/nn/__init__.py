"""Small reusable layers: causal convs with streaming state, ConvNeXt blocks."""
from tokenwave.nn.layers import CausalConv1d, ConvNeXtBlock, ConvNeXtStack
from tokenwave.nn.streaming import StreamingModule, streaming

__all__ = ["CausalConv1d", "ConvNeXtBlock", "ConvNeXtStack", "StreamingModule", "streaming"]
