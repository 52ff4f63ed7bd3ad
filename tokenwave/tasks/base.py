"""What every task shares: the result type, sampling options, limits, and the finishing step (watermark)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from tokenwave.audio import save_audio
from tokenwave.errors import InvalidArgumentError
from tokenwave.fileio import atomic_write_text
from tokenwave.flow.sample import FlowSampling
from tokenwave.lm.sampling import SamplingParams
from tokenwave.models.folder import MissingModelError
from tokenwave.paths import default_checkpoint
from tokenwave.safety.watermark import embed_watermark

MAX_DURATION = 300.0  # seconds a music / sfx request may ask for: 5 minutes by sliding windows (benchmarks/longform.py)
MAX_TEXT_CHARS = 2000  # characters a TTS request may hold


@dataclass
class GeneratedAudio:
    """A task's output: ``wav`` float32 mono in [-1, 1] at ``sample_rate``, and what produced it."""

    wav: np.ndarray
    sample_rate: int
    metadata: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sample_rate

    def save(self, path: str | os.PathLike) -> Path:
        """Write the audio (format from the suffix) atomically, and the metadata beside it as ``PATH.json``."""
        path = Path(path)
        save_audio(path, self.wav, self.sample_rate)
        atomic_write_text(path.with_name(path.name + ".json"), json.dumps(self.metadata, indent=2) + "\n")
        return path


@dataclass
class Sampling:
    """The sampling controls every task exposes (token LM: temperature, top-k/p, CFG; flow: steps, CFG).

    A control left ``None`` takes the model's measured default for the request (e.g. ``sampling_with_melody`` in a
    music folder's ``generators.json``), else :attr:`DEFAULTS`; :meth:`resolved` fills them."""

    seed: int = 0
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float | None = None
    steps: int | None = None  # flow generator only
    solver: str | None = None  # flow generator only: euler (1 model call per step) or heun (2)
    cfg_until: float | None = None  # flow generator only: guide at times t <= cfg_until (0 noise .. 1 data)

    DEFAULTS: ClassVar[dict] = {"temperature": 0.9, "top_k": 100, "top_p": 0.0, "cfg_scale": 2.0, "steps": 16,
                                "solver": "euler", "cfg_until": 1.0}

    def resolved(self, defaults: dict | None = None) -> "Sampling":
        """A copy with every unset control filled from ``defaults`` (the model's, for this request), then
        :attr:`DEFAULTS`."""
        fill = {**self.DEFAULTS, **{k: v for k, v in (defaults or {}).items() if k in self.DEFAULTS}}
        return replace(self, **{k: fill[k] for k in self.DEFAULTS if getattr(self, k) is None})

    def flow_params(self):
        s = self.resolved()
        p = FlowSampling(steps=s.steps, method=s.solver, cfg_scale=s.cfg_scale, seed=s.seed, cfg_until=s.cfg_until)
        p.check()
        return p

    def lm_params(self, seed: int | None = None) -> SamplingParams:
        s = self.resolved()
        p = SamplingParams(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p, cfg_scale=s.cfg_scale,
                           seed=s.seed if seed is None else seed)
        p.check(1)
        return p

    def check(self) -> None:
        self.lm_params()
        s = self.resolved()
        if not 1 <= s.steps <= 256:
            raise InvalidArgumentError(f"steps must be within 1..256, got {s.steps}", "use 8-32 steps")
        if s.solver not in ("euler", "heun"):
            raise InvalidArgumentError(f"unknown solver {s.solver!r}", "use euler or heun")
        self.flow_params()  # the flow sampler's own checks (the guidance interval)


def check_duration(duration: float, limit: float = MAX_DURATION) -> float:
    """``duration`` seconds -> the same as a float, or an error naming the limit (0 < duration <= ``limit``)."""
    if not duration > 0:
        raise InvalidArgumentError(f"duration must be positive (over 0 s, at most {limit:g} s), got {duration:g} s",
                                   "ask for e.g. --duration 5")
    if duration > limit:
        raise InvalidArgumentError(f"duration {duration:g} s is over the {limit:g} s limit",
                                   f"ask for at most {limit:g} s (longer pieces: render parts and --continue them)")
    return float(duration)


def finish(wav: np.ndarray, sample_rate: int, metadata: dict, watermark: bool) -> GeneratedAudio:
    """Clip to [-1, 1], embed the watermark unless disabled, and record both in the metadata."""
    wav = np.clip(np.asarray(wav, dtype=np.float32), -1.0, 1.0)
    if watermark:
        wav = np.clip(embed_watermark(wav, sample_rate), -1.0, 1.0).astype(np.float32)
    return GeneratedAudio(wav, sample_rate, {**metadata, "watermark": bool(watermark)})


def default_model_dir(task: str, model: str | os.PathLike | None) -> Path:
    path = Path(model) if model is not None else default_checkpoint(task)
    if not (path / "config.json").exists():
        raise MissingModelError(f"no {task} model at {path}",
                                f"pass --model with a folder from `tokenwave train {'tts' if task == 'tts' else 'lm'}`"
                                " (its model/ subfolder), or restore checkpoints/ from the repository")
    return path


@runtime_checkable
class Task(Protocol):
    """The contract every task implements (:class:`~tokenwave.tasks.tts.TTS`,
    :class:`~tokenwave.tasks.tagged.TaggedTask`): what the CLI, the server and the evaluation suite rely on."""

    task: str             # "tts", "music" or "sfx"
    folder: Path          # the model folder it was loaded from
    sample_rate: int      # Hz of the audio it makes (its codec's)
    frame_rate: float     # code frames per second

    def defaults_for(self, generator: str, melody: bool = False) -> dict:
        """The sampling controls measured best for ``generator`` ("lm" or "flow"), with or without a melody: what a
        request's unset controls take. A generator or melody the task does not have is refused."""
        ...

    def generate_row(self, row: dict, dataset: str | os.PathLike, seed: int = 0) -> np.ndarray:
        """Evaluation: a dataset row (its text or caption) -> the task's audio for it at :attr:`sample_rate`."""
        ...
