"""Load any common audio format to float32 mono at a requested rate; save atomically.

soundfile (libsndfile) reads wav/flac/ogg/mp3 directly; ffmpeg is only a fallback for formats
libsndfile does not know (m4a, aac, wma, ...).
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from tokenwave.audio.resample import resample
from tokenwave.fileio import atomic_path
from tokenwave.errors import (
    AudioNotFoundError,
    CorruptAudioError,
    EmptyAudioError,
    MissingSystemPackageError,
    OutputPathError,
    UnsupportedAudioFormatError,
)

#: Extensions soundfile writes; `save_audio` refuses others.
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}
#: Extensions worth trying with ffmpeg when libsndfile cannot read them.
FFMPEG_EXTENSIONS = {".m4a", ".aac", ".mp4", ".wma", ".opus", ".webm", ".mka", ".aiff", ".aif", ".mp3", ".ogg"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".ogg", ".mp3", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".wma", ".webm"}
#: A header outside these is refused before decoding: a 165 KB FLAC at 655,350 Hz x 8 channels decodes to ~600 MB.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE, MAX_CHANNELS = 4_000, 192_000, 8


def read_audio_header(source: str | os.PathLike | bytes) -> sf._SoundFileInfo:
    """A file's path or bytes -> its header (``samplerate``, ``channels``, ``frames``), read without decoding;
    refuses rates outside ``MIN_SAMPLE_RATE..MAX_SAMPLE_RATE`` and more than ``MAX_CHANNELS`` channels."""
    info = sf.info(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source))
    if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
        raise UnsupportedAudioFormatError(f"the audio's sample rate is {info.samplerate} Hz",
                                          f"send audio at {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz (e.g. 24000)")
    if not 1 <= info.channels <= MAX_CHANNELS:
        raise UnsupportedAudioFormatError(f"the audio has {info.channels} channels",
                                          f"send mono or stereo (at most {MAX_CHANNELS} channels)")
    return info


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return data, sr


def _read_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    if shutil.which("ffmpeg") is None:
        raise MissingSystemPackageError(f"ffmpeg (needed to read {path.suffix} files)", "ffmpeg")
    info = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "1", "-ar", "48000", "-"],
        capture_output=True,
    )
    if info.returncode != 0:
        raise CorruptAudioError(
            f"cannot decode {path}: {info.stderr.decode(errors='replace').strip().splitlines()[-1:] or 'ffmpeg failed'}",
            "check that the file is a complete audio file in a common format (wav, flac, ogg, mp3)",
        )
    data = np.frombuffer(info.stdout, dtype=np.float32).reshape(-1, 1)
    return data, 48000


def load_audio(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file.

    Returns ``(wav, sr)``: ``wav`` is float32 ``[N]`` when ``mono`` (channels averaged), else ``[C, N]``;
    ``sr`` equals ``sample_rate`` when one is given (resampled with soxr), else the file's own rate.
    Raises a typed :class:`~tokenwave.errors.AudioFileError` for missing, empty, corrupt or unsupported files.
    """
    path = Path(path)
    if not path.exists():
        raise AudioNotFoundError(f"audio file not found: {path}", "check the path")
    if path.is_dir():
        raise AudioNotFoundError(f"{path} is a folder, not an audio file", "pass a file path")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"audio file is empty (0 bytes): {path}", "re-export or re-download the file")
    try:
        read_audio_header(path)  # absurd rates / channel counts are refused before decoding
        data, sr = _read_soundfile(path)
    except (sf.LibsndfileError, RuntimeError, ValueError) as err:
        if path.suffix.lower() not in FFMPEG_EXTENSIONS and path.suffix.lower() not in {".wav", ".flac"}:
            raise UnsupportedAudioFormatError(
                f"unsupported audio format {path.suffix or '(no extension)'!r}: {path}",
                "convert it to wav, flac, ogg or mp3",
            ) from err
        if path.suffix.lower() in {".wav", ".flac"}:
            raise CorruptAudioError(f"cannot decode {path}: {err}", "the file is truncated or corrupt; re-export it") from err
        data, sr = _read_ffmpeg(path)
    if data.shape[0] == 0:
        raise EmptyAudioError(f"audio file holds no samples: {path}", "re-export the file with audio in it")
    if not np.all(np.isfinite(data)):
        raise CorruptAudioError(f"audio file holds NaN or infinite samples: {path}", "re-export the file")
    wav = data.mean(axis=1) if mono else data.T
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return np.ascontiguousarray(wav, dtype=np.float32), sr


def save_audio(path: str | os.PathLike, wav: np.ndarray, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``wav`` (``[N]`` or ``[C, N]``, float in [-1, 1]) atomically: a temp file in the same folder, then rename.

    Samples beyond [-1, 1] are clipped. The format follows the extension (wav, flac, ogg).
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UnsupportedAudioFormatError(
            f"cannot write {path.suffix or '(no extension)'!r} files: {path}", f"use one of {', '.join(sorted(WRITE_FORMATS))}"
        )
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.T
    elif wav.ndim != 1:
        raise ValueError(f"wav must be [N] or [C, N], got shape {wav.shape}")
    if wav.shape[0] == 0:
        raise EmptyAudioError(f"refusing to write an empty audio file: {path}", "check the generation step")
    wav = np.clip(wav, -1.0, 1.0)
    if subtype is None:
        subtype = "VORBIS" if fmt == "OGG" else "PCM_16"
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), wav, sample_rate, format=fmt, subtype=subtype)
    except PermissionError as err:
        raise OutputPathError(f"cannot write to {path.parent}: {err.strerror}", "choose a writable output folder") from err
    return path


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds from the header (no decode); falls back to a full load."""
    try:
        info = sf.info(str(path))
        return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError):
        wav, sr = load_audio(path)
        return len(wav) / sr
