"""Per-stream audio state for the server: codec decoding whose streaming state travels with the stream (so many
streams interleave on one codec), the finishing chain (clip, chunk-wise watermark, clip) and the wire formats
(PCM16, Ogg/Opus).

Chunk sizes: the codec's streaming decoder gives the same audio for any chunking up to float rounding (~1e-7);
the default grows the chunk from 2 to 16 frames (27 -> 213 ms) exactly as the offline decoding
(:class:`tokenwave.tasks.sources.StepDecoder`) does, so a lone stream is bit-identical to the offline file; it keeps
the first audio early and costs a third of the decoder time per frame. ``decode_frames=1`` decodes every step's
frames on their own.
"""
from __future__ import annotations

import io
import threading

import numpy as np
import soundfile as sf
import torch

from tokenwave.nn.streaming import StreamingModule
from tokenwave.safety.watermark import WatermarkStream

_DECODE_LOCK = threading.Lock()  # codec modules hold the state of whichever stream is decoding


class DecoderState:
    """:class:`tokenwave.codec.streaming.StreamingDecoder` with the state kept here between pushes."""

    def __init__(self, codec) -> None:
        self.codec = codec
        self.mods = [m for m in codec.decoder.modules() if isinstance(m, StreamingModule)]
        self.states: list = [None] * len(self.mods)

    def _run(self, fn) -> np.ndarray:
        with _DECODE_LOCK, torch.no_grad():
            for m, s in zip(self.mods, self.states):
                m.is_streaming, m.stream_state = True, s
            try:
                out = fn()
            finally:
                self.states = [m.stream_state for m in self.mods]
                for m in self.mods:
                    m.is_streaming, m.stream_state = False, None
        return out[0, 0].numpy()

    def push(self, codes: torch.Tensor, frames: torch.Tensor | None = None,
             voice: torch.Tensor | None = None) -> np.ndarray:
        """``codes [K, n]`` -> float32 samples that no later frame can change; ``frames`` (the same frames' phones
        ``[1, 3, n]``) and ``voice`` (the voice's vector) for a phone-informed decoder."""
        return self._run(lambda: self.codec.decoder(self.codec.quantizer.decode(codes[None]), frames, voice))

    def flush(self) -> np.ndarray:
        return self._run(lambda: self.codec.decoder.istft.flush())


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
