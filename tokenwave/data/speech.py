"""Speech dataset builder: fortune-file sentences spoken by espeak-ng and flite voices, at 24 kHz mono.

Each clip has its text, en-us IPA phonemes (phonemizer, espeak backend), a speaker id such as
``espeak-ng:en-us+f2`` or ``flite:slt``, and the rate and pitch it was spoken with. Sentences are split
train/valid/test by a hash of their text; a seed-chosen ~10% of speakers speak only the test split.
"""
from __future__ import annotations

import functools
import hashlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenwave import SAMPLE_RATE
from tokenwave.audio import load_audio, loudness_normalize
from tokenwave.data.manifest import SPLITS
from tokenwave.data.writer import DatasetWriter, check_audio, check_minutes, render_in_order, split_schedule
from tokenwave.errors import DatasetError, MissingSystemPackageError
from tokenwave.progress import progress_bar
from tokenwave.speech.envelope import trim_bounds
from tokenwave.speech.espeak import espeak_accents
from tokenwave.speech.phonemes import phonemize
from tokenwave.sysdeps import require_file, require_program

FORTUNES_DIR = "/usr/share/games/fortunes"
MIN_SENTENCES = 2000
#: espeak-ng variants crossed with every English accent (a deterministic subset of ``--voices=variant``).
ESPEAK_VARIANTS = ("m1", "m3", "m5", "f2", "f4", "klatt2")
FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")
#: Default mean F0 (Hz) of the flite voices whose pitch ``int_f0_target_mean`` moves; rms ignores it.
FLITE_F0 = {"kal": 95.0, "kal16": 95.0, "awb": 130.0, "slt": 170.0}
#: espeak-ng variants left out of the wide voice set: whispers have no pitch to hear a speaker by; ``fast`` is a test.
WIDE_EXCLUDED_VARIANTS = ("whisper", "whisperf", "fast")
#: Voice sets a speech dataset can be built with: ``standard`` (the variants above) or ``wide`` (every variant
#: this espeak-ng has, for training only: the held-out test speakers are the standard set's either way).
VOICE_SETS = ("standard", "wide")
#: kal and kal16 are one speaker at two rates, so only these may be held out.
FLITE_HOLDOUT = ("awb", "rms", "slt")

_ABBREV = {"mr.", "mrs.", "ms.", "dr.", "st.", "jr.", "sr.", "vs.", "etc.", "prof.", "mt.", "no.", "gen.", "col.", "capt.", "sgt."}
_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'(]*[A-Z])")
_ALLOWED_RE = re.compile(r"^[A-Za-z ,.;:!?'\"()-]+$")
_BAD_RE = re.compile(r"--|\b[A-Z]:|\b[A-Za-z]\.(?!$)|https?|www|\.com\b|\(\s*\)|\.\.\.\.|[.!?][A-Za-z]|\b[A-HJ-Za-z][.!?]$")


def _clean_sentence(s: str) -> str | None:
    """``s`` if it is a speakable English sentence of 4-20 words, else None."""
    s = " ".join(s.split())
    words = s.split()
    if not 4 <= len(words) <= 20 or s[-1] not in ".!?" or not s.isascii():
        return None
    if not _ALLOWED_RE.match(s) or _BAD_RE.search(s) or not re.match(r"[\"'(]*[A-Z]", s):
        return None
    letters = [c for c in s if c.isalpha()]
    caps_words = sum(len(w) > 1 and w.isupper() for w in re.findall(r"[A-Za-z]+", s))
    if caps_words > 2 or sum(c.isupper() for c in letters) > 0.3 * len(letters):  # shouting, headlines
        return None
    if s.count('"') % 2 or s.count("(") != s.count(")"):
        return None
    return s


def _entry_sentences(entry: str) -> list[str]:
    lines = [ln for ln in entry.splitlines() if not re.match(r"\s*--", ln)]  # drop "-- Author" lines
    text = re.sub(r"\s+--\s+", ", ", " ".join(" ".join(lines).split()))
    pieces: list[str] = []
    for p in _SPLIT_RE.split(text):
        # rejoin splits made after abbreviations such as "Mr."
        if pieces and pieces[-1].split()[-1].lower() in _ABBREV:
            pieces[-1] += " " + p
        else:
            pieces.append(p)
    return [c for c in map(_clean_sentence, pieces) if c]


def load_sentences() -> list[str]:
    """Distinct, sorted English sentences from Debian's ``fortunes`` files (at least 2000; cached)."""
    return list(_sentences())


@functools.lru_cache(maxsize=1)
def _sentences() -> tuple[str, ...]:
    folder = require_file([FORTUNES_DIR], "fortunes", "the fortune files")
    found: set[str] = set()
    for path in sorted(folder.iterdir()):
        if path.suffix in {".dat", ".u8"} or not path.is_file():
            continue
        text = path.read_bytes().decode("latin-1")
        for entry in re.split(r"^%\s*$", text, flags=re.M):
            found.update(_entry_sentences(entry))
    if len(found) < MIN_SENTENCES:
        raise DatasetError(f"only {len(found)} usable sentences in {folder} (need {MIN_SENTENCES})",
                           "reinstall the full `fortunes` package: apt-get install --reinstall fortunes")
    return tuple(sorted(found))


def sentence_split(sentence: str) -> str:
    """The split a sentence belongs to, from a stable hash: ~80% train, 10% valid, 10% test."""
    bucket = int(hashlib.sha1(sentence.encode()).hexdigest()[:8], 16) % 10
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


@functools.lru_cache(maxsize=1)
def _split_sentences() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for s in _sentences():
        out[sentence_split(s)].append(s)
    return out


def _require_engines() -> None:
    require_program("espeak-ng", "espeak-ng")
    require_program("flite", "flite")


def _run(cmd: list[str]) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {res.stderr.strip()[-300:]}")
    return res.stdout


def speakers(voices: str = "standard") -> list[str]:
    """Every speaker id of a voice set (:data:`VOICE_SETS`) this machine's engines give: English espeak-ng accents x
    variants (sorted), then flite voices."""
    return list(_speakers(_check_voices(voices)))


def _check_voices(voices: str) -> str:
    if voices not in VOICE_SETS:
        raise DatasetError(f"unknown voice set {voices!r}", f"use one of: {', '.join(VOICE_SETS)}")
    return voices


@functools.lru_cache(maxsize=2)
def _speakers(voices: str = "standard") -> tuple[str, ...]:
    _require_engines()
    accents = espeak_accents()
    variants = {line.split()[4][3:] for line in _run(["espeak-ng", "--voices=variant"]).splitlines()[1:]
                if len(line.split()) >= 5 and line.split()[4].startswith("!v/")}
    wanted = ESPEAK_VARIANTS if voices == "standard" else sorted(variants - set(WIDE_EXCLUDED_VARIANTS))
    espeak = [f"espeak-ng:{a}+{v}" for a in sorted(accents) for v in wanted if v in variants]
    listed = _run(["flite", "-lv"]).split(":", 1)[-1].split()
    flite = [f"flite:{v}" for v in FLITE_VOICES if v in listed]
    if len(espeak) < 6 or not flite:
        raise MissingSystemPackageError("the espeak-ng English voices or flite voices", "espeak-ng flite")
    return tuple(espeak + flite)


def held_out_speakers(seed: int = 0) -> list[str]:
    """Speakers kept for the test split only: ~10% (at least 3), one flite voice and the rest espeak-ng."""
    return list(_held_out(seed))


@functools.lru_cache(maxsize=16)
def _held_out(seed: int) -> tuple[str, ...]:
    all_spk = _speakers()
    rng = np.random.default_rng([seed, 0x5EED])
    flite = [s for s in all_spk if s.split(":", 1)[1] in FLITE_HOLDOUT]
    espeak = [s for s in all_spk if s.startswith("espeak-ng:")]
    n = max(3, round(0.1 * len(all_spk)))
    picked = [flite[rng.integers(len(flite))]] if flite else []
    picked += [espeak[i] for i in rng.choice(len(espeak), n - len(picked), replace=False)]
    return tuple(sorted(picked))


@dataclass(frozen=True)
class _Job:
    index: int
    split: str
    speaker: str
    text: str
    phonemes: str
    rate: float
    pitch: float | None


def _plan(seed: int, batch: int = 32, voices: str = "standard") -> Iterator[_Job]:
    """Endless clip plans: split from the schedule, then speaker, sentence, rate, pitch from a per-clip rng. The
    held-out speakers are the standard set's whatever ``voices`` is, so a wide set's test split is the standard one's."""
    held = _held_out(seed)
    pools = {"test": list(held), "train": [s for s in _speakers(voices) if s not in held]}
    pools["valid"] = pools["train"]
    sentences = _split_sentences()
    start = 0
    while True:
        drafts = []
        for i in range(start, start + batch):
            rng = np.random.default_rng([seed, i])
            split = split_schedule(i)
            speaker = pools[split][rng.integers(len(pools[split]))]
            text = sentences[split][rng.integers(len(sentences[split]))]
            engine, voice = speaker.split(":", 1)
            if engine == "espeak-ng":
                rate, pitch = float(rng.integers(140, 201)), float(rng.integers(30, 71))
            else:
                rate = round(float(rng.uniform(0.85, 1.2)), 3)
                f0 = FLITE_F0.get(voice)
                pitch = round(f0 * float(rng.uniform(0.85, 1.2)), 1) if f0 else None
            drafts.append((i, split, speaker, text, rate, pitch))
        # phonemizing a batch at once here, on the main thread, keeps the espeak library single-threaded
        for (i, split, speaker, text, rate, pitch), ph in zip(drafts, phonemize([d[3] for d in drafts])):
            yield _Job(i, split, speaker, text, ph, rate, pitch)
        start += batch


def trim_silence(wav: np.ndarray, sr: int, threshold_db: float = -40.0, pad_s: float = 0.05) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than ``threshold_db`` below the peak, keeping ``pad_s`` of margin."""
    a, b = trim_bounds(wav, sr, threshold_db, pad_s)
    return wav[a:b]


def _render(job: _Job, tmp: Path) -> np.ndarray:
    """Speak one job with its engine and return it trimmed and loudness-normalised at 24 kHz."""
    engine, voice = job.speaker.split(":", 1)
    path = tmp / f"{job.index}.wav"
    if engine == "espeak-ng":
        # by file, not by name: espeak-ng ignores the variant of "en-gb+m3" (the name also matches an mbrola voice)
        accent, variant = voice.split("+")
        voice = f"{espeak_accents()[accent]}+{variant}"
        cmd = ["espeak-ng", "-v", voice, "-s", str(int(job.rate)), "-p", str(int(job.pitch)), "-w", str(path), job.text]
    else:
        cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={job.rate}"]
        if job.pitch is not None:
            cmd += ["--setf", f"int_f0_target_mean={job.pitch}"]
        cmd += ["-t", job.text, "-o", str(path)]
    _run(cmd)
    try:
        wav, _ = load_audio(path, SAMPLE_RATE)
    finally:
        path.unlink(missing_ok=True)
    wav = loudness_normalize(trim_silence(wav, SAMPLE_RATE), SAMPLE_RATE, -20.0, peak=0.99)
    return check_audio(wav, f"{job.speaker} saying {job.text!r}")


def build_speech(out: str | Path, minutes: float, seed: int = 0, overwrite: bool = False, workers: int = 2,
                 voices: str = "standard") -> Path:
    """Build a speech dataset of about ``minutes`` of audio at ``out``; returns the dataset folder.

    ``voices="wide"`` trains on every espeak-ng variant (about 15 times the standard set's speakers); the test
    split keeps the standard set's held-out speakers, so models trained on either are measured alike.

    Rows carry ``text``, ``phonemes``, ``speaker``, ``engine``, ``voice``, ``rate`` (espeak-ng: words per
    minute; flite: duration stretch) and ``pitch`` (espeak-ng: 0-99; flite: mean F0 in Hz, None for rms).
    """
    minutes = check_minutes(minutes)
    _check_voices(voices)
    _require_engines()
    sentences = _sentences()
    held = held_out_speakers(seed)
    info = {"builder": "speech", "seed": seed, "minutes": minutes, "voices": voices, "speakers": speakers(voices),
            "held_out_speakers": held, "sentence_count": len(sentences),
            "sentences_per_split": {s: len(v) for s, v in _split_sentences().items()},
            "units": {"rate": "espeak-ng words/min | flite duration_stretch", "pitch": "espeak-ng 0-99 | flite F0 Hz"}}
    target = minutes * 60.0
    total = 0.0
    with DatasetWriter(out, "speech", info, overwrite=overwrite) as writer, \
            tempfile.TemporaryDirectory(prefix="tokenwave-speech-") as tmp, \
            progress_bar("speech", total=target, unit="s") as bar:
        clips = render_in_order(_plan(seed, voices=voices), lambda job: _render(job, Path(tmp)), workers=max(1, workers))
        try:
            for job, wav in clips:
                engine, voice = job.speaker.split(":", 1)
                row = writer.add(wav, job.split, f"sp-{job.index:06d}", text=job.text, phonemes=job.phonemes,
                                 speaker=job.speaker, engine=engine, voice=voice, rate=job.rate, pitch=job.pitch)
                total += row["duration"]
                bar.advance(row["duration"])
                if total >= target:
                    break
        finally:
            clips.close()  # cancel and wait for renders still in flight before the temp folder goes
    return writer.out
