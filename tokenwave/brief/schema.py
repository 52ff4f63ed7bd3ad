"""The audio brief: what a client asks for, read from YAML (or a dict) and validated field by field.

    task: music                   # tts | voice_clone | music | music_lyrics | sfx | voice_agent | dubbing
    duration: 30                  # seconds (dubbing: of the source; voice_agent: of a turn)
    style: "warm lo-fi, relaxed"  # free descriptors
    text: "..."                   # tts / voice_clone / voice_agent greeting; lyrics: for music_lyrics
    voice: {name: alice, prompt: alice.wav, consent: true, emotion: calm, pacing: slow}
    music: {genre: [lo-fi, jazz], instruments: [piano], mood: relaxed, bpm: 80, key: "F major",
            structure: [intro, verse, chorus, outro]}
    sfx: {source: rain, action: falling on a tin roof, environment: small room, distance: close, layers: [thunder]}
    license: {commercial: true, open_weights: false, attribution_ok: true}
    latency: render               # live (streaming) | render (on submit)
    hosting: {on_device: false, cpu_only: false, gpu: true, api_allowed: true}
    budget: {usd: 50}             # 0: no paid APIs
    model: tokenwave-music        # optional: pin a catalog entry
    seeds: {base: 0, candidates: 4}
    continuation: true            # may a chain extend past its longest clip chunk by chunk
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tokenwave.errors import TokenwaveError

TASKS = ("tts", "voice_clone", "music", "music_lyrics", "sfx", "voice_agent", "dubbing")
SPEECH_TASKS = ("tts", "voice_clone", "voice_agent", "dubbing")
LATENCIES = ("live", "render")
MAX_BRIEF_SECONDS = 3600.0


class BriefError(TokenwaveError):
    """A brief is malformed: a field is missing, unknown or of the wrong kind."""


class BriefConflictError(BriefError):
    """A brief asks for things that cannot all hold; ``conflicts`` lists each with its fix."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        self.conflicts = conflicts
        msg = "; ".join(f"[{i + 1}] {m}" for i, (m, _) in enumerate(conflicts))
        fix = "; ".join(f"[{i + 1}] {f}" for i, (_, f) in enumerate(conflicts))
        super().__init__(f"the brief has {len(conflicts)} conflict(s): {msg}", fix)


@dataclass
class Voice:
    name: str | None = None
    prompt: str | None = None  # reference audio for cloning
    consent: bool = False
    consent_statement: str | None = None
    emotion: str | None = None
    pacing: str | None = None  # slow | normal | fast, or words per minute


@dataclass
class Music:
    genre: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    mood: str | None = None
    bpm: float | None = None
    key: str | None = None
    structure: list[str] = field(default_factory=list)
    melody: str | None = None


@dataclass
class Sfx:
    source: str | None = None
    action: str | None = None
    environment: str | None = None
    distance: str | None = None
    layers: list[str] = field(default_factory=list)


@dataclass
class License:
    commercial: bool = False
    open_weights: bool = False
    attribution_ok: bool = True


@dataclass
class Hosting:
    on_device: bool = False
    cpu_only: bool = False
    gpu: bool = True
    api_allowed: bool = True


@dataclass
class Seeds:
    base: int = 0
    candidates: int | None = None  # None: the planner's default for the task


@dataclass
class Brief:
    task: str
    duration: float
    style: str = ""
    text: str | None = None
    lyrics: str | None = None
    language: str = "en"
    voice: Voice = field(default_factory=Voice)
    music: Music = field(default_factory=Music)
    sfx: Sfx = field(default_factory=Sfx)
    license: License = field(default_factory=License)
    latency: str = "render"
    hosting: Hosting = field(default_factory=Hosting)
    budget_usd: float | None = None  # None: no limit stated
    model: str | None = None
    seeds: Seeds = field(default_factory=Seeds)
    continuation: bool = True
    source: str | None = None  # where the brief was read from

    @property
    def clones_voice(self) -> bool:
        return self.task == "voice_clone" or bool(self.voice.prompt)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d


_SECTIONS = {"voice": Voice, "music": Music, "sfx": Sfx, "license": License, "hosting": Hosting, "seeds": Seeds}
_TOP = {"task", "duration", "style", "text", "lyrics", "language", "voice", "music", "sfx", "license", "latency",
        "hosting", "budget", "model", "seeds", "continuation"}


def _typed(section: str, key: str, value: Any, kind: Any) -> Any:
    where = f"{section}.{key}" if section else key
    text = str(kind)
    if "bool" in text and "int" not in text:
        if not isinstance(value, bool):
            raise BriefError(f"{where} must be true or false, got {value!r}", f"write `{key}: true` or `{key}: false`")
        return value
    if "list" in text:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
            raise BriefError(f"{where} must be a list of words, got {value!r}", f"write `{key}: [a, b]`")
        return [str(v) for v in value]
    if "float" in text or ("int" in text and "str" not in text):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BriefError(f"{where} must be a number, got {value!r}", f"write `{key}: 120`")
        return int(value) if "int" in text and "float" not in text else float(value)
    if value is None:
        return None
    if not isinstance(value, (str, int, float)):
        raise BriefError(f"{where} must be text, got {value!r}", f"write `{key}: \"...\"`")
    return str(value)


def _section(name: str, cls, raw: Any):
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise BriefError(f"`{name}` must be a mapping, got {raw!r}", f"write `{name}: {{key: value, ...}}`")
    fields = cls.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise BriefError(f"unknown field(s) in `{name}`: {', '.join(unknown)}", f"use {', '.join(fields)}")
    return cls(**{k: _typed(name, k, v, fields[k].type) for k, v in raw.items() if v is not None})


def parse_brief(raw: dict, source: str | None = None) -> Brief:
    """Validate a brief given as a dict (as read from YAML); raises :class:`BriefError` naming the field."""
    if not isinstance(raw, dict):
        raise BriefError("a brief must be a YAML mapping of fields", "start from an example: task, duration, style, ...")
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise BriefError(f"unknown field(s): {', '.join(unknown)}", f"use {', '.join(sorted(_TOP))}")
    task = raw.get("task")
    if task not in TASKS:
        raise BriefError(f"task must be one of {', '.join(TASKS)}, got {task!r}", "write e.g. `task: music`")
    if "duration" not in raw:
        raise BriefError("the brief has no duration", "write `duration: SECONDS`")
    duration = _typed("", "duration", raw["duration"], "float")
    if not 0 < duration <= MAX_BRIEF_SECONDS:
        raise BriefError(f"duration must be within 0..{MAX_BRIEF_SECONDS:g} s, got {duration:g}", "write e.g. `duration: 30`")
    latency = raw.get("latency", "render")
    aliases = {"streaming": "live", "realtime": "live", "real-time": "live", "offline": "render", "batch": "render"}
    latency = aliases.get(latency, latency)
    if latency not in LATENCIES:
        raise BriefError(f"latency must be live or render, got {raw.get('latency')!r}",
                         "write `latency: live` (streaming) or `latency: render` (on submit)")
    budget = raw.get("budget")
    if isinstance(budget, dict):
        if set(budget) - {"usd"}:
            raise BriefError(f"unknown field(s) in `budget`: {', '.join(sorted(set(budget) - {'usd'}))}", "write `budget: {usd: 50}`")
        budget = budget.get("usd")
    if budget is not None:
        budget = _typed("budget", "usd", budget, "float")
        if budget < 0:
            raise BriefError(f"budget must not be negative, got {budget:g}", "write `budget: {usd: 0}` for free only")
    brief = Brief(
        task=task, duration=duration, latency=latency, budget_usd=budget,
        style=_typed("", "style", raw.get("style", ""), "str") or "",
        text=_typed("", "text", raw.get("text"), "str"), lyrics=_typed("", "lyrics", raw.get("lyrics"), "str"),
        language=_typed("", "language", raw.get("language", "en"), "str"),
        model=_typed("", "model", raw.get("model"), "str"),
        continuation=_typed("", "continuation", raw.get("continuation", True), "bool"),
        source=source, **{k: _section(k, cls, raw.get(k)) for k, cls in _SECTIONS.items()})
    if task in ("tts", "voice_clone") and not brief.text:
        raise BriefError(f"a {task} brief needs the text to speak", "write `text: \"...\"`")
    if task == "music_lyrics" and not brief.lyrics:
        raise BriefError("a music_lyrics brief needs lyrics", "write `lyrics: |` followed by the lines, or use task: music")
    if task == "voice_clone" and not brief.voice.prompt:
        raise BriefError("a voice_clone brief needs the reference audio", "write `voice: {prompt: speaker.wav, consent: true}`")
    if brief.seeds.candidates is not None and not 1 <= brief.seeds.candidates <= 64:
        raise BriefError(f"seeds.candidates must be within 1..64, got {brief.seeds.candidates}", "write e.g. `candidates: 4`")
    if brief.music.bpm is not None and not 20 <= brief.music.bpm <= 300:
        raise BriefError(f"music.bpm must be within 20..300, got {brief.music.bpm:g}", "write e.g. `bpm: 120`")
    return brief


def load_brief(path: str | os.PathLike) -> Brief:
    """Read and validate a YAML (or JSON) brief file."""
    path = Path(path)
    if not path.is_file():
        raise BriefError(f"no brief at {path}", "pass the path of a YAML brief (see outputs/skill-audio-brief.md)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise BriefError(f"{path} is not valid YAML: {str(err).splitlines()[0]}", "fix the YAML syntax") from None
    return parse_brief(raw, str(path))
