"""The model catalog (``catalog.yaml`` beside this file): entries, and the rules that say whether one fits a brief."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from tokenwave.brief.schema import Brief, BriefError

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
KINDS = ("tokenwave", "open-weights", "api")
BACKBONES = ("token-ar", "flow-matching", "diffusion", "non-ar-tts", "speech-to-speech")


@dataclass(frozen=True)
class ModelEntry:
    id: str
    name: str
    vendor: str
    kind: str
    tasks: tuple[str, ...]
    backbone: str
    latency: str  # streaming | render
    license: str
    commercial: bool
    open_weights: bool
    attribution: bool
    hosting: tuple[str, ...]
    cost: str
    max_seconds: float
    continuation: bool
    chain: dict
    sources: tuple[str, ...]

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        for k in ("tasks", "hosting", "sources"):
            d[k] = list(d[k])
        return d


@dataclass(frozen=True)
class Catalog:
    as_of: str
    models: tuple[ModelEntry, ...]

    def get(self, model_id: str) -> ModelEntry:
        for m in self.models:
            if m.id == model_id:
                return m
        raise BriefError(f"no model {model_id!r} in the catalog",
                         f"pick one of {', '.join(m.id for m in self.models)} (or drop `model:` to let the planner choose)")

    def for_task(self, task: str) -> list[ModelEntry]:
        return [m for m in self.models if task in m.tasks]


@lru_cache(maxsize=4)
def load_catalog(path: str | None = None) -> Catalog:
    """Read and check the catalog (default: the packaged ``catalog.yaml``)."""
    raw = yaml.safe_load(Path(path or CATALOG_PATH).read_text(encoding="utf-8"))
    models = []
    for m in raw["models"]:
        entry = ModelEntry(**{**m, "tasks": tuple(m["tasks"]), "hosting": tuple(m["hosting"]),
                              "sources": tuple(m["sources"]), "max_seconds": float(m["max_seconds"])})
        if entry.kind not in KINDS or entry.backbone not in BACKBONES or entry.latency not in ("streaming", "render"):
            raise ValueError(f"catalog entry {entry.id}: bad kind/backbone/latency")
        if not entry.sources:
            raise ValueError(f"catalog entry {entry.id} names no source")
        models.append(entry)
    if len({m.id for m in models}) != len(models):
        raise ValueError("catalog ids must be unique")
    return Catalog(str(raw["as_of"]), tuple(models))


def misfits(m: ModelEntry, brief: Brief) -> list[tuple[str, str, str]]:
    """Every reason ``m`` cannot carry out ``brief``: ``(rule, message, fix)``; empty when it fits.
    Rules: task, consent is checked on the brief itself (see plan.check_brief)."""
    out = []
    if brief.task not in m.tasks:
        out.append(("task", f"{m.id} does not do {brief.task}", "pick a model whose tasks include it"))
    if brief.clones_voice and "voice_clone" not in m.tasks and brief.task != "dubbing":
        out.append(("task", f"{m.id} cannot clone a voice from a prompt", "pick a voice-cloning model or drop voice.prompt"))
    lic = brief.license
    if lic.commercial and not m.commercial:
        out.append(("license", f"commercial use with {m.id}, whose licence is non-commercial ({m.license})",
                    "choose a commercially licensed model, or mark the brief `license: {commercial: false}`"))
    if lic.open_weights and not m.open_weights:
        out.append(("license", f"open weights required but {m.id} is an API without downloadable weights",
                    "choose an open-weights model or allow APIs"))
    if not lic.attribution_ok and m.attribution:
        out.append(("license", f"{m.id} requires attribution ({m.license}) and the brief rules it out",
                    "allow attribution or choose a model without it"))
    if brief.latency == "live" and m.latency != "streaming":
        out.append(("latency", f"live latency with {m.id}, a render-only chain ({m.backbone}: it renders the whole clip "
                    "on submit, so no audio plays before the end)", "use a streaming token-AR chain, or set `latency: render`"))
    host = brief.hosting
    if "api" in m.hosting and not host.api_allowed:
        out.append(("hosting", f"{m.id} runs only as a hosted API and the brief allows no API",
                    "allow APIs or pick a self-hosted model"))
    if host.on_device and "on-device" not in m.hosting:
        out.append(("hosting", f"{m.id} does not run on-device", "pick a model listed for on-device hosting"))
    if host.cpu_only and "cpu" not in m.hosting and "api" not in m.hosting:
        out.append(("hosting", f"{m.id} needs a GPU and the brief is CPU-only", "allow a GPU or pick a CPU-capable model"))
    if not host.gpu and not host.cpu_only and set(m.hosting) <= {"gpu"}:
        out.append(("hosting", f"{m.id} needs a GPU and the brief has none", "allow a GPU"))
    if brief.budget_usd == 0 and m.cost == "paid":
        out.append(("budget", f"{m.id} is a paid API and the budget is 0", "raise the budget or pick a free model"))
    if brief.duration > m.max_seconds and not (m.continuation and brief.continuation):
        why = "the chain has no continuation" if not m.continuation else "the brief rules out continuation"
        out.append(("duration", f"{brief.duration:g} s is beyond {m.id}'s {m.max_seconds:g} s per generation and {why}",
                    f"ask for at most {m.max_seconds:g} s, or use a chain that continues (token-AR or sliding windows)"
                    + ("" if brief.continuation else " with `continuation: true`")))
    return out
