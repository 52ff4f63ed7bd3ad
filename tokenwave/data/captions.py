"""Paraphrases of a clip's caption, for training text-conditioned generators: the same clip described in other
words and orders, naming some of its attributes and not others, so a model learns what a prompt means rather than
one template's wording.

``caption_variants(row, n, seed)``: the row's own caption first, then up to ``n - 1`` different paraphrases,
the same for the same row and seed. Synthetic music rows are re-described from their tags (tempo, style, genre,
instrument, key, mode, bpm) with several sentence shapes and synonyms; synthetic sound effects by their builder's
own grammar (:func:`tokenwave.data.sfx.describe`, which words the same parameters in several ways) in several
frames; real recordings from what their packages say (game or source, title, folder).
"""
from __future__ import annotations

import numpy as np

from tokenwave.data.sfx import FAMILIES, describe

TEMPO_WORDS = {"slow": ("slow", "unhurried", "leisurely", "gentle-paced"), "moderate": ("moderate", "mid-tempo",
               "medium-paced", "steady"), "lively": ("lively", "spirited", "bouncy"), "fast": ("fast", "quick",
               "brisk", "up-tempo")}
INSTRUMENT_WORDS = {"violin": ("violin", "fiddle"), "fiddle": ("fiddle", "violin"), "church organ": ("church organ",
                    "pipe organ"), "string ensemble": ("string ensemble", "strings", "string orchestra"),
                    "choir": ("choir", "chorus", "voices"), "acoustic guitar": ("acoustic guitar", "guitar"),
                    "steel guitar": ("steel guitar", "steel-string guitar"), "reed organ": ("reed organ", "harmonium"),
                    "brass quartet": ("brass quartet", "brass"), "woodwind quartet": ("woodwind quartet", "woodwinds"),
                    "string quartet": ("string quartet", "four strings")}
GENRE_WORDS = {"chorale": ("chorale", "hymn"), "mass": ("mass", "sacred choral piece"), "folk song": ("folk song",
               "folk tune", "traditional song"), "air": ("air", "slow air"), "string quartet": ("string quartet",
               "chamber piece"), "tune": ("tune", "melody"), "reel": ("reel",), "jig": ("jig",)}
MODE_WORDS = {"major": ("major", "bright"), "minor": ("minor", "dark")}


def _pick(rng: np.random.Generator, options) -> str:
    options = list(options)
    return options[int(rng.integers(len(options)))]


def _a(phrase: str) -> str:
    """``phrase`` with its indefinite article."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def _music_variant(row: dict, rng: np.random.Generator) -> str:
    """One paraphrase of a synthetic music row, from its tags; each attribute is named or left out at random."""
    t = row.get("tags") or {}
    keep = {f: rng.random() < 0.75 for f in ("tempo", "style", "genre", "instrument", "key", "mode", "bpm")}
    tempo = _pick(rng, TEMPO_WORDS.get(t.get("tempo", ""), (t.get("tempo", ""),))) if keep["tempo"] else ""
    style = t.get("style", "") if keep["style"] else ""
    genre = _pick(rng, GENRE_WORDS.get(t.get("genre", ""), (t.get("genre", "piece"),)))
    inst = _pick(rng, INSTRUMENT_WORDS.get(t.get("instrument", ""), (t.get("instrument", ""),)))
    key = f"{t['key']} {t.get('mode', '')}".strip() if keep["key"] and t.get("key") else ""
    mode = _pick(rng, MODE_WORDS.get(t.get("mode", ""), ("",))) if keep["mode"] and not key else ""
    bpm = f"{row['bpm']} bpm" if keep["bpm"] and row.get("bpm") else ""
    what = " ".join(w for w in (tempo, mode, style, genre) if w)
    shapes = [
        lambda: f"{_a(what)} played on {inst}" + (f" in {key}" if key else ""),
        lambda: f"{inst} playing {_a(what)}" + (f", {bpm}" if bpm else ""),
        lambda: f"{what} for {inst}" + (f" in the key of {key}" if key else ""),
        lambda: f"solo {inst}: {what}" + (f" at {bpm}" if bpm else ""),
        lambda: f"{style + ' ' if style else ''}{genre} performed on {inst}" + (f", {tempo}" if tempo else ""),
        lambda: ", ".join(w for w in (f"{genre} on {inst}", tempo and f"{tempo} tempo", key, bpm) if w),
        lambda: f"instrumental {what} featuring {inst}",
    ]
    return " ".join(_pick(rng, shapes)().split())


SFX_FRAMES = ("{c}", "the sound of {c}", "{c}, sound effect", "a recording of {c}", "sound effect: {c}", "{c} (foley)")


def _sfx_variant(row: dict, rng: np.random.Generator) -> str:
    """One paraphrase of a synthetic sound effect: its builder's grammar on the same parameters, in a frame."""
    caption, _ = describe(row["family"], row["params"], rng)
    return _pick(rng, SFX_FRAMES).format(c=caption)


def _real_variant(row: dict, rng: np.random.Generator) -> str:
    """One paraphrase of a real recording from what its package says: game or source, title or name, folder."""
    tags = row.get("tags") or {}
    title = row.get("title") or row.get("name") or ""
    if row.get("domain") == "music":
        game = row.get("game") or tags.get("game", "")
        shapes = [f"music from {game}", f"{game} soundtrack: {title}", f"a track from the {game} soundtrack",
                  f"{title}, from {game}", f"game music, {game}", f"{game} background music"]
        if tags.get("album"):
            shapes.append(f"{title} from the {tags['album']} of {game}")
        if tags.get("folder"):
            shapes.append(f"{game} {tags['folder']} level music")
    else:
        source = tags.get("source", "")
        folder = tags.get("folder", "")
        shapes = [f"{title} sound effect", f"{source}: {title}", f"the sound '{title}'", f"{title}, {_a(source)} sound"]
        if folder:
            shapes += [f"drum kit sample: {title}", f"{title} from the {folder} kit", f"{title}, {source}"]
    return " ".join(_pick(rng, [s for s in shapes if s.strip(" :,")]).split())


def caption_variants(row: dict, n: int = 8, seed: int = 0) -> list[str]:
    """A manifest row -> its caption, then up to ``n - 1`` distinct paraphrases (fewer where the row's wording runs
    out), the same for the same row and seed. Rows of unknown origin keep their caption alone."""
    caption = (row.get("caption") or "").strip()
    out = [caption] if caption else []
    if row.get("package"):
        make = _real_variant
    elif row.get("domain") == "music" and row.get("tags"):
        make = _music_variant
    elif row.get("domain") == "sfx" and row.get("family") in FAMILIES and row.get("params"):
        make = _sfx_variant
    else:
        return out
    rng = np.random.default_rng([seed, *map(ord, str(row.get("id", caption))[:32])])
    for _ in range(4 * n):
        if len(out) >= n:
            break
        v = make(row, rng)
        if v and v not in out:
            out.append(v)
    return out


__all__ = ["caption_variants"]
