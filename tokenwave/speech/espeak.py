"""espeak-ng as the speech front-end uses it: its English accents, and speech with the phone timings of its
library's phoneme events (IPA names, the sample each phone starts at).

A phone list names a pause ``SIL``.
"""
from __future__ import annotations

import _ctypes
import ctypes
import functools
import os
import shutil
import subprocess
import tempfile
import threading
from ctypes.util import find_library

import numpy as np

from tokenwave.errors import DatasetError, MissingSystemPackageError
from tokenwave.sysdeps import require_program

SIL = "_"


@functools.lru_cache(maxsize=1)
def espeak_accents() -> dict[str, str]:
    """English accent name -> espeak-ng voice file, for espeak's own voices only."""
    require_program("espeak-ng", "espeak-ng")
    res = subprocess.run(["espeak-ng", "--voices=en"], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"espeak-ng --voices=en failed: {res.stderr.strip()[-300:]}")
    accents = {}
    for line in res.stdout.splitlines()[1:]:
        cols = line.split()
        # "gmw/..." are espeak's own voices; "mb/..." need mbrola, "!v/..." are variants
        if len(cols) >= 5 and cols[4].startswith("gmw/") and cols[1].startswith("en"):
            accents.setdefault(cols[1], cols[4])
    return accents


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
