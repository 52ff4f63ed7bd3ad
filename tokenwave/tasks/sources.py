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

    def __call__(self, codec, phones: torch.Tensor | None = None, voice: torch.Tensor | None = None,
                 sent: int = 0) -> AudioDecoder:
        """``codec`` (the task's, with its fine-tuned decoder), the sequence's per-frame phones ``[1, 3, T]`` and
        the voice's vector for a phone-informed decoder (else None), and the frames of the stream sent before this
        sequence (a later sentence's: they count toward the chunks' settling, :class:`Chunker`) -> a decoder for the
        sequence."""
        ...


class Chunker:
    """Gathers frames into decode chunks: ``fixed`` frames each, or (``fixed=0``) 2, 4, then 8 frames until
    :attr:`SETTLED` frames were gathered, then 16. ``sent``: frames the stream sent before this chunker's (a later
    sentence of one utterance); from :attr:`SETTLED` on, its first chunk is already a 16-frame one.

    Why the 8-frame stretch: a player that starts with a small buffer (100 ms) needs each chunk before the audio it
    holds runs out. A chunk of ``c`` seconds takes ``c / s`` to make at ``s`` times real time, while the player holds
    about ``s * 0.1 + (s - 1) * sent`` seconds; a 213 ms chunk right after the first 107 ms starved every stream
    of a server running 8 streams at 1.1x real time. 16-frame chunks (a third of the decoder time per frame of
    2-frame ones) wait until 1.6 s were sent, which is enough lead from 1.05x real time on."""

    SETTLED = 120  # frames (1.6 s at 75 Hz) before 16-frame chunks

    def __init__(self, fixed: int = 0, sent: int = 0) -> None:
        self.fixed, self.parts, self.n, self.sent = fixed, [], 0, sent
        self.size = fixed or (16 if sent >= self.SETTLED else 2)

    def add(self, codes: torch.Tensor) -> torch.Tensor | None:
        """``codes [..., n]`` -> the gathered chunk ``[..., >= size]`` once it is full, else None."""
        self.parts.append(codes)
        self.n += codes.shape[-1]
        if self.n < self.size:
            return None
        return self.take()

    def take(self) -> torch.Tensor | None:
        """-> every frame gathered so far ``[..., n]`` (None when there is none)."""
        if not self.n:
            return None
        out = self.parts[0] if len(self.parts) == 1 else torch.cat(self.parts, -1)
        self.sent += self.n
        self.parts, self.n = [], 0
        if not self.fixed:
            self.size = min(8, self.size * 2) if self.sent < self.SETTLED else 16
        return out


class StepDecoder:
    """:class:`AudioDecoder` over :class:`~tokenwave.codec.streaming.StreamingDecoder`, the pushed frames gathered into
    chunks of ``decode_frames`` (:class:`Chunker`; 0: 2, 4, then 8 frames, 16 after 1.6 s, as the server's default,
    so a lone server stream is bit-identical to the offline file; 1: every push decoded at once); the class itself is the
    offline :class:`Decoding`. A decoder call costs about the same for 1 frame as for 16 (it reads its weights once
    per call): 16-frame chunks take the decoder from 0.5 to 0.06 of real time on one thread (benchmarks/tts_profile.py).
    ``sent``: the stream's frames before this sequence's (a later sentence starts with 16-frame chunks once the
    utterance sent 1.6 s)."""

    def __init__(self, codec, phones: torch.Tensor | None = None, voice: torch.Tensor | None = None,
                 decode_frames: int = 0, sent: int = 0) -> None:
        self.phones, self.voice, self.done = phones, voice, 0
        self.chunker = Chunker(decode_frames, sent)
        self.dec = self._open(codec)

    # the streaming decoder underneath; a subclass keeps its state elsewhere (the server's, per stream)
    def _open(self, codec):
        return StreamingDecoder(codec)

    def _samples(self, codes: torch.Tensor, phones: torch.Tensor | None) -> np.ndarray:
        """``codes [K, n]`` and their phones -> the final samples they complete."""
        return self.dec.push(codes[None], phones, self.voice)[0, 0].numpy()

    def _tail(self) -> np.ndarray:
        return self.dec.flush()[0, 0].numpy()

    def _decode(self, codes: torch.Tensor) -> np.ndarray:
        t = codes.shape[-1]
        phones = None if self.phones is None else self.phones[:, :, self.done: self.done + t]
        self.done += t
        return self._samples(codes, phones)

    def push(self, codes: torch.Tensor) -> np.ndarray:
        chunk = self.chunker.add(codes)
        return np.zeros(0, dtype=np.float32) if chunk is None else self._decode(chunk)

    def flush(self) -> np.ndarray:
        chunk = self.chunker.take()
        head = np.zeros(0, dtype=np.float32) if chunk is None else self._decode(chunk)
        return np.concatenate([head, self._tail()])

    def close(self) -> None:
        self.dec.close()


__all__ = ["AudioDecoder", "Chunker", "CodeSource", "Decoding", "LMSource", "StepDecoder"]
