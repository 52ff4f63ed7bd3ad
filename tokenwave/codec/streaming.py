"""Chunked encode and decode with the same weights as offline (state lives on the modules).

``StreamingEncoder.push(chunk)`` takes any number of samples and returns the codes of every frame completed so
far; ``StreamingDecoder.push(codes)`` returns every sample that is final. Concatenated outputs equal offline
``encode``/``decode`` (the decoder's last ``n_fft - hop`` samples arrive on ``flush``). Latency: a frame (320
samples) to fill before encoding, plus ``n_fft - hop`` = 960 samples of ISTFT overlap: 1280 samples, 53.3 ms.
"""
from __future__ import annotations

from contextlib import ExitStack

import torch

from tokenwave.codec.model import Codec
from tokenwave.nn import streaming


class _Stream:
    def __init__(self, module: torch.nn.Module) -> None:
        self._stack = ExitStack()
        self._stack.enter_context(torch.no_grad())
        self._stack.enter_context(streaming(module))

    def close(self) -> None:
        self._stack.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StreamingEncoder(_Stream):
    def __init__(self, codec: Codec, n_q: int | None = None) -> None:
        self.codec, self.n_q = codec, n_q or codec.n_q
        self.pending = 0
        super().__init__(codec.encoder)

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """``chunk [B, 1, n]`` (any n) -> ``codes [B, n_q, frames completed]``."""
        self.pending = (self.pending + chunk.shape[-1]) % self.codec.hop
        z = self.codec.encoder(chunk)
        return self.codec.quantizer.encode(z, self.n_q)

    def flush(self) -> torch.Tensor:
        """Zero-pad the last partial frame (as offline ``encode`` does) and return its codes."""
        if self.pending == 0:
            return torch.zeros(1, self.n_q, 0, dtype=torch.long)
        pad = self.codec.hop - self.pending
        return self.push(torch.zeros(1, 1, pad))


class StreamingDecoder(_Stream):
    def __init__(self, codec: Codec) -> None:
        self.codec = codec
        super().__init__(codec.decoder)

    def push(self, codes: torch.Tensor, frames: torch.Tensor | None = None, voice: torch.Tensor | None = None) -> torch.Tensor:
        """``codes [B, K, t]`` -> ``wav [B, 1, n]``: every sample that no later frame can change. ``frames``: the
        same frames' phones (``[B, 3, t]``), ``voice``: the voice's vector, for a phone-informed decoder."""
        return self.codec.decoder(self.codec.quantizer.decode(codes), frames, voice)

    def push_latents(self, z: torch.Tensor) -> torch.Tensor:
        return self.codec.decoder(z)

    def flush(self) -> torch.Tensor:
        return self.codec.decoder.istft.flush()
