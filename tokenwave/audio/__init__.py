"""Audio I/O and signal utilities. Waveforms here are numpy float32 ``[N]`` (mono) with an explicit rate."""
from tokenwave.audio.crossfade import crossfade, fade_curves, overlap_add
from tokenwave.audio.io import AUDIO_EXTENSIONS, audio_duration, load_audio, save_audio
from tokenwave.audio.loudness import integrated_loudness, loudness_normalize
from tokenwave.audio.resample import resample

__all__ = [
    "AUDIO_EXTENSIONS",
    "audio_duration",
    "crossfade",
    "fade_curves",
    "integrated_loudness",
    "load_audio",
    "loudness_normalize",
    "overlap_add",
    "resample",
    "save_audio",
]
