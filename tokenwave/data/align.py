"""Phone alignments of speech: which phone sounds when, from the engines that spoke it.

The speech datasets are spoken by espeak-ng and flite, which both report their own phone timings: espeak-ng as
phoneme events of its library (IPA names, the output sample each phone starts at), flite as ``-psdur`` (phone
names and end times). Speaking a row again with the same engine, voice, rate and pitch gives the same audio, so its
timings, shifted by the silence the dataset builder trimmed, are the clip's alignment (checked: the re-spoken,
trimmed length must match the clip's). flite's phones are mapped to IPA, so both engines share one phone set.

At inference the same espeak-ng library gives the timings of new text in a reference voice: a rule-based duration
model, so the TTS model is told which phone each frame holds (``tokenwave.conditioning.speech``).

Alignment: ``{"phones": [...], "starts": [...], "end": s}`` in seconds from the clip's first sample; a pause is
``SIL``.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from tokenwave.errors import DatasetError, MissingSystemPackageError

SIL = "_"
#: flite (CMU) phones -> the IPA espeak-ng's en-us events name them with
FLITE_IPA = {"aa": "ɑː", "ae": "æ", "ah": "ʌ", "ao": "ɔː", "aw": "aʊ", "ax": "ə", "axr": "ɚ", "ay": "aɪ", "b": "b",
             "ch": "tʃ", "d": "d", "dh": "ð", "eh": "ɛ", "er": "ɜː", "ey": "eɪ", "f": "f", "g": "ɡ", "hh": "h",
             "ih": "ɪ", "iy": "iː", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ", "ow": "oʊ",
             "oy": "ɔɪ", "p": "p", "r": "ɹ", "s": "s", "sh": "ʃ", "t": "t", "th": "θ", "uh": "ʊ", "uw": "uː",
             "v": "v", "w": "w", "y": "j", "z": "z", "zh": "ʒ", "pau": SIL}
REFERENCE_VOICE = "en-us"   # the voice whose timings new text gets at inference
REFERENCE_RATE = 170        # words per minute: the middle of the training rates (140-200)


class _EspeakEvents:
    """espeak-ng's library in synchronous mode with phoneme events (IPA names). A private copy of the shared
    library is loaded afresh for every utterance and unloaded after it: its state apart from phonemizer's, and
    the same text always timed the same (a long-lived instance carries state from one utterance into the next and
    shifts later phones by up to a millisecond). Calls take turns."""

    _lock = threading.Lock()
    _instance: _EspeakEvents | None = None

    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    class _Event(ctypes.Structure):
        pass

    _Event._fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                       ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                       ("user_data", ctypes.c_void_p), ("id", _Id)]
    _Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

    def __init__(self) -> None:
        from ctypes.util import find_library

        name = find_library("espeak-ng")
        if not name:
            raise MissingSystemPackageError("the espeak-ng library (libespeak-ng)", "espeak-ng")
        path = next((p for p in (f"/usr/lib/x86_64-linux-gnu/{name}", f"/lib/x86_64-linux-gnu/{name}",
                                 f"/usr/lib/{name}", f"/usr/lib/aarch64-linux-gnu/{name}") if os.path.exists(p)), None)
        if path is None:
            raise MissingSystemPackageError(f"the espeak-ng library file ({name})", "espeak-ng")
        self._dir = tempfile.mkdtemp(prefix="tokenwave-espeak-")
        self.path = os.path.join(self._dir, "libespeak-ng.so")
        shutil.copy(path, self.path)
        self._audio: list[np.ndarray] = []
        self._events: list[tuple[str, int]] = []
        self._cb = self._Callback(self._callback)  # kept alive as long as a library may call it
        self.sample_rate = 0

    def _callback(self, wav, n, events) -> int:
        if wav and n > 0:
            self._audio.append(np.ctypeslib.as_array(wav, shape=(n,)).astype(np.float32) / 32768.0)
        i = 0
        while events[i].type != 0:
            e = events[i]
            if e.type == 7:  # a phoneme
                self._events.append((e.id.string.decode("utf-8", "replace"), int(e.sample)))
            i += 1
        return 0

    @classmethod
    def get(cls) -> _EspeakEvents:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def speak(self, text: str, voice: str, rate: int, pitch: int | None = None) -> tuple[np.ndarray, list[tuple[str, int]]]:
        """``(audio float32 at self.sample_rate, [(ipa phone, start sample)])``; an empty name is a pause."""
        import _ctypes

        with self._lock:
            lib = ctypes.CDLL(self.path, mode=os.RTLD_LOCAL)
            try:
                self._audio, self._events = [], []
                self.sample_rate = lib.espeak_Initialize(2, 0, None, 0x0001 | 0x0002 | 0x8000)  # synchronous, events, IPA
                if self.sample_rate <= 0:
                    raise MissingSystemPackageError("a working espeak-ng library", "espeak-ng espeak-ng-data")
                lib.espeak_SetSynthCallback(self._cb)
                if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise DatasetError(f"espeak-ng has no voice {voice!r}", "list them with `espeak-ng --voices=en`")
                lib.espeak_SetParameter(1, int(rate), 0)
                if pitch is not None:
                    lib.espeak_SetParameter(3, int(pitch), 0)
                data = text.encode("utf-8")
                buf = ctypes.create_string_buffer(data)
                lib.espeak_Synth(buf, len(data) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
                lib.espeak_Synchronize()
                lib.espeak_Terminate()
            finally:
                _ctypes.dlclose(lib._handle)
            audio = np.concatenate(self._audio) if self._audio else np.zeros(0, np.float32)
            return audio, list(self._events)


def espeak_timings(text: str, voice: str, rate: int, pitch: int | None = None
                   ) -> tuple[np.ndarray, int, list[str], list[float]]:
    """espeak-ng speaking ``text``: ``(audio, sample rate, phones, start seconds)``; pauses are ``SIL``."""
    eng = _EspeakEvents.get()
    audio, events = eng.speak(text, voice, rate, pitch)
    phones = [p or SIL for p, _ in events]
    starts = [s / eng.sample_rate for _, s in events]
    return audio, eng.sample_rate, phones, starts


def flite_timings(text: str, voice: str, stretch: float, pitch: float | None) -> tuple[np.ndarray, int, list[str], list[float]]:
    """flite speaking ``text`` (as the dataset builder runs it): ``(audio, sample rate, IPA phones, start seconds)``."""
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="tokenwave-flite-") as tmp:
        path = Path(tmp) / "x.wav"
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch}"]
        if pitch is not None:
            cmd += ["--setf", f"int_f0_target_mean={pitch}"]
        cmd += ["-psdur", "-t", text, "-o", str(path)]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        except FileNotFoundError as e:
            raise MissingSystemPackageError("flite", "flite") from e
        audio, sr = sf.read(str(path), dtype="float32")
    phones, starts, t = [], [], 0.0
    for tok in res.stdout.split():
        name, _, end = tok.rpartition(":")
        phones.append(FLITE_IPA.get(name, name))
        starts.append(t)
        t = float(end)
    return audio, sr, phones, starts


def _shifted(phones: list[str], starts: list[float], off: float, end: float) -> dict:
    """Timings moved ``off`` seconds earlier (the clip starts there), phones past ``end`` dropped."""
    out_p, out_s = [], []
    for p, s in zip(phones, starts, strict=True):
        s = max(0.0, s - off)
        if s >= end:
            break
        if out_p and out_s[-1] == s:  # zero-length: the later phone wins the instant
            out_p.pop()
            out_s.pop()
        out_p.append(p)
        out_s.append(round(s, 5))
    if not out_p or out_s[0] > 0:
        out_p.insert(0, SIL)
        out_s.insert(0, 0.0)
    return {"phones": out_p, "starts": out_s, "end": round(end, 5)}


def _trimmed(audio: np.ndarray, sr: int, phones: list[str], starts: list[float], out_sr: int) -> dict:
    """Timings of the trimmed audio (trimmed the way the speech builder trims its clips, at ``out_sr``)."""
    from tokenwave.audio import resample
    from tokenwave.data.speech import trim_bounds

    wav = resample(audio, sr, out_sr) if sr != out_sr else audio
    a, b = trim_bounds(wav, out_sr)
    return _shifted(phones, starts, a / out_sr, (b - a) / out_sr)


def _envelope(x: np.ndarray, hop: int) -> np.ndarray:
    n = len(x) // hop
    return np.sqrt((x[: n * hop].astype(np.float64).reshape(n, hop) ** 2).mean(1) + 1e-10)


def clip_offset(spoken: np.ndarray, clip: np.ndarray, sr: int, max_lag_s: float = 0.5) -> tuple[float, float]:
    """Where ``clip`` starts within ``spoken`` (seconds, to 2.5 ms; both at ``sr``, the clip a trimmed, rescaled
    rendering of the same speech) and how well their loudness envelopes agree there (Pearson correlation; espeak-ng's
    noise sources differ between renderings, so samples are compared through their envelopes)."""
    from scipy.signal import fftconvolve

    hop = max(1, int(0.0025 * sr))
    es, ec = np.log(_envelope(spoken, hop)), np.log(_envelope(clip, hop))
    n = min(len(es), len(ec))
    if n < 8:
        return 0.0, 0.0
    c = ec[:n] - ec[:n].mean()
    corr = fftconvolve(es - es.mean(), c[::-1], mode="full")[n - 1:]
    lags = max(1, min(len(corr), int(max_lag_s * sr / hop) + 1))
    k = int(np.argmax(corr[:lags]))
    seg = es[k: k + n]
    m = min(len(seg), n)
    match = float(np.corrcoef(seg[:m], ec[:m])[0, 1]) if m > 2 else 0.0
    return k * hop / sr, match


def align_row(row: dict, clip: np.ndarray | None = None, sample_rate: int = 24_000) -> dict:
    """The alignment of one speech-dataset row: speak it again with its engine, voice, rate and pitch; with the
    row's audio ``clip`` (at ``sample_rate``) the offset is where the clip matches the re-spoken audio best (and
    ``match`` says how well: the normalised correlation), else the builder's trim rule on the re-spoken audio."""
    from tokenwave.audio import resample
    from tokenwave.data.speech import _espeak_accents

    engine, voice = row["speaker"].split(":", 1)
    if engine == "espeak-ng":
        accent, variant = voice.split("+")
        audio, sr, phones, starts = espeak_timings(row["text"], f"{_espeak_accents()[accent]}+{variant}",
                                                   int(row["rate"]), None if row.get("pitch") is None else int(row["pitch"]))
    elif engine == "flite":
        audio, sr, phones, starts = flite_timings(row["text"], voice, float(row["rate"]), row.get("pitch"))
    else:
        raise DatasetError(f"row {row.get('id')} was spoken by {engine!r}, which gives no timings",
                           "align espeak-ng and flite rows only")
    if clip is None:
        return _trimmed(audio, sr, phones, starts, sample_rate)
    spoken = resample(audio, sr, sample_rate) if sr != sample_rate else audio
    off, match = clip_offset(spoken, clip, sample_rate)
    return {**_shifted(phones, starts, off, len(clip) / sample_rate), "match": round(match, 4)}


def text_timings(text: str, speed: float = 1.0, sample_rate: int = 24_000, pad_s: float = 0.05,
                 accent: str | None = None, variant: str | None = None) -> dict:
    """The alignment new text gets at inference: espeak-ng's ``accent`` (an English accent of the speech datasets;
    None: the reference voice), with a ``variant``'s stress timing if given, at the reference rate x ``speed``, cut
    like the training clips (``pad_s`` before the first phone and after the last). The cut comes from the phone
    events alone, not the audio (espeak-ng's noise sources differ from run to run), so the same text always gets
    the same timing."""
    if accent is None:
        voice = REFERENCE_VOICE
    else:
        from tokenwave.data.accent import timing_voice

        voice = timing_voice(accent, variant)
    audio, sr, phones, starts = espeak_timings(text, voice, int(round(REFERENCE_RATE * speed)))
    spoken = [i for i, p in enumerate(phones) if p != SIL]
    total = len(audio) / sr
    if not spoken:
        return _shifted(phones, starts, 0.0, total)
    last = spoken[-1] + 1
    stop = starts[last] if last < len(starts) else total
    off = max(0.0, starts[spoken[0]] - pad_s)
    return _shifted(phones, starts, off, min(total, stop + pad_s) - off)


def frame_phones(alignment: dict, frames: int, frame_rate: float = 75.0) -> tuple[list[str], list[int], list[int]]:
    """Per codec frame: the phone sounding at its centre, the frame's index within that phone and the frames left
    in it (both from 0)."""
    starts = np.asarray(alignment["starts"], dtype=np.float64)
    centres = (np.arange(frames) + 0.5) / frame_rate
    idx = np.clip(np.searchsorted(starts, centres, side="right") - 1, 0, len(starts) - 1)
    first = np.searchsorted(idx, idx, side="left")  # idx is non-decreasing: a phone's first frame
    last = np.searchsorted(idx, idx, side="right") - 1
    frames_idx = np.arange(frames)
    return [alignment["phones"][i] for i in idx], (frames_idx - first).tolist(), (last - frames_idx).tolist()


def align_dataset(folder: str | os.PathLike, out: str | os.PathLike | None = None, min_match: float = 0.9) -> dict:
    """Write ``alignments.jsonl`` (one ``{"id", "phones", "starts", "end", "match"}`` per row) beside a speech
    dataset's manifest; a row whose clip matches its re-spoken audio with a correlation under ``min_match`` is left
    out. Returns ``{"path", "rows", "aligned", "skipped"}``."""
    from tokenwave.audio import load_audio
    from tokenwave.data.manifest import audio_path, read_manifest
    from tokenwave.fileio import atomic_write_text
    from tokenwave.progress import progress_bar

    folder = Path(folder)
    rows = list(read_manifest(folder))
    if not rows or rows[0].get("domain") != "speech" or "speaker" not in rows[0]:
        raise DatasetError(f"{folder} is not a speech dataset built by `tokenwave data build speech`",
                           "align a speech dataset (rows with text, speaker, rate and pitch)")
    lines, skipped = [], 0
    with progress_bar("align", total=len(rows), unit="clips") as bar:
        for r in rows:
            clip, _ = load_audio(audio_path(folder, r), 24_000)
            a = align_row(r, clip)
            if a["match"] < min_match:
                skipped += 1
            else:
                lines.append(json.dumps({"id": r["id"], **a}, ensure_ascii=False))
            bar.advance(1)
    path = Path(out) if out is not None else folder / "alignments.jsonl"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return {"path": str(path), "rows": len(rows), "aligned": len(lines), "skipped": skipped}


def dataset_alignments(folder: str | os.PathLike) -> dict[str, dict]:
    """A dataset's ``alignments.jsonl`` by clip id, or ``{}`` when it has not been aligned."""
    path = Path(folder) / "alignments.jsonl"
    return read_alignments(path) if path.exists() else {}


def read_alignments(path: str | os.PathLike) -> dict[str, dict]:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"no alignments at {path}", "make them with `tokenwave data align --data DATASET`")
    return {a["id"]: a for a in map(json.loads, path.read_text().splitlines()) if a}
