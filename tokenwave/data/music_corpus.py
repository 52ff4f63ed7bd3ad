"""The music21 corpus as a list of pieces for the music builder, with a stable train/valid/test split.

A piece is one score file (chorales, quartet movements, madrigals, masses) or one tune of a multi-tune
ABC file (fiddle tunes, airs, folk songs); its id is ``<corpus path>#<tune number>`` (1-based position in
the file, 1 for single-score files). Pieces are split by a stable hash of a *group* key: the
normalised title for ABC tunes (so the same tune in two collections lands in one split) and the path
without variant suffixes for score files (``bwv248.23-2`` and ``bwv248.23-s`` go together).
"""
from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tokenwave.data.manifest import atomic_write_text

#: Hold-out fractions of groups: test (never used for train or valid), then valid (a separate piece subset).
TEST_FRACTION = 0.10
VALID_FRACTION = 0.05
#: Bump when what :func:`load_notes` extracts changes, so old caches are ignored.
NOTES_FORMAT = 1


@dataclass(frozen=True)
class Collection:
    name: str
    patterns: tuple[str, ...]  # corpus-relative globs
    family: str                # chooses instruments and tempo ranges in the builder
    weight: float              # how often a clip draws from this collection
    genre: str                 # default genre when a tune's rhythm/title says nothing
    style: str = ""            # caption word before the genre (composer or origin)


COLLECTIONS: tuple[Collection, ...] = (
    Collection("bach_chorales", ("bach/*.mxl",), "chorale", 2.0, "chorale", "bach"),
    Collection("ryans_mammoth", ("ryansMammoth/*.abc",), "fiddle", 2.0, "tune"),
    Collection("oneills_1850", ("oneills1850/*.abc",), "fiddle", 1.0, "tune", "irish"),
    Collection("essen_folksongs", ("essenFolksong/*.abc",), "folk", 2.0, "folk song"),
    Collection("airds_airs", ("airdsAirs/*.abc",), "air", 1.0, "air", "scottish"),
    Collection("string_quartets", ("haydn/*/*.mxl", "mozart/*/*.mxl", "beethoven/*.mxl", "beethoven/*/*.mxl"),
               "quartet", 1.5, "string quartet"),
    Collection("monteverdi_madrigals", ("monteverdi/*.mxl",), "vocal", 0.5, "madrigal", "monteverdi"),
    Collection("palestrina_masses", ("palestrina/*.krn",), "vocal", 0.5, "mass", "palestrina"),
)
BY_NAME = {c.name: c for c in COLLECTIONS}

# rhythm words found in ABC "R:" fields and titles, most specific first
_GENRES = (("slip", "slip jig"), ("jig", "jig"), ("reel", "reel"), ("hornpipe", "hornpipe"), ("strathspey", "strathspey"),
           ("fling", "highland fling"), ("clog", "clog"), ("polka", "polka"), ("waltz", "waltz"), ("minuet", "minuet"),
           ("march", "march"), ("quick step", "march"), ("quickstep", "march"), ("ballad", "ballad"), ("air", "air"))
# Essen "O:" origin keywords (most specific first) -> caption adjective
_ORIGINS = (("elsass", "alsatian"), ("lothringen", "lorraine"), ("luxemburg", "luxembourgish"), ("irland", "irish"),
            ("niederlande", "dutch"), ("flaemisch", "flemish"), ("schweiz", "swiss"), ("oesterreich", "austrian"),
            ("tirol", "austrian"), ("steiermark", "austrian"), ("boehmen", "bohemian"), ("ungarn", "hungarian"),
            ("deutschland", "german"))


@dataclass(frozen=True)
class Piece:
    id: str          # "oneills1850/0001-0050.abc#12"
    collection: str
    path: str        # corpus-relative
    number: int      # 1-based tune position in the file
    title: str
    genre: str       # "reel", "chorale", "string quartet", ...
    style: str       # "irish", "bach", "german", or ""
    group: str       # hold-out group key

    @property
    def family(self) -> str:
        return BY_NAME[self.collection].family


def corpus_root() -> Path:
    from music21 import common  # lazy: music21, an optional backend (the data extra)

    return Path(common.getCorpusFilePath())


def _norm_title(title: str) -> str:
    words = re.sub(r"[^a-z0-9 ]", " ", title.lower()).split()
    skip = {"the", "a", "an", "reel", "jig", "hornpipe", "strathspey", "clog", "fling", "air", "march", "no", "or"}
    return " ".join(w for w in words if w not in skip)


def _genre(text: str, default: str) -> str:
    text = text.lower()
    return next((g for key, g in _GENRES if re.search(rf"\b{key}", text)), default)


def _abc_tunes(text: str) -> list[dict[str, str]]:
    """Header fields (first T:, R:, O:) of each ``X:`` tune of an ABC file, in file order."""
    tunes = []
    for block in re.split(r"^(?=X:)", text, flags=re.M)[1:]:
        fields: dict[str, str] = {}
        for line in block.splitlines():
            m = re.match(r"([TRO]):\s*(.*)", line)
            if m and m.group(1) not in fields:
                fields[m.group(1)] = m.group(2).strip()
        tunes.append(fields)
    return tunes


def abc_tune_text(path: Path, number: int) -> str:
    """The text of the ``number``-th (1-based) tune of an ABC file."""
    blocks = re.split(r"^(?=X:)", path.read_text(encoding="latin-1"), flags=re.M)[1:]
    return blocks[number - 1]


def _pieces_of(coll: Collection, rel: str, root: Path) -> list[Piece]:
    if rel.endswith(".abc"):
        out = []
        for n, f in enumerate(_abc_tunes((root / rel).read_text(encoding="latin-1")), 1):
            title = f.get("T", "")
            genre = _genre(f.get("R", "") + " " + title, coll.genre)
            if coll.family == "folk":
                genre = "ballad" if "ballad" in rel else "children's song" if "kinder" in rel else "folk song"
            origin = f.get("O", "").lower()
            style = next((adj for key, adj in _ORIGINS if key in origin), coll.style)
            group = f"tune:{_norm_title(title)}" if _norm_title(title) else f"{rel}#{n}"
            out.append(Piece(f"{rel}#{n}", coll.name, rel, n, title, genre, style, group))
        return out
    stem = re.sub(r"(-[a-z0-9]+|_old)(?=\.\w+$)", "", rel)
    style = coll.style or rel.split("/")[0]
    return [Piece(f"{rel}#1", coll.name, rel, 1, Path(rel).stem, coll.genre, style, stem)]


@functools.lru_cache(maxsize=1)
def all_pieces() -> tuple[Piece, ...]:
    """Every piece of every collection, in a fixed order (collection, then path, then tune number)."""
    root = corpus_root()
    rels = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    out: list[Piece] = []
    for coll in COLLECTIONS:
        for rel in rels:
            if any(fnmatch.fnmatch(rel, pat) and rel.count("/") == pat.count("/") for pat in coll.patterns):
                out.extend(_pieces_of(coll, rel, root))
    return tuple(out)


def _unit(key: str) -> float:
    """A stable number in [0, 1) from ``key``."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) / 16 ** 12


@functools.lru_cache(maxsize=1)
def piece_splits() -> dict[str, str]:
    """Piece id -> split. Groups are ranked by a stable hash; the lowest 10% are test, the next 5% valid.

    Every collection gets at least one test group and one valid group (its lowest-ranked train groups).
    """
    out: dict[str, str] = {}
    for coll in COLLECTIONS:
        pieces = [p for p in all_pieces() if p.collection == coll.name]
        groups = sorted({p.group for p in pieces}, key=lambda g: (_unit(g), g))
        split = {g: "test" if _unit(g) < TEST_FRACTION else "valid" if _unit(g) < TEST_FRACTION + VALID_FRACTION
                 else "train" for g in groups}
        for want in ("test", "valid"):
            if want not in split.values():
                spare = [g for g in groups if split[g] == "train"]
                if len(spare) > 1:
                    split[spare[0]] = want
        out.update({p.id: split[p.group] for p in pieces})
    # a group key shared across collections (one tune title) must land in one split: test wins, then valid
    by_group: dict[str, set[str]] = {}
    for p in all_pieces():
        by_group.setdefault(p.group, set()).add(out[p.id])
    for p in all_pieces():
        s = by_group[p.group]
        out[p.id] = "test" if "test" in s else "valid" if "valid" in s else "train"
    return out


@functools.lru_cache(maxsize=1)
def split_pools() -> dict[str, dict[str, tuple[Piece, ...]]]:
    """``pools[split][collection]``: the pieces a clip of that split may use."""
    splits = piece_splits()
    pools: dict[str, dict[str, list[Piece]]] = {s: {c.name: [] for c in COLLECTIONS} for s in ("train", "valid", "test")}
    for p in all_pieces():
        pools[splits[p.id]][p.collection].append(p)
    return {s: {c: tuple(v) for c, v in d.items() if v} for s, d in pools.items()}


@dataclass(frozen=True)
class ScoreNotes:
    """The notes of a parsed piece: ``notes`` is ``[n, 4]`` float (part, midi pitch, start, end) in quarter lengths."""
    notes: np.ndarray
    length: float                  # quarter lengths
    bar_starts: tuple[float, ...]  # quarter-length offsets where measures start
    beat: float                    # quarter lengths per beat of the first time signature
    sharps: int | None             # first key signature
    key: tuple[int, str] | None    # declared (tonic pitch class, "major"|"minor"), ABC tunes only


_PARSE_LOCK = threading.Lock()  # music21 keeps module-level state; parse one score at a time


def cache_dir() -> Path:
    """Where parsed notes are kept between builds: ``$TOKENWAVE_CACHE/music-notes-v<N>-music21-<version>``.

    ``$TOKENWAVE_CACHE`` defaults to ``~/.cache/tokenwave``.
    """
    import music21  # lazy: music21, an optional backend (the data extra)

    base = Path(os.environ.get("TOKENWAVE_CACHE") or Path.home() / ".cache" / "tokenwave")
    return base / f"music-notes-v{NOTES_FORMAT}-music21-{music21.__version__}"


@functools.lru_cache(maxsize=256)
def load_notes(piece: Piece) -> ScoreNotes:
    """The notes of ``piece``: from the JSON cache in :func:`cache_dir`, else parsed with music21 and cached.

    Parsing is the slow part of a build (a whole Beethoven quartet takes ~30 s), so each piece is parsed once.
    """
    path = cache_dir() / f"{hashlib.sha1(piece.id.encode()).hexdigest()[:20]}.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("id") == piece.id:
            return ScoreNotes(np.array(d["notes"], dtype=np.float64).reshape(-1, 4), d["length"], tuple(d["bar_starts"]),
                              d["beat"], d["sharps"], None if d["key"] is None else (d["key"][0], d["key"][1]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    sn = _parse_notes(piece)
    d = {"id": piece.id, "notes": sn.notes.ravel().tolist(), "length": sn.length, "bar_starts": list(sn.bar_starts),
         "beat": sn.beat, "sharps": sn.sharps, "key": None if sn.key is None else list(sn.key)}
    try:
        atomic_write_text(path, json.dumps(d, separators=(",", ":")))
    except OSError:  # an unwritable cache only costs time
        pass
    return sn


def _parse_notes(piece: Piece) -> ScoreNotes:
    """Parse ``piece`` with music21 (ABC repeats expanded) and extract its notes."""
    from music21 import converter, harmony, key, meter  # lazy: music21, an optional backend (the data extra)

    root = corpus_root()
    with _PARSE_LOCK:
        if piece.path.endswith(".abc"):
            score = converter.parse(abc_tune_text(root / piece.path, piece.number), format="abc", forceSource=True)
            try:
                score = score.expandRepeats()
            except Exception:  # badly formed repeats: keep the score as written
                pass
        else:
            score = converter.parse(root / piece.path, forceSource=True)
        rows = []
        for i, part in enumerate(score.parts):
            for n in part.flatten().stripTies().notes:
                ql = float(n.quarterLength)
                if ql <= 0 or n.duration.isGrace or isinstance(n, harmony.Harmony):
                    continue
                rows.extend((i, p.midi, float(n.offset), float(n.offset) + ql) for p in n.pitches)
        first = score.parts[0] if score.parts else score
        bars = sorted({float(m.offset) for m in first.getElementsByClass("Measure")})
        ts = next(iter(score.recurse().getElementsByClass(meter.TimeSignature)), None)
        ks = next(iter(score.recurse().getElementsByClass(key.KeySignature)), None)
    notes = np.array(rows, dtype=np.float64).reshape(-1, 4)
    length = float(notes[:, 3].max()) if len(notes) else 0.0
    declared = None
    if isinstance(ks, key.Key) and piece.path.endswith(".abc"):
        minor = ks.mode in ("minor", "aeolian", "dorian", "phrygian", "locrian")  # modal tunes: nearest of the two
        declared = (ks.tonic.pitchClass, "minor" if minor else "major")
    beat = float(ts.beatDuration.quarterLength) if ts is not None else 1.0
    bars = bars or [float(b) for b in np.arange(0.0, length, 4.0)]
    return ScoreNotes(notes, length, tuple(bars), beat if 0.25 <= beat <= 4 else 1.0,
                      None if ks is None else int(ks.sharps), declared)
