"""Sound-effects dataset builder: procedural recipes (``sfx_recipes``) with random parameters, captions built
from those parameters, and held-out parameter ranges, at 24 kHz mono.

Clip ``i`` takes its family from a seed-shuffled round robin (every family once per block of
``len(FAMILIES)`` clips), its split from ``split_schedule(i)`` and all its randomness from
``np.random.default_rng([seed, i, ...])``, so a build is bit-identical under a seed. For each family one
parameter range (``HELD_OUT``) is reserved for the test split: test clips draw that parameter inside the
range, train and valid clips outside it.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokenwave import SAMPLE_RATE
from tokenwave.audio import loudness_normalize
from tokenwave.data.sfx_recipes import RECIPES
from tokenwave.data.writer import DatasetWriter, check_audio, check_minutes, render_in_order, split_schedule
from tokenwave.errors import InvalidArgumentError
from tokenwave.progress import progress_bar

MIN_SECONDS, MAX_SECONDS = 3.0, 8.0
TARGET_LUFS = -20.0


@dataclass(frozen=True)
class Param:
    """A parameter's training distribution: ``uniform`` / ``log`` floats or ``int`` / ``logint`` in [lo, hi], or ``choice``."""

    kind: str
    lo: float = 0.0
    hi: float = 0.0
    options: tuple = ()


def U(lo: float, hi: float) -> Param:
    return Param("uniform", lo, hi)


def L(lo: float, hi: float) -> Param:
    return Param("log", lo, hi)


def I(lo: int, hi: int, log: bool = False) -> Param:  # noqa: E743
    return Param("logint" if log else "int", lo, hi)


def C(*options: Any) -> Param:
    """A choice; repeat an option to weight it."""
    return Param("choice", options=options)


#: Per family, the one parameter range that only the test split ever sees (inclusive bounds).
HELD_OUT: dict[str, dict[str, Any]] = {
    "rain": {"param": "intensity", "range": [0.85, 1.0]},
    "wind": {"param": "gustiness", "range": [0.45, 0.6]},
    "footsteps": {"param": "pace", "range": [2.2, 2.6], "unit": "steps/s"},
    "knock": {"param": "rate", "range": [5.0, 6.0], "unit": "knocks/s"},
    "bell": {"param": "pitch", "range": [480.0, 600.0], "unit": "Hz"},
    "engine": {"param": "rpm", "range": [2800.0, 3400.0], "unit": "rpm"},
    "siren": {"param": "speed", "range": [0.4, 0.6], "unit": "0-1 within the mode's sweep-rate range"},
    "clock": {"param": "tempo", "range": [1.6, 2.0], "unit": "ticks/s"},
    "drip": {"param": "pitch", "range": [1400.0, 1800.0], "unit": "Hz"},
    "whoosh": {"param": "sweep", "range": [0.9, 1.2], "unit": "s"},
    "thunder": {"param": "distance", "range": [0.9, 1.0], "unit": "0 close - 1 distant"},
    "typing": {"param": "speed", "range": [8.0, 10.0], "unit": "keys/s"},
    "fire": {"param": "crackle", "range": [0.0, 0.15]},
    "birds": {"param": "pitch", "range": [4500.0, 5500.0], "unit": "Hz"},
    "phone": {"param": "pitch", "range": [1500.0, 1800.0], "unit": "Hz"},
    "applause": {"param": "crowd", "range": [40, 60], "unit": "people"},
}

SPACES: dict[str, dict[str, Param]] = {
    "rain": {"intensity": U(0.1, 1.0), "density": L(20, 250), "surface": C("tin roof", "leaves", "window", "pavement"),
             "layer": C("none", "none", "thunder")},
    "wind": {"strength": U(0.0, 1.0), "gustiness": U(0.0, 1.0), "whistle": C("no", "no", "yes"), "layer": C("none", "none", "rain")},
    "footsteps": {"surface": C("gravel", "wood", "concrete", "snow"), "pace": U(0.8, 3.2), "count": I(3, 14)},
    "knock": {"knocks": I(2, 5), "groups": I(1, 2), "rate": U(2.5, 8.0), "material": C("wood", "wood", "metal")},
    "bell": {"pitch": L(150, 1500), "inharmonic": U(0.0, 1.0), "decay": U(1.0, 6.0), "mode": C("single", "ringing"),
             "strike_rate": U(0.5, 1.5)},
    "engine": {"rpm": L(700, 6000), "cylinders": C(2, 4, 6, 8), "mode": C("steady", "revving")},
    "siren": {"mode": C("wail", "yelp", "hilo"), "speed": U(0.0, 1.0), "base": U(550, 850), "distance": U(0.0, 1.0)},
    "clock": {"tempo": U(0.8, 3.0), "pitch": L(1500, 5000), "tock_ratio": U(0.7, 0.95)},
    "drip": {"rate": L(0.3, 4.0), "pitch": L(400, 3000), "cave": C("no", "yes"), "regularity": U(0.0, 1.0)},
    "whoosh": {"sweep": U(0.2, 2.0), "direction": C("rising", "falling"), "count": I(1, 3)},
    "thunder": {"distance": U(0.0, 1.0), "layer": C("none", "rain")},
    "typing": {"speed": U(2.0, 14.0), "style": C("mechanical", "soft")},
    "fire": {"crackle": U(0.0, 1.0), "roar": U(0.0, 1.0)},
    "birds": {"pitch": L(1500, 8000), "rate": U(0.5, 5.0), "style": C("tweet", "trill", "warble"), "birds": I(1, 3),
              "layer": C("none", "none", "wind")},
    "phone": {"style": C("bell", "electronic"), "pitch": U(700, 2800), "cadence": C("single", "double")},
    "applause": {"crowd": I(3, 300, log=True), "intensity": U(0.0, 1.0)},
}

# ---------------------------------------------------------------- sampling


def _sample(p: Param, rng: np.random.Generator, intervals: list[tuple[float, float]] | None = None) -> Any:
    """Draw from ``p``, optionally restricted to ``intervals`` (chosen in proportion to their length on p's scale)."""
    if p.kind == "choice":
        v = p.options[int(rng.integers(len(p.options)))]
        return v.item() if isinstance(v, np.generic) else v
    intervals = intervals or [(p.lo, p.hi)]
    is_int, is_log = p.kind in ("int", "logint"), p.kind in ("log", "logint")
    # an int interval [a, b] is drawn as the continuous [a, b + 1) and floored
    span = [(a, b + 1 if is_int else b) for a, b in intervals]
    scale = np.log if is_log else (lambda v: v)
    widths = np.array([scale(b) - scale(a) for a, b in span])
    k = int(rng.choice(len(span), p=widths / widths.sum())) if len(span) > 1 else 0
    a, b = span[k]
    v = float(rng.uniform(scale(a), scale(b)))
    v = math.exp(v) if is_log else v
    if is_int:
        return int(min(max(math.floor(v), intervals[k][0]), intervals[k][1]))
    return float(min(max(round(v, 4), intervals[k][0]), intervals[k][1]))


def _held_intervals(p: Param, lo: float, hi: float, inside: bool) -> list[tuple[float, float]]:
    if p.kind in ("int", "logint"):
        if inside:
            return [(math.ceil(lo), math.floor(hi))]
        parts = [(p.lo, math.ceil(lo) - 1), (math.floor(hi) + 1, p.hi)]
        return [(a, b) for a, b in parts if a <= b]
    eps = 1e-3  # margin so that rounding to 4 decimals can never cross a boundary
    if inside:
        return [(lo + eps, hi - eps)]
    return [(a, b) for a, b in [(p.lo, lo - eps), (hi + eps, p.hi)] if b - a > 1e-9]


def sample_params(family: str, rng: np.random.Generator, held_out: bool = False) -> dict[str, Any]:
    """Random parameters for one clip of ``family``; the ``HELD_OUT`` parameter inside its range iff ``held_out``."""
    params: dict[str, Any] = {"duration": round(float(rng.uniform(MIN_SECONDS, MAX_SECONDS)), 3)}
    held = HELD_OUT[family]
    for name, p in SPACES[family].items():
        if name == held["param"]:
            params[name] = _sample(p, rng, _held_intervals(p, *held["range"], inside=held_out))
        else:
            params[name] = _sample(p, rng)
    params["reverb"] = 0.0 if rng.random() < 0.5 else round(float(rng.uniform(0.1, 0.5)), 3)
    room = round(float(rng.uniform(0.3, 2.5)), 3)
    if params["reverb"] > 0:
        params["room"] = room
    if family == "footsteps":  # only as many steps as fit in the clip
        params["count"] = max(2, min(params["count"], int((params["duration"] - 0.8) * params["pace"]) + 1))
    elif family == "bell" and params["mode"] == "single":
        del params["strike_rate"]
    elif family == "drip" and params["cave"] == "yes":
        params["reverb"], params["room"] = round(float(rng.uniform(0.45, 0.7)), 3), round(float(rng.uniform(2.0, 4.0)), 3)
    return params


# ---------------------------------------------------------------- captions and tags

def _pick(rng: np.random.Generator, *options: str) -> str:
    return options[int(rng.integers(len(options)))]


def _band(v: float, cuts: tuple[float, ...], names: tuple[str, ...]) -> str:
    return names[int(np.searchsorted(cuts, v, side="right"))]


_NUM = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def _space(p: dict, rng: np.random.Generator) -> str:
    if p.get("reverb", 0) <= 0:
        return ""
    if p.get("room", 0) >= 1.5:
        return _pick(rng, " in a large hall", ", with a long echo", ", reverberant")
    return _pick(rng, " in a small room", ", with slight reverb", ", in a room")


@dataclass(frozen=True)
class Family:
    name: str
    bands: Callable[[dict], dict[str, str]]  # parameter-derived tags
    caption: Callable[[dict, dict, np.random.Generator], str]  # (params, bands, rng) -> caption without the room
    words: tuple[str, ...] = field(default=())  # every caption contains one of these


def _cap_rain(p, b, r):
    adj = _pick(r, *{"light": ("light", "gentle", "soft"), "moderate": ("steady", "moderate"),
                     "heavy": ("heavy", "pouring", "torrential")}[b["intensity"]])
    surf = _pick(r, *{"tin roof": ("on a tin roof", "drumming on a metal roof"), "leaves": ("on leaves", "falling on foliage"),
                      "window": ("against a window", "on a window pane"), "pavement": ("on pavement", "on a city street")}[p["surface"]])
    s = _pick(r, f"{adj} rain {surf}", f"{adj} rainfall {surf}", f"rain {surf}, {adj}")
    return s + (_pick(r, " with distant thunder", ", thunder rumbling in the distance") if p["layer"] == "thunder" else "")


def _cap_wind(p, b, r):
    noun = _pick(r, *{"gentle": ("gentle breeze", "light wind"), "moderate": ("moderate wind", "wind"),
                      "strong": ("strong wind", "howling wind", "gale-force wind")}[b["strength"]])
    g = {"steady": ("steady", "steadily"), "variable": ("shifting", "unevenly"), "gusty": ("gusty", "in gusts")}[b["gustiness"]]
    s = _pick(r, f"{g[0]} {noun}", f"{noun} blowing {g[1]}")
    s += " whistling through a gap" if p["whistle"] == "yes" else ""
    return s + (_pick(r, " with light rain", " and a little rain") if p["layer"] == "rain" else "")


def _cap_footsteps(p, b, r):
    pw = _pick(r, *{"slow": ("slow", "unhurried"), "medium": ("steady", "walking"), "fast": ("fast", "hurried", "quick")}[b["pace"]])
    surf = _pick(r, *{"gravel": ("on gravel", "on a gravel path"), "wood": ("on a wooden floor", "on wooden boards"),
                      "concrete": ("on concrete", "on a concrete floor"), "snow": ("in snow", "on crunchy snow")}[p["surface"]])
    s = _pick(r, f"{pw} footsteps {surf}", f"{pw} steps {surf}", f"footsteps {surf}, {pw}")
    return ("a few " + s) if p["count"] < 5 and not s.startswith("footsteps") else s


def _cap_knock(p, b, r):
    rate = _pick(r, *{"slow": ("slow",), "medium": ("firm", "steady"), "fast": ("rapid", "quick")}[b["speed"]])
    mat = "wooden" if p["material"] == "wood" else _pick(r, "metal", "steel")
    s = _pick(r, f"{_NUM[p['knocks']]} {rate} knocks on a {mat} door", f"{rate} knocking on a {mat} door")
    return s + (_pick(r, ", twice", ", repeated") if p["groups"] > 1 else "")


def _cap_bell(p, b, r):
    pw = _pick(r, *{"low": ("low", "deep"), "mid": ("mid", "medium"), "high": ("high", "bright")}[b["pitch"]])
    kind = _pick(r, *{"low": ("church bell", "large bell"), "mid": ("bell", "tower bell"), "high": ("small bell", "handbell")}[b["pitch"]])
    mode = _pick(r, "struck once", "single strike") if p["mode"] == "single" else _pick(r, "ringing", "tolling")
    return _pick(r, f"{kind} {mode}, {pw} pitch, {b['decay']} decay", f"{pw}-pitched {kind} {mode} with a {b['decay']} decay")


def _cap_engine(p, b, r):
    cyl = {2: _pick(r, "twin-cylinder motorcycle", "motorbike"), 4: _pick(r, "four-cylinder car", "small car"),
           6: "six-cylinder", 8: _pick(r, "V8", "big V8")}[p["cylinders"]]
    if p["mode"] == "revving":
        act = _pick(r, f"revving to {b['rpm']} rpm", f"revving up, {b['rpm']} rpm")
    else:
        act = {"low": _pick(r, "idling", "idling at low rpm"), "mid": "running at mid revs", "high": "running at high revs"}[b["rpm"]]
    return _pick(r, f"{cyl} engine {act}", f"the engine of a {cyl} {act}" if p["cylinders"] != 6 else f"{cyl} engine {act}")


def _cap_siren(p, b, r):
    veh = _pick(r, "police", "ambulance", "fire engine", "emergency")
    sp = {"slow": "slow", "medium": "moderate", "fast": "fast"}[b["speed"]]
    if p["mode"] == "hilo":
        s = _pick(r, f"{veh} siren in hi-lo two-tone, {sp}", f"{sp} hi-lo {veh} siren")
    else:
        mw = "wailing" if p["mode"] == "wail" else "yelping"
        s = _pick(r, f"{veh} siren {mw}, {sp}", f"{sp} {mw} {veh} siren")
    return s + (_pick(r, " in the distance", ", far away") if b["distance"] == "far" else "")


def _cap_clock(p, b, r):
    tw = {"slow": ("slow", "slowly"), "medium": ("steady", "steadily"), "fast": ("fast", "quickly")}[b["tempo"]]
    tone = _pick(r, "bright", "sharp") if b["pitch"] == "high" else _pick(r, "dull", "woody")
    return _pick(r, f"{tw[0]} ticking clock, {tone} ticks", f"clock ticking {tw[1]}", f"{tone} tick-tock of a clock, {tw[0]}")


def _cap_drip(p, b, r):
    rw = {"slow": ("slow", "slowly"), "medium": ("steady", "steadily"), "fast": ("fast", "quickly")}[b["rate"]]
    s = _pick(r, f"water dripping {rw[1]}, {b['pitch']} pitch", f"{rw[0]} drips of water, {b['pitch']} pitched",
              f"{b['pitch']}-pitched water drips, {rw[0]}")
    return s + (_pick(r, " in a cave", ", echoing in a cave") if p["cave"] == "yes" else "")


def _cap_whoosh(p, b, r):
    sp = b["speed"]
    noun = {1: f"a {sp} " + _pick(r, "whoosh", "swoosh"), 2: f"two {sp} whooshes", 3: f"three {sp} whooshes"}[p["count"]]
    up = p["direction"] == "rising"
    return _pick(r, f"{noun} sweeping {'upward' if up else 'downward'}", f"{noun}, {'rising' if up else 'falling'} in pitch")


def _cap_thunder(p, b, r):
    s = _pick(r, *{"close": ("close thunder crack", "loud thunderclap overhead", "sharp crack of thunder"),
                   "medium": ("thunder rolling", "rolling thunder"),
                   "distant": ("distant thunder rumble", "thunder rumbling far away", "far-off rumble of thunder")}[b["distance"]])
    return s + (_pick(r, " with rain", " during a rainstorm") if p["layer"] == "rain" else "")


def _cap_typing(p, b, r):
    sp = {"slow": ("slow", "slowly"), "medium": ("steady", "steadily"), "fast": ("fast", "quickly")}[b["speed"]]
    kb = _pick(r, "mechanical", "clicky mechanical") if p["style"] == "mechanical" else _pick(r, "soft laptop", "quiet")
    return _pick(r, f"{sp[0]} typing on a {kb} keyboard", f"someone typing {sp[1]} on a {kb} keyboard")


def _cap_fire(p, b, r):
    cr = _pick(r, *{"sparse": ("gently crackling", "softly crackling"), "medium": ("crackling",),
                    "dense": ("loudly crackling", "popping and crackling")}[b["crackle"]])
    noun = _pick(r, *{"small": ("small campfire", "fireplace fire"), "medium": ("campfire", "fire"),
                      "large": ("roaring fire", "big bonfire")}[b["size"]])
    return _pick(r, f"{cr} {noun}", f"{noun}, {cr}")


def _cap_birds(p, b, r):
    who = {1: "a bird", 2: "two birds", 3: "birds"}[p["birds"]]
    st = {"tweet": _pick(r, "chirping", "tweeting"), "trill": "trilling", "warble": "warbling"}[p["style"]]
    s = _pick(r, f"{who} {st}, {b['pitch']} pitch", f"{who} {st} {'often' if b['rate'] == 'busy' else 'now and then'}")
    return s + (" in a light breeze" if p["layer"] == "wind" else "")


def _cap_phone(p, b, r):
    s = _pick(r, "old telephone ringing", "rotary phone bell ringing") if p["style"] == "bell" else \
        _pick(r, "electronic phone ringtone", "cordless phone ringing")
    cad = _pick(r, ", double ring", " with a double-ring cadence") if p["cadence"] == "double" else _pick(r, ", long rings", "")
    return s + cad + f", {b['pitch']} pitch"


def _cap_applause(p, b, r):
    who = _pick(r, *{"small": ("small group clapping", "a few people clapping"), "medium": ("audience applauding", "a room of people clapping"),
                     "large": ("large crowd applauding", "big audience applause")}[b["crowd"]])
    how = {"polite": ", politely", "moderate": "", "enthusiastic": _pick(r, ", enthusiastically", ", wildly")}[b["intensity"]]
    return who + how


_SPEED3 = ("slow", "medium", "fast")
FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("rain", lambda p: {"intensity": _band(p["intensity"], (0.35, 0.65), ("light", "moderate", "heavy")),
                              "surface": p["surface"], "thunder": "yes" if p["layer"] == "thunder" else "no"}, _cap_rain, ("rain",)),
    Family("wind", lambda p: {"strength": _band(p["strength"], (0.35, 0.7), ("gentle", "moderate", "strong")),
                              "gustiness": _band(p["gustiness"], (0.3, 0.65), ("steady", "variable", "gusty")),
                              "whistle": p["whistle"], "rain": "yes" if p["layer"] == "rain" else "no"}, _cap_wind, ("wind", "breeze")),
    Family("footsteps", lambda p: {"pace": _band(p["pace"], (1.3, 2.0), _SPEED3), "surface": p["surface"]},
           _cap_footsteps, ("footsteps", "steps")),
    Family("knock", lambda p: {"speed": _band(p["rate"], (3.5, 6.5), _SPEED3), "material": p["material"]}, _cap_knock, ("knock",)),
    Family("bell", lambda p: {"pitch": _band(p["pitch"], (350, 800), ("low", "mid", "high")),
                              "decay": _band(p["decay"], (2.0, 3.5), ("short", "medium", "long")), "mode": p["mode"]},
           _cap_bell, ("bell",)),
    Family("engine", lambda p: {"rpm": _band(p["rpm"], (1500, 3800), ("low", "mid", "high")), "cylinders": str(p["cylinders"]),
                                "mode": p["mode"]}, _cap_engine, ("engine",)),
    Family("siren", lambda p: {"mode": p["mode"], "speed": _band(p["speed"], (0.33, 0.67), _SPEED3),
                               "distance": "far" if p["distance"] >= 0.6 else "near"}, _cap_siren, ("siren",)),
    Family("clock", lambda p: {"tempo": _band(p["tempo"], (1.2, 2.2), _SPEED3), "pitch": "high" if p["pitch"] >= 2500 else "low"},
           _cap_clock, ("clock",)),
    Family("drip", lambda p: {"rate": _band(p["rate"], (1.0, 2.5), _SPEED3), "pitch": _band(p["pitch"], (900, 2000), ("low", "mid", "high")),
                              "cave": p["cave"]}, _cap_drip, ("drip",)),
    Family("whoosh", lambda p: {"speed": _band(p["sweep"], (0.6, 1.3), ("fast", "medium", "slow")), "direction": p["direction"]},
           _cap_whoosh, ("whoosh", "swoosh")),
    Family("thunder", lambda p: {"distance": _band(p["distance"], (0.35, 0.65), ("close", "medium", "distant")),
                                 "rain": "yes" if p["layer"] == "rain" else "no"}, _cap_thunder, ("thunder",)),
    Family("typing", lambda p: {"speed": _band(p["speed"], (5.0, 10.5), _SPEED3), "style": p["style"]}, _cap_typing, ("typing",)),
    Family("fire", lambda p: {"crackle": _band(p["crackle"], (0.35, 0.7), ("sparse", "medium", "dense")),
                              "size": _band(p["roar"], (0.4, 0.7), ("small", "medium", "large"))}, _cap_fire, ("fire",)),
    Family("birds", lambda p: {"pitch": _band(p["pitch"], (3000, 6000), ("low", "mid", "high")), "style": p["style"],
                               "rate": "busy" if p["rate"] >= 2.5 else "sparse"}, _cap_birds, ("bird",)),
    Family("phone", lambda p: {"style": p["style"], "cadence": p["cadence"],
                               "pitch": _band(p["pitch"], (1200, 2000), ("low", "mid", "high"))}, _cap_phone, ("phone",)),
    Family("applause", lambda p: {"crowd": _band(p["crowd"], (20, 100), ("small", "medium", "large")),
                                  "intensity": _band(p["intensity"], (0.35, 0.7), ("polite", "moderate", "enthusiastic"))},
           _cap_applause, ("applau", "clapping")),
]}
assert set(FAMILIES) == set(SPACES) == set(HELD_OUT) == set(RECIPES)


def describe(family: str, params: dict, rng: np.random.Generator) -> tuple[str, dict[str, str]]:
    """Caption and tags for a clip (the rng picks among equivalent wordings)."""
    fam = FAMILIES[family]
    bands = fam.bands(params)
    caption = fam.caption(params, bands, rng)
    if not (family == "drip" and params.get("cave") == "yes"):
        caption += _space(params, rng)
    tags = {"family": family, **bands, "reverb": "yes" if params.get("reverb", 0) > 0 else "no"}
    if params.get("reverb", 0) > 0:
        tags["room"] = "large" if params.get("room", 0) >= 1.5 else "small"
    return caption, tags


# ---------------------------------------------------------------- plan, render, build

@dataclass(frozen=True)
class Clip:
    index: int
    clip_id: str
    family: str
    split: str
    params: dict
    caption: str
    tags: dict

    @property
    def duration(self) -> float:
        return round(float(self.params["duration"]) * SAMPLE_RATE) / SAMPLE_RATE


def family_of(seed: int, index: int) -> str:
    """Seed-shuffled round robin: each block of ``len(FAMILIES)`` clips holds every family once."""
    names = list(FAMILIES)
    block, pos = divmod(index, len(names))
    return names[int(np.random.default_rng([seed, block, 7]).permutation(len(names))[pos])]


def plan_clip(seed: int, index: int) -> Clip:
    """Family, split, parameters, caption and tags of clip ``index`` (cheap: nothing is rendered)."""
    rng = np.random.default_rng([seed, index, 0])
    family, split = family_of(seed, index), split_schedule(index)
    params = sample_params(family, rng, held_out=split == "test")
    caption, tags = describe(family, params, rng)
    return Clip(index, f"fx-{index:06d}", family, split, params, caption, tags)


def render_clip(clip: Clip, seed: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Audio of a planned clip: the recipe, loudness-normalised to -20 LUFS (peak <= 0.99), checked."""
    wav = RECIPES[clip.family](np.random.default_rng([seed, clip.index, 1]), clip.params, sr)
    return check_audio(loudness_normalize(wav, sr, TARGET_LUFS, peak=0.99), clip.clip_id)


def _plan(seed: int, seconds: float) -> Iterator[Clip]:
    total, index = 0.0, 0
    while total < seconds:
        clip = plan_clip(seed, index)
        yield clip
        total += clip.duration
        index += 1


def build_sfx(out: str | Path, minutes: float, seed: int = 0, overwrite: bool = False, workers: int = 2) -> Path:
    """Build a procedural sound-effects dataset of about ``minutes`` of audio at ``out``; returns the folder.

    Rows carry ``caption``, ``tags`` (family and parameter bands, reverb), ``family`` and ``params`` (the
    recipe's parameters, enough to re-render the clip with ``render_clip``).
    """
    minutes = check_minutes(minutes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidArgumentError(f"--seed must be a non-negative integer, got {seed!r}", "pass e.g. --seed 0")
    info = {"builder": "sfx", "seed": int(seed), "minutes": minutes, "families": list(FAMILIES), "held_out": HELD_OUT,
            "loudness_lufs": TARGET_LUFS, "clip_seconds": [MIN_SECONDS, MAX_SECONDS]}
    target = minutes * 60.0
    total = 0.0
    with DatasetWriter(out, "sfx", info, overwrite=overwrite) as writer, progress_bar("sfx", total=target, unit="s") as bar:
        clips = render_in_order(_plan(int(seed), target), lambda c: render_clip(c, int(seed)), workers=max(1, int(workers)))
        try:
            for clip, wav in clips:
                row = writer.add(wav, clip.split, clip.clip_id, caption=clip.caption, tags=clip.tags,
                                 family=clip.family, params=clip.params)
                bar.advance(min(row["duration"], max(0.0, target - total)))
                total += row["duration"]
        finally:
            clips.close()
    return writer.out
