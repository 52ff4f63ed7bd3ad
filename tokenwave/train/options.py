"""``RunOptions``: what every training run is told besides its recipe (folder, length, cadence, seed, device, resume,
budget), and :func:`preset_of`. Torch-free, so the training commands use them without slowing ``tokenwave --help``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, TypeVar

from tokenwave.errors import InvalidArgumentError

T = TypeVar("T")


@dataclass(frozen=True)
class RunOptions:
    """The options of one training run, the same for every recipe (``tokenwave train ...`` builds it from its flags)."""

    out: Path  # run folder: log.jsonl, last/ (resumable state), model/ (the checkpoint)
    steps: int  # total optimisation steps; the learning-rate schedule follows it
    val_every: int = 500  # validate every N steps
    ckpt_every: int = 500  # save OUT/last and OUT/model every N steps
    log_every: int = 25  # log the training loss every N steps
    seed: int = 0  # rank r seeds with seed + r
    device: str = "auto"  # auto, cpu or cuda
    threads: int = 0  # torch's CPU threads (0: torch's default)
    resume: bool = False  # continue from OUT/last
    until: Optional[int] = None  # stop after this step (checkpointed); the schedule still follows ``steps``
    time_budget: Optional[float] = None  # wall seconds: the run shortens to the steps that fit
    keep_best: bool = False  # also export the model at its lowest validation loss to OUT/best


def preset_of(presets: dict[str, T], preset: str) -> T:
    """A preset's name -> its config from ``presets``; an unknown name raises, naming the valid ones."""
    if preset not in presets:
        raise InvalidArgumentError(f"unknown preset {preset!r}", f"use one of {', '.join(presets)}")
    return presets[preset]


__all__ = ["RunOptions", "preset_of"]
