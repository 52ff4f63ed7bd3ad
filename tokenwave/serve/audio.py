"""Per-stream audio state for the server: codec decoding whose streaming state travels with the stream (so many
streams interleave on one codec), the finishing chain (clip, chunk-wise watermark, clip) and the wire formats
(PCM16, Ogg/Opus).

Chunk sizes: the codec's streaming decoder gives the same audio for any chunking up to float rounding (~1e-7);
the default grows the chunk from 2 to 8 frames (27 -> 107 ms), and to 16 (213 ms) once 1.6 s were sent, exactly
as the offline decoding (:class:`tokenwave.tasks.sources.StepDecoder`) does, so a lone stream is bit-identical to
the offline file; it keeps the first audio early, keeps a player with a small buffer fed under load, and costs a
fraction of the decoder time per frame of 1-frame calls. ``decode_frames=1`` decodes every step's frames on their
own.
"""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import soundfile as sf
import torch

from tokenwave.nn.streaming import StreamingModule
from tokenwave.safety.watermark import WatermarkStream


class _Chunk:
    """One stream's decode request: its state, codes ``[K, n]``, phones ``[1, 3, n]`` and voice; then its samples."""

    __slots__ = ("state", "codes", "frames", "voice", "out", "error", "done")

    def __init__(self, state: DecoderState, codes: torch.Tensor, frames, voice) -> None:
        self.state, self.codes, self.frames, self.voice = state, codes, frames, voice
        self.out, self.error, self.done = None, None, False


def _signature(x: Any) -> Any:
    """What two streaming states must share to be decoded as one batch: their shapes past the batch dimension and
    their integers (a tensor's rows stack, an integer must be equal)."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return ("t", tuple(x.shape[1:]), x.dtype)
    if isinstance(x, tuple):
        return tuple(_signature(e) for e in x)
    if isinstance(x, (int, float, str)):
        return ("v", x)
    return ("o", id(x))  # anything else is never batched


def _stack(xs: list) -> Any:
    if xs[0] is None or not isinstance(xs[0], (torch.Tensor, tuple)):
        return xs[0]
    if isinstance(xs[0], torch.Tensor):
        return torch.cat(xs)
    return tuple(_stack(list(e)) for e in zip(*xs))


def _unstack(x: Any, n: int) -> list:
    if isinstance(x, torch.Tensor):
        return list(x.split(1))
    if isinstance(x, tuple):
        return [tuple(parts) for parts in zip(*(_unstack(e, n) for e in x))]
    return [x] * n


@contextmanager
def _streaming(mods: list[StreamingModule], states: list) -> Iterator[list]:
    """``mods`` streaming from ``states`` inside the block (they hold the state of whichever stream or batch is
    decoding); the list yielded holds their states once the block ends, and the modules are left off and empty."""
    after: list = []
    for m, st in zip(mods, states):
        m.is_streaming, m.stream_state = True, st
    try:
        yield after
    finally:
        after[:] = [m.stream_state for m in mods]
        for m in mods:
            m.is_streaming, m.stream_state = False, None


class DecodeBatcher:
    """Decodes the chunks of concurrent streams in one decoder call where it can.

    A decoder call costs about the same for one stream's chunk as for several (it reads its weights once per call),
    so chunks that wait while the decoder is busy are decoded together when it frees: the caller that takes the
    decoder takes every chunk waiting, groups those that fit one batch (same codec, frames, phones and voice given or
    not, streaming states of the same shapes) and runs each group as one call, with the streams' states stacked on
    the batch dimension and split back after. A stream alone is decoded exactly as before (a batch of one); rows of
    a batch may differ from their batch-of-one decoding in the last float bits."""

    def __init__(self) -> None:
        self._run = threading.Lock()  # codec modules hold the state of whichever batch is decoding
        self._queue = threading.Lock()
        self._pending: list[_Chunk] = []
        self.calls = self.chunks = 0  # decoder calls made, chunks decoded (their ratio: the mean batch)

    def decode(self, state: DecoderState, codes: torch.Tensor, frames: torch.Tensor | None,
               voice: torch.Tensor | None) -> np.ndarray:
        """One stream's chunk -> its final samples (see :meth:`DecoderState.push`)."""
        req = _Chunk(state, codes, frames, voice)
        with self._queue:
            self._pending.append(req)
        with self._run:
            if not req.done:
                with self._queue:
                    batch, self._pending = self._pending, []
                self._decode_all(batch)
        if req.error is not None:
            raise req.error
        return req.out

    def decode_together(self, chunks: list[tuple]) -> list[np.ndarray]:
        """``[(state, codes, frames, voice), ...]`` (one chunk per stream) -> each stream's samples, decoded in as
        few calls as fit (what concurrent :meth:`decode` calls get)."""
        reqs = [_Chunk(*c) for c in chunks]
        with self._run:
            self._decode_all(reqs)
        for r in reqs:
            if r.error is not None:
                raise r.error
        return [r.out for r in reqs]

    def _decode_all(self, batch: list[_Chunk]) -> None:
        groups: dict = {}
        for r in batch:
            key = (id(r.state.codec), tuple(r.codes.shape), r.frames is None, r.voice is None,
                   tuple(_signature(x) for x in r.state.states))
            groups.setdefault(key, []).append(r)
        for group in groups.values():
            self._decode(group)

    def _decode(self, group: list[_Chunk]) -> None:
        first = group[0]
        codec, mods = first.state.codec, first.state.mods
        try:
            stacked = [_stack([r.state.states[i] for r in group]) for i in range(len(mods))]
            with torch.no_grad(), _streaming(mods, stacked) as after:
                codes = torch.stack([r.codes for r in group])
                frames = None if first.frames is None else torch.cat([r.frames for r in group])
                voice = None if first.voice is None else torch.cat([r.voice.reshape(1, -1) for r in group])
                out = codec.decoder(codec.quantizer.decode(codes), frames, voice)
            states = [_unstack(s, len(group)) for s in after]
            for j, r in enumerate(group):
                r.state.states = [s[j] for s in states]
                r.out = out[j, 0].numpy()
        except Exception as e:  # every stream of the batch is told
            for r in group:
                r.error = e
        finally:
            self.calls += 1
            self.chunks += len(group)
            for r in group:
                r.done = True

    def flush(self, state: DecoderState) -> np.ndarray:
        """The samples a stream's state still holds (its end), decoded on their own."""
        with self._run, torch.no_grad(), _streaming(state.mods, state.states) as after:
            out = state.codec.decoder.istft.flush()
        state.states = after
        return out[0, 0].numpy()


BATCHER = DecodeBatcher()  # one for the process: the server's streams share their tasks' codecs


class DecoderState:
    """:class:`tokenwave.codec.streaming.StreamingDecoder` with the state kept here between pushes; pushes of
    concurrent streams are decoded together (:class:`DecodeBatcher`)."""

    def __init__(self, codec, batcher: DecodeBatcher | None = None) -> None:
        self.codec = codec
        self.mods = [m for m in codec.decoder.modules() if isinstance(m, StreamingModule)]
        self.states: list = [None] * len(self.mods)
        self.batcher = batcher or BATCHER

    def push(self, codes: torch.Tensor, frames: torch.Tensor | None = None,
             voice: torch.Tensor | None = None) -> np.ndarray:
        """``codes [K, n]`` -> float32 samples that no later frame can change; ``frames`` (the same frames' phones
        ``[1, 3, n]``) and ``voice`` (the voice's vector) for a phone-informed decoder."""
        return self.batcher.decode(self, codes, frames, voice)

    def flush(self) -> np.ndarray:
        return self.batcher.flush(self)


class Finisher:
    """What :func:`tokenwave.tasks.base.finish` does to a whole file, chunk by chunk: clip to [-1, 1], embed the
    watermark (:class:`~tokenwave.safety.watermark.WatermarkStream`, 20 ms latency), clip again."""

    def __init__(self, sample_rate: int, watermark: bool = True) -> None:
        self.wm = WatermarkStream(sample_rate) if watermark else None

    def push(self, x: np.ndarray) -> np.ndarray:
        x = np.clip(np.asarray(x, dtype=np.float32), -1.0, 1.0)
        return x if self.wm is None else np.clip(self.wm.push(x), -1.0, 1.0).astype(np.float32)

    def flush(self) -> np.ndarray:
        if self.wm is None:
            return np.zeros(0, dtype=np.float32)
        return np.clip(self.wm.flush(), -1.0, 1.0).astype(np.float32)


def pcm16(x: np.ndarray) -> bytes:
    """float32 [-1, 1] -> little-endian int16 bytes (round to nearest)."""
    return np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def encode_file(wav: np.ndarray, sample_rate: int, fmt: str) -> tuple[bytes, str]:
    """A whole file: ``fmt`` "wav" (PCM16) or "ogg" (Opus) -> (bytes, media type)."""
    buf = io.BytesIO()
    if fmt == "ogg":
        sf.write(buf, wav, sample_rate, format="OGG", subtype="OPUS")
        return buf.getvalue(), "audio/ogg"
    sf.write(buf, np.frombuffer(pcm16(wav), dtype="<i2"), sample_rate, format="WAV", subtype="PCM_16")  # as streamed
    return buf.getvalue(), "audio/wav"


class OpusStream:
    """Incremental Ogg/Opus: ``push(float32 chunk) -> bytes`` of the Ogg pages completed so far; the concatenation
    of every returned piece (and ``close()``) is one valid .ogg file."""

    def __init__(self, sample_rate: int) -> None:
        self.buf = io.BytesIO()
        self.file = sf.SoundFile(self.buf, "w", samplerate=sample_rate, channels=1, format="OGG", subtype="OPUS")
        self.sent = 0

    def _new(self) -> bytes:
        data = self.buf.getvalue()
        out, self.sent = data[self.sent:], len(data)
        return out

    def push(self, x: np.ndarray) -> bytes:
        if len(x):
            self.file.write(np.asarray(x, dtype=np.float32))
        return self._new()

    def close(self) -> bytes:
        self.file.close()
        return self._new()
