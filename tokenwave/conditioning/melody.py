"""Melody conditioning: one pitch class per codec frame (75 Hz), from a manifest, a MIDI file or audio.

A melody is ``LongTensor[T]`` of pitch classes 0-11 (C = 0) with :data:`NO_PITCH` (12) where nothing sounds. The
pitch class, not the MIDI pitch, is what the generator sees (MusicGen's chroma conditioning keeps only the pitch
class too), so a tune sung an octave lower conditions the same way.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tokenwave.audio import load_audio
from tokenwave.errors import AudioFileError, InvalidArgumentError

NO_PITCH = 12
N_CLASSES = 13


def pitch_classes(midi_pitches) -> torch.Tensor:
    """MIDI pitch per frame (``<= 0`` or NaN: silence) -> pitch classes ``LongTensor[T]``."""
    p = np.nan_to_num(np.asarray(midi_pitches, dtype=np.float64), nan=0.0)
    out = np.where(p > 0, np.round(p).astype(np.int64) % 12, NO_PITCH)
    return torch.from_numpy(out)


def melody_from_midi(path: str | os.PathLike, frame_rate: float = 75.0) -> torch.Tensor:
    """The highest sounding note of a MIDI file per frame, as pitch classes ``[T]``."""
    import pretty_midi  # lazy: pretty_midi, an optional backend (the data extra), only for a MIDI melody

    try:
        pm = pretty_midi.PrettyMIDI(str(path))
    except Exception as e:  # pretty_midi raises a variety of errors on bad files
        raise AudioFileError(f"cannot read MIDI file {path}: {e}", "pass a standard .mid file") from e
    T = int(np.ceil(pm.get_end_time() * frame_rate))
    if T == 0:
        raise InvalidArgumentError(f"MIDI file {path} holds no notes", "pass a MIDI file with a melody")
    top = np.zeros(T)
    for inst in pm.instruments:
        if inst.is_drum:
            continue
        for n in inst.notes:
            a, b = int(n.start * frame_rate), max(int(n.start * frame_rate) + 1, int(n.end * frame_rate))
            top[a:b] = np.maximum(top[a:b], n.pitch)
    return pitch_classes(top)


def chromagram(wav: np.ndarray, sample_rate: int, frame_rate: float = 75.0, n_fft: int = 4096) -> np.ndarray:
    """Chroma ``[12, T]`` (energy per pitch class, 75 Hz frames) from a magnitude STFT folded onto pitch classes
    between 60 Hz and 2.1 kHz."""
    x = torch.from_numpy(np.asarray(wav, dtype=np.float32))
    hop = int(round(sample_rate / frame_rate))
    spec = torch.stft(x, n_fft, hop, window=torch.hann_window(n_fft), return_complex=True, center=True).abs() ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    band = (freqs >= 60) & (freqs <= 2100)
    midi = 69 + 12 * np.log2(freqs[band] / 440.0)
    classes = np.round(midi).astype(np.int64) % 12
    fold = np.zeros((12, band.sum()), dtype=np.float32)
    fold[classes, np.arange(band.sum())] = 1.0
    return fold @ spec.numpy()[band]


def melody_from_audio(wav: np.ndarray, sample_rate: int, frame_rate: float = 75.0,
                      silence_db: float = -40.0) -> torch.Tensor:
    """The dominant pitch class per frame of a recording (chroma argmax), :data:`NO_PITCH` in quiet frames."""
    chroma = chromagram(wav, sample_rate, frame_rate)
    energy = chroma.sum(0)
    loud = 10 * np.log10(energy + 1e-12) > 10 * np.log10(energy.max() + 1e-12) + silence_db
    return torch.from_numpy(np.where(loud, chroma.argmax(0), NO_PITCH).astype(np.int64))


def load_melody(path: str | os.PathLike, frame_rate: float = 75.0) -> torch.Tensor:
    """A melody from a ``.mid``/``.midi`` file or any audio file, as pitch classes ``[T]``."""
    path = Path(path)
    if path.suffix.lower() in (".mid", ".midi"):
        return melody_from_midi(path, frame_rate)
    wav, sr = load_audio(path)
    return melody_from_audio(wav, sr, frame_rate)


def fit_length(melody: torch.Tensor, frames: int) -> torch.Tensor:
    """Loop or cut a melody to ``frames`` frames."""
    if melody.numel() == 0:
        raise InvalidArgumentError("the melody is empty", "pass a melody with notes")
    reps = -(-frames // melody.numel())
    return melody.repeat(reps)[:frames]


class MelodyConditioner(nn.Module):
    """Pitch classes ``[B, T]`` -> embeddings ``[B, T, dim]``, for ``Conditioning.frames`` (added to the generator's step inputs)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(N_CLASSES, dim)
        nn.init.normal_(self.embed.weight, std=0.02)

    def forward(self, melody: torch.Tensor) -> torch.Tensor:
        return self.embed(melody)
