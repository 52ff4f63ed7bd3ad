"""Streaming as state on the module (the moshi/AudioCraft habit): the same weights run offline or chunk by chunk.

A :class:`StreamingModule` keeps whatever it needs from past chunks in ``self.stream_state`` while streaming is
on; :func:`streaming` turns it on for every such submodule of a model and clears the state afterwards.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


class StreamingModule(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.is_streaming = False
        self.stream_state: Any = None

    def reset_stream(self) -> None:
        self.stream_state = None


@contextmanager
def streaming(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in streaming mode inside the ``with`` block; each call continues where the last one stopped."""
    mods = [m for m in model.modules() if isinstance(m, StreamingModule)]
    for m in mods:
        m.is_streaming = True
        m.reset_stream()
    try:
        yield model
    finally:
        for m in mods:
            m.is_streaming = False
            m.reset_stream()
