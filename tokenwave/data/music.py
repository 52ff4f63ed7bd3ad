"""Music dataset builder: music21 corpus excerpts rendered with FluidSynth (General MIDI soundfont) at 24 kHz mono.

Each clip is an 8-15 s excerpt of one piece (Bach chorales, fiddle tunes, airs, folk songs, string quartets,
madrigals, masses; see :mod:`tokenwave.data.music_corpus`), starting at a bar line, played on one General
MIDI instrument or ensemble at a chosen tempo and transposition. Rows carry a caption built from that
metadata ("fast irish fiddle reel on violin in D major, 112 bpm"), tags, the key after transposition and
the top-voice melody as one MIDI pitch per 75 Hz frame (0 = rest).

Splits: piece groups are held out by a stable hash; test clips use only the held-out 10%, valid clips a
separate 5%, train clips the rest, so the three piece sets are disjoint. ``bpm`` counts the beats of the
score's time signature (a 6/8 jig counts dotted quarters); the tempo word comes from the melody's note rate.
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenwave import SAMPLE_RATE
from tokenwave.audio import load_audio, loudness_normalize
from tokenwave.data import music_corpus as mc
from tokenwave.data.writer import DatasetWriter, check_audio, check_minutes, render_in_order, split_schedule
from tokenwave.progress import progress_bar
from tokenwave.sysdeps import require_file, require_program

SOUNDFONTS = ["/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2"]
MELODY_FRAME_RATE = 75            # frames per second: 320 samples at 24 kHz
HOP = SAMPLE_RATE // MELODY_FRAME_RATE
CLIP_SECONDS = (8.0, 15.0)
TRANSPOSE = (-5, 6)
CANDIDATES = 6                    # pieces tried per clip before giving up (unparsable or too short)

#: name -> (General MIDI programs, 0-based, one per part from the top voice down; octave shift in semitones)
INSTRUMENTS: dict[str, tuple[tuple[int, ...], int]] = {
    "piano": ((0,), 0), "harpsichord": ((6,), 0), "church organ": ((19,), 0), "reed organ": ((20,), 0),
    "accordion": ((21,), 0), "harmonica": ((22,), 0), "acoustic guitar": ((24,), 0), "steel guitar": ((25,), 0),
    "violin": ((40,), 0), "cello": ((42,), -12), "harp": ((46,), 0), "string ensemble": ((48,), 0),
    "choir": ((52,), 0), "trumpet": ((56,), 0), "brass section": ((61,), 0), "oboe": ((68,), 0),
    "bassoon": ((70,), -12), "clarinet": ((71,), 0), "flute": ((73,), 0), "recorder": ((74,), 0),
    "pan flute": ((75,), 0), "banjo": ((105,), 0), "bagpipe": ((109,), 0), "fiddle": ((110,), 0),
    "marimba": ((12,), 0), "vibraphone": ((11,), 0),
    "string quartet": ((40, 40, 41, 42), 0), "woodwind quartet": ((73, 68, 71, 70), 0),
    "brass quartet": ((56, 56, 60, 57), 0),
}
FAMILY_INSTRUMENTS: dict[str, tuple[str, ...]] = {
    "fiddle": ("violin", "fiddle", "flute", "accordion", "harmonica", "banjo", "acoustic guitar", "piano", "harp",
               "recorder", "clarinet", "bagpipe", "steel guitar"),
    "air": ("violin", "flute", "harp", "piano", "oboe", "clarinet", "cello", "recorder", "acoustic guitar", "pan flute"),
    "folk": ("flute", "recorder", "clarinet", "oboe", "violin", "piano", "acoustic guitar", "harp", "accordion",
             "trumpet", "marimba", "vibraphone", "bassoon"),
    "chorale": ("church organ", "reed organ", "piano", "harpsichord", "string ensemble", "choir", "brass quartet",
                "string quartet", "woodwind quartet"),
    "quartet": ("string quartet", "string ensemble", "piano", "harpsichord", "woodwind quartet", "church organ"),
    "vocal": ("choir", "string ensemble", "church organ", "brass quartet", "woodwind quartet", "string quartet"),
}
#: genre -> (low, high) beats per minute
BPM: dict[str, tuple[int, int]] = {
    "reel": (92, 124), "hornpipe": (70, 100), "jig": (96, 126), "slip jig": (96, 126), "strathspey": (60, 84),
    "highland fling": (70, 96), "clog": (70, 100), "polka": (100, 130), "march": (88, 120), "waltz": (120, 170),
    "minuet": (90, 130), "tune": (88, 120), "air": (56, 90), "folk song": (72, 120), "ballad": (70, 110),
    "children's song": (90, 130), "chorale": (56, 84), "string quartet": (60, 140), "madrigal": (56, 90),
    "mass": (44, 72),
}
_DANCES = {"reel", "hornpipe", "strathspey", "highland fling", "clog", "polka", "march", "tune"}
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")
# Krumhansl-Kessler key profiles
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def melody_frames(notes: np.ndarray, n_frames: int, transpose: int = 0,
                  frame_rate: int = MELODY_FRAME_RATE) -> np.ndarray:
    """Top-voice piano roll: the highest MIDI pitch sounding at each frame's centre (0 = rest), int ``[n_frames]``.

    ``notes`` is ``[n, 3]`` (pitch, start s, end s); ``transpose`` is added to every pitch (clamped to 1..127).
    """
    mel = np.zeros(n_frames, dtype=np.int64)
    for pitch, start, end in np.asarray(notes, dtype=np.float64).reshape(-1, 3):
        a, b = int(np.ceil(start * frame_rate - 0.5)), int(np.ceil(end * frame_rate - 0.5))
        a, b = max(a, 0), min(b, n_frames)
        if b > a:
            mel[a:b] = np.maximum(mel[a:b], int(np.clip(round(pitch) + transpose, 1, 127)))
    return mel


def estimate_key(notes: np.ndarray, sharps: int | None = None,
                 declared: tuple[int, str] | None = None) -> tuple[int, str]:
    """(tonic pitch class, "major"|"minor") of ``notes`` ``[n, 3]`` (pitch, start, end).

    A declared key wins; otherwise Krumhansl-Kessler correlation on duration-weighted pitch classes, with
    a small preference for the two keys that share the key signature ``sharps``.
    """
    if declared is not None:
        return declared
    hist = np.zeros(12)
    for pitch, start, end in np.asarray(notes, dtype=np.float64).reshape(-1, 3):
        hist[int(round(pitch)) % 12] += max(end - start, 0.0)
    if not hist.any():
        return (0, "major") if sharps is None else ((7 * sharps) % 12, "major")
    best, best_score = (0, "major"), -np.inf
    for tonic in range(12):
        for mode, prof in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
            score = float(np.corrcoef(hist, np.roll(prof, tonic))[0, 1])
            if sharps is not None and tonic == ((7 * sharps) % 12 + (9 if mode == "minor" else 0)) % 12:
                score += 0.15
            if score > best_score:
                best, best_score = (tonic, mode), score
    return best


def key_name(tonic: int, mode: str) -> str:
    return (_MINOR_NAMES if mode == "minor" else _MAJOR_NAMES)[tonic % 12]


def tempo_word(notes_per_second: float) -> str:
    """slow / moderate / lively / fast from the melody's note rate."""
    for word, limit in (("slow", 2.0), ("moderate", 3.2), ("lively", 5.0)):
        if notes_per_second < limit:
            return word
    return "fast"


@dataclass(frozen=True)
class _Job:
    index: int
    split: str
    collection: str
    candidates: tuple[mc.Piece, ...]
    instrument: str
    transpose: int
    frames: int          # clip length in 75 Hz frames (320 samples each)
    u_bpm: float         # position in the genre's bpm range
    u_start: float       # which bar the excerpt starts at
    velocity: int
    seed: int


def plan_music(minutes: float, seed: int = 0) -> list[_Job]:
    """Every clip of a build, in order, until the planned duration reaches ``minutes``: split from the schedule,
    then collection, candidate pieces (from that split's pool), instrument, transposition and length from a
    per-clip rng."""
    minutes = check_minutes(minutes)
    pools = mc.split_pools()
    jobs, total, i = [], 0.0, 0
    while total < minutes * 60.0:
        rng = np.random.default_rng([seed, i])
        split = split_schedule(i)
        names = [c.name for c in mc.COLLECTIONS if c.name in pools[split]]
        weights = np.array([mc.BY_NAME[n].weight for n in names])
        coll = names[rng.choice(len(names), p=weights / weights.sum())]
        pool = pools[split][coll]
        cands = tuple(pool[k] for k in rng.integers(len(pool), size=CANDIDATES))
        family = mc.BY_NAME[coll].family
        inst = FAMILY_INSTRUMENTS[family][rng.integers(len(FAMILY_INSTRUMENTS[family]))]
        frames = int(rng.integers(int(CLIP_SECONDS[0] * MELODY_FRAME_RATE), int(CLIP_SECONDS[1] * MELODY_FRAME_RATE) + 1))
        jobs.append(_Job(i, split, coll, cands, inst, int(rng.integers(TRANSPOSE[0], TRANSPOSE[1] + 1)), frames,
                         float(rng.random()), float(rng.random()), int(rng.integers(72, 101)), seed))
        total += frames / MELODY_FRAME_RATE
        i += 1
    return jobs


MIN_NOTE_SECONDS = 0.005  # shorter notes are left out of the MIDI file (a few ticks at its resolution)
RENDER_TIMEOUT = 120.0    # seconds for fluidsynth to render one 8-15 s clip (it takes well under one)


def _excerpt(job: _Job) -> dict | None:
    """Notes (seconds, sounding pitch) and metadata of the job's excerpt, from its first usable candidate."""
    seconds = job.frames / MELODY_FRAME_RATE
    for piece in job.candidates:
        try:
            sn = mc.load_notes(piece)
        except Exception:  # a score music21 cannot read: try the next candidate
            continue
        if len(sn.notes) == 0:
            continue
        lo, hi = BPM.get(piece.genre, (80, 120))
        beat = sn.beat
        top = sn.notes[sn.notes[:, 0] == sn.notes[:, 0].min()]
        if piece.family == "fiddle" and piece.genre in _DANCES and np.median(top[:, 3] - top[:, 2]) >= 0.5 * beat:
            beat *= 2  # reels written in 4/4 eighths are felt in two
        bpm = int(round(lo + job.u_bpm * (hi - lo)))
        spq = 60.0 / (bpm * beat)  # seconds per quarter length
        starts = [b for b in sn.bar_starts if (sn.length - b) * spq >= seconds]
        if not starts:
            continue
        start = starts[min(int(job.u_start * len(starts)), len(starts) - 1)]
        t0, t1 = (sn.notes[:, 2] - start) * spq, (sn.notes[:, 3] - start) * spq
        keep = (t1 > 0) & (t0 < seconds)
        if not keep.any():
            continue
        programs, octave = INSTRUMENTS[job.instrument]
        shift = job.transpose + (octave if len(programs) == 1 else 0)
        notes = np.stack([sn.notes[keep, 1] + shift, np.clip(t0[keep], 0, None), np.minimum(t1[keep], seconds)], 1)
        notes[:, 0] = np.clip(notes[:, 0], 12, 115)
        parts = sn.notes[keep, 0].astype(int)
        melody = melody_frames(notes, job.frames)
        if np.count_nonzero(melody) < 0.2 * job.frames:
            continue  # mostly silence (long rests in every voice): not a useful clip
        onsets = len(np.unique(np.round(notes[parts == parts.min(), 1], 3))) / seconds
        declared = None if sn.key is None else ((sn.key[0] + job.transpose) % 12, sn.key[1])
        sharps = None if sn.sharps is None else sn.sharps + 7 * job.transpose
        tonic, mode = estimate_key(notes, sharps, declared)
        return {"piece": piece, "notes": notes, "parts": parts, "programs": programs,
                "octave": octave if len(programs) == 1 else 0, "melody": melody, "bpm": bpm, "beat": beat,
                "start_ql": start, "key": key_name(tonic, mode), "mode": mode, "tempo": tempo_word(onsets)}
    return None


def _write_midi(ex: dict, velocity: int, rng: np.random.Generator, path: Path) -> None:
    import pretty_midi  # lazy: pretty_midi, an optional backend (the data extra)

    pm = pretty_midi.PrettyMIDI(resolution=960, initial_tempo=120.0)
    progs = ex["programs"]
    insts = [pretty_midi.Instrument(program=p) for p in progs]
    top = int(ex["parts"].min())
    for (pitch, start, end), part in zip(ex["notes"], ex["parts"]):
        if end - start < MIN_NOTE_SECONDS:
            continue  # cut to nothing at the excerpt's end: in the file its note-off would sort before its note-on
        k = min(int(part) - top, len(progs) - 1)
        vel = int(np.clip(velocity + (6 if part == top else 0) + rng.integers(-6, 7), 1, 127))
        insts[k].notes.append(pretty_midi.Note(velocity=vel, pitch=int(pitch), start=float(start), end=float(end)))
    pm.instruments = [i for i in insts if i.notes]
    pm.write(str(path))


def _render(job: _Job, sf2: Path, tmp: Path) -> tuple[np.ndarray, dict]:
    """Render one job: excerpt -> MIDI -> fluidsynth -> trimmed, faded, loudness-normalised 24 kHz mono."""
    ex = _excerpt(job)
    if ex is None:
        raise RuntimeError(f"clip {job.index}: none of {[p.id for p in job.candidates]} gave a usable excerpt")
    mid, wav_path = tmp / f"{job.index}.mid", tmp / f"{job.index}.wav"
    _write_midi(ex, job.velocity, np.random.default_rng([job.seed, job.index, 1]), mid)
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SAMPLE_RATE), "-T", "wav", "-O", "float",
           "-F", str(wav_path), str(sf2), str(mid)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=RENDER_TIMEOUT)
    except subprocess.TimeoutExpired as err:  # a note left sounding would render (and fill the disk) for ever
        wav_path.unlink(missing_ok=True)
        raise RuntimeError(f"fluidsynth did not finish {ex['piece'].id} in {RENDER_TIMEOUT} s (a note without its end?)") from err
    if res.returncode != 0 or not wav_path.exists():
        raise RuntimeError(f"fluidsynth failed on {ex['piece'].id}: {res.stderr.strip()[-300:]}")
    try:
        wav, _ = load_audio(wav_path, SAMPLE_RATE)
    finally:
        mid.unlink(missing_ok=True)
        wav_path.unlink(missing_ok=True)
    n = job.frames * HOP
    wav = np.pad(wav[:n], (0, max(0, n - len(wav))))
    fade_in, fade_out = int(0.005 * SAMPLE_RATE), int(0.1 * SAMPLE_RATE)
    wav[:fade_in] *= np.linspace(0, 1, fade_in, dtype=np.float32)
    wav[-fade_out:] *= np.linspace(1, 0, fade_out, dtype=np.float32)
    wav = loudness_normalize(wav, SAMPLE_RATE, -20.0, peak=0.99)
    return check_audio(wav, f"{ex['piece'].id} on {job.instrument}"), ex


def _fields(job: _Job, ex: dict) -> dict:
    piece: mc.Piece = ex["piece"]
    genre = piece.genre
    if piece.family == "fiddle" and genre != "air":
        genre = "fiddle tune" if genre == "tune" else f"fiddle {genre}"
    what = " ".join(w for w in (ex["tempo"], piece.style, genre) if w)
    caption = f"{what} on {job.instrument} in {ex['key']} {ex['mode']}, {ex['bpm']} bpm"
    tags = {"genre": piece.genre, "collection": piece.collection, "style": piece.style, "instrument": job.instrument,
            "tempo": ex["tempo"], "key": ex["key"], "mode": ex["mode"]}
    return {"caption": caption, "tags": tags, "piece": piece.id, "piece_title": piece.title,
            "collection": piece.collection,
            "genre": piece.genre, "instrument": job.instrument, "program": int(ex["programs"][0]),
            "programs": [int(p) for p in ex["programs"]], "bpm": ex["bpm"], "beat": ex["beat"], "key": ex["key"],
            "mode": ex["mode"], "transpose": job.transpose, "octave": ex["octave"], "start_ql": ex["start_ql"],
            "melody": [int(v) for v in ex["melody"]], "melody_frame_rate": MELODY_FRAME_RATE}


def _require() -> Path:
    require_program("fluidsynth", "fluidsynth")
    return require_file(SOUNDFONTS, "fluid-soundfont-gm", "the General MIDI soundfont")


def build_music(out: str | Path, minutes: float, seed: int = 0, overwrite: bool = False, workers: int = 2) -> Path:
    """Build a music dataset of about ``minutes`` of audio at ``out``; returns the dataset folder.

    Rows carry ``caption``, ``tags``, ``piece``, ``collection``, ``genre``, ``instrument``, ``program`` (GM,
    0-based, top voice), ``bpm``, ``key``, ``mode``, ``transpose`` and ``melody`` (MIDI pitch per 75 Hz frame).
    """
    minutes = check_minutes(minutes)
    sf2 = _require()
    jobs = plan_music(minutes, seed)
    pools, splits = mc.split_pools(), mc.piece_splits()
    info = {"builder": "music", "seed": seed, "minutes": minutes,
            "collections": {c.name: {"family": c.family, "patterns": list(c.patterns), "weight": c.weight}
                            for c in mc.COLLECTIONS},
            "pieces_per_split": {s: {c: len(v) for c, v in d.items()} for s, d in pools.items()},
            "held_out_pieces": sorted(p for p, s in splits.items() if s == "test"),
            "split_policy": "test: held-out 10% of piece groups; valid: a separate 5%; train: the rest",
            "soundfont": str(sf2), "units": {"bpm": "beats of the time signature per minute",
                                             "melody": "MIDI pitch of the top voice per 75 Hz frame, 0 = rest"}}
    target = minutes * 60.0
    total = 0.0
    with DatasetWriter(out, "music", info, overwrite=overwrite) as writer, \
            tempfile.TemporaryDirectory(prefix="tokenwave-music-") as tmp, \
            progress_bar("music", total=target, unit="s") as bar:
        clips = render_in_order(jobs, lambda job: _render(job, sf2, Path(tmp)), workers=max(1, workers))
        try:
            for job, (wav, ex) in clips:
                row = writer.add(wav, job.split, f"mu-{job.index:06d}", **_fields(job, ex))
                total += row["duration"]
                bar.advance(row["duration"])
                if total >= target:
                    break
        finally:
            clips.close()
    return writer.out
