"""Opus round trip through ffmpeg's libopus, as the classical baseline for the codec benchmark.

Settings (chosen once, used for every domain so the comparison is the same everywhere):

- ``-application audio``: the general-purpose mode (speech *and* music and effects); ``voip`` would tune for
  speech intelligibility only, and the benchmark compares one setting across all three domains.
- ``-vbr constrained``: the average rate equals the target (as our fixed-rate codec's does) while Opus may still
  move bits between frames within a bounded buffer; hard CBR (``-vbr off``) would handicap Opus.
- 20 ms frames, complexity 10 (libopus defaults); the bandwidth is Opus's own choice for the bitrate.

Encoding reads the waveform at its own rate when Opus takes it (8/12/16/24/48 kHz), otherwise at 48 kHz; decoding
uses the libopus decoder at 48 kHz, and soxr brings the result back to the input rate. The Ogg demuxer removes the
encoder's pre-skip, so the output lines up with the input (checked by cross-correlation in the tests); any
constant offset left would be corrected by :data:`OFFSET_SAMPLES_48K`. The output is trimmed or zero-padded to the
input's length.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from tokenwave.audio.resample import resample
from tokenwave.errors import InvalidArgumentError, MissingSystemPackageError

OPUS_RATES = (8000, 12000, 16000, 24000, 48000)
DECODE_RATE = 48000
#: Samples (at 48 kHz) by which decoded audio lags the input after the pre-skip; measured as 0 with ffmpeg 5-7.
OFFSET_SAMPLES_48K = 0
APPLICATION = "audio"
VBR = "constrained"


@lru_cache(maxsize=1)
def _ffmpeg_with_libopus() -> str:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MissingSystemPackageError("ffmpeg (needed for the Opus baseline)", "ffmpeg")
    out = subprocess.run([ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    if " libopus " not in out:
        raise MissingSystemPackageError("an ffmpeg built with libopus (needed for the Opus baseline)", "ffmpeg")
    return ffmpeg


def _run(cmd: list[str], data: bytes | None = None) -> bytes:
    proc = subprocess.run(cmd, input=data, capture_output=True)
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["ffmpeg failed"]
        raise RuntimeError(f"ffmpeg failed ({' '.join(cmd[:3])} …): {msg[0]}")
    return proc.stdout


def ogg_payload_bytes(path: str | Path) -> int:
    """Bytes of Opus audio packets in an Ogg file (pages' payloads minus the OpusHead and OpusTags headers)."""
    data = Path(path).read_bytes()
    pos, packets, total, current = 0, 0, 0, 0
    while pos + 27 <= len(data) and data[pos:pos + 4] == b"OggS":
        nseg = data[pos + 26]
        lacing = data[pos + 27: pos + 27 + nseg]
        for lace in lacing:
            current += lace
            if lace < 255:  # a packet ends here
                packets += 1
                if packets > 2:
                    total += current
                current = 0
        pos += 27 + nseg + sum(lacing)
    return total


def opus_roundtrip(wav: np.ndarray, sr: int, kbps: float, stats: dict | None = None) -> np.ndarray:
    """Encode mono float32 ``wav [N]`` at ``sr`` Hz with Opus at ``kbps`` and decode it back: float32 ``[N]``.

    If ``stats`` is given, ``stats["payload_kbps"]`` receives the bitrate actually spent on audio packets.
    Raises :class:`MissingSystemPackageError` if ffmpeg or its libopus encoder is missing.
    """
    ffmpeg = _ffmpeg_with_libopus()
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    n = len(wav)
    if n == 0:
        raise InvalidArgumentError("cannot Opus-encode an empty waveform", "pass at least one sample")
    if not 0.5 <= kbps <= 512:
        raise InvalidArgumentError(f"Opus bitrate {kbps:g} kbps is out of range", "use 0.5..512 kbps")
    enc_sr = sr if sr in OPUS_RATES else DECODE_RATE
    x = resample(wav, sr, enc_sr) if enc_sr != sr else wav
    with tempfile.TemporaryDirectory(prefix="tokenwave-opus-") as tmp:
        ogg = Path(tmp) / "a.ogg"
        _run([ffmpeg, "-v", "error", "-nostdin", "-f", "f32le", "-ar", str(enc_sr), "-ac", "1", "-i", "pipe:0",
              "-c:a", "libopus", "-b:a", f"{kbps * 1000:.0f}", "-vbr", VBR, "-application", APPLICATION,
              "-frame_duration", "20", "-compression_level", "10", "-y", str(ogg)],
             np.clip(x, -1, 1).tobytes())
        if stats is not None:
            stats["payload_kbps"] = ogg_payload_bytes(ogg) * 8 / (n / sr) / 1000
        raw = _run([ffmpeg, "-v", "error", "-nostdin", "-c:a", "libopus", "-i", str(ogg),
                    "-f", "f32le", "-ac", "1", "-ar", str(DECODE_RATE), "pipe:1"])
    y = np.frombuffer(raw, dtype=np.float32)[OFFSET_SAMPLES_48K:]
    y = resample(y, DECODE_RATE, sr) if sr != DECODE_RATE else y.copy()
    if len(y) < n:
        y = np.pad(y, (0, n - len(y)))
    return np.ascontiguousarray(y[:n], dtype=np.float32)
