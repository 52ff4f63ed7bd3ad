"""Where a task's codes come from and how they become audio: the two parameters of every task's generation loop.

A task writes its loop once (:meth:`tokenwave.tasks.tts.TTS.render`, :meth:`tokenwave.tasks.tagged.TaggedTask.codes`
and ``render``) over a :class:`CodeSource` and a :class:`Decoding`. Offline (the CLI, the Python API, evaluations)
the source is :class:`LMSource`, the token LM running on the caller's thread, and the decoding :class:`StepDecoder`,
which decodes every step's frames at once; the server passes its batch engine as the source and its chunked decoder
(:mod:`tokenwave.serve.service`), so a stream and an offline file of one request come out of the same loop.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import torch

from tokenwave.codec.streaming import StreamingDecoder
from tokenwave.conditioning import Conditioning
from tokenwave.lm.generate import stream as lm_stream
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams


class CodeSource(Protocol):
    """A generator of codes for one item: the token LM offline, the server's batch engine online."""

    def __call__(self, cond: Conditioning, frames: int, params: SamplingParams,
                 prompt: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """``cond`` (one item), ``frames``, ``params``, ``prompt [K, Tp]`` (codes forced at the first frames, or
        None) -> ``codes LongTensor[K, n]`` chunks in order, ``frames`` frames in all, the prompt's first, as
        :func:`tokenwave.lm.generate.stream` samples them under ``params.seed``. Closing the iterator stops the work."""
        ...


class LMSource:
    """:class:`CodeSource` over :func:`tokenwave.lm.generate.stream`: ``lm`` runs on the caller's thread."""

    def __init__(self, lm: TokenLM) -> None:
        self.lm = lm

    def __call__(self, cond: Conditioning, frames: int, params: SamplingParams,
                 prompt: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """See :meth:`CodeSource.__call__`."""
        for step in lm_stream(self.lm, frames, cond, params, None if prompt is None else prompt[None], batch_size=1):
            if step[0].shape[-1]:
                yield step[0]


class AudioDecoder(Protocol):
    """One continuous code sequence decoded as it arrives."""

    def push(self, codes: torch.Tensor) -> np.ndarray:
        """The next ``codes LongTensor[K, n]`` -> float32 samples that no later frame can change (maybe none yet)."""
        ...

    def flush(self) -> np.ndarray:
        """-> the samples still held back (the end of the sequence)."""
        ...

    def close(self) -> None:
        """Release the decoder's streaming state (also when the sequence was cut short)."""
        ...


class Decoding(Protocol):
    """Makes the :class:`AudioDecoder` of one code sequence."""

    def __call__(self, codec, phones: torch.Tensor | None = None, voice: torch.Tensor | None = None) -> AudioDecoder:
        """``codec`` (the task's, with its fine-tuned decoder), the sequence's per-frame phones ``[1, 3, T]`` and
        the voice's vector for a phone-informed decoder (else None) -> a decoder for the sequence."""
        ...


class StepDecoder:
    """:class:`AudioDecoder` over :class:`~tokenwave.codec.streaming.StreamingDecoder`, each push decoded at once; the
    class itself is the offline :class:`Decoding`."""

    def __init__(self, codec, phones: torch.Tensor | None = None, voice: torch.Tensor | None = None) -> None:
        self.dec, self.phones, self.voice, self.done = StreamingDecoder(codec), phones, voice, 0

    def push(self, codes: torch.Tensor) -> np.ndarray:
        t = codes.shape[-1]
        phones = None if self.phones is None else self.phones[:, :, self.done: self.done + t]
        self.done += t
        return self.dec.push(codes[None], phones, self.voice)[0, 0].numpy()

    def flush(self) -> np.ndarray:
        return self.dec.flush()[0, 0].numpy()

    def close(self) -> None:
        self.dec.close()


__all__ = ["AudioDecoder", "CodeSource", "Decoding", "LMSource", "StepDecoder"]
