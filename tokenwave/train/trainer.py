"""One trainer loop for every recipe: seeds, progress, periodic validation and checkpoints, resume, DDP.

A recipe provides ``modules`` and ``optimizers`` (dicts, saved in the training state), ``train_step(step) ->
dict of floats``, ``validate() -> dict of floats`` and ``export(folder, metrics)`` (the shippable checkpoint).
Multi-GPU: launch with ``torchrun --nproc_per_node N -m tokenwave train ...``; the trainer joins the process
group torchrun sets up (torch DDP) and the recipe wraps its model with :func:`wrap_ddp`.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from tokenwave.errors import InvalidArgumentError
from tokenwave.progress import progress_bar
from tokenwave.train.state import load_train_state, save_train_state


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun; otherwise a single process."""
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        torch.set_float32_matmul_precision("high")  # TF32 matrix units; the losses train the same
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    return DistInfo(rank, world, dev)


def wrap_ddp(module: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    if info.world_size == 1:
        return module
    ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def set_schedule_lr(optimizers: dict[str, torch.optim.Optimizer], base_lr: float, step: int, warmup: int,
                    total: int) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine decay to 10% of ``base_lr`` at ``total``; applied to
    every optimizer. Derived from the step alone, so a resumed run needs no scheduler state."""
    lr = base_lr * min(1.0, (step + 1) / warmup) * (0.55 + 0.45 * math.cos(math.pi * min(step / total, 1.0)))
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr
    return lr


class Recipe(Protocol):
    modules: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]

    def train_step(self, step: int) -> dict[str, float]: ...

    def validate(self) -> dict[str, float]: ...

    def export(self, folder: Path, metrics: dict) -> None: ...

    def rng_state(self) -> dict: ...

    def set_rng_state(self, state: dict) -> None: ...


def train(recipe: Recipe, out: str | os.PathLike, steps: int, info: DistInfo, val_every: int = 500,
          ckpt_every: int = 500, log_every: int = 25, resume: bool = False, name: str = "train",
          until: int | None = None, time_budget: float | None = None, keep_best: bool = False) -> dict:
    """Run ``recipe`` to ``steps`` (or stop after step ``until``, checkpointed, to be resumed later). Writes ``out/log.jsonl``, ``out/last/`` (resumable state) and ``out/model/``.

    ``time_budget`` (seconds of wall time, for a lent machine): after a short calibration the run is shortened to
    the steps that fit, and the recipe's learning-rate schedule (``recipe.tcfg.total_steps``) is set to end there,
    so the run finishes annealed instead of being cut off mid-schedule. It also stops, checkpointed, if the budget
    runs out anyway. ``keep_best`` also exports the model at its lowest validation loss so far to ``out/best/``
    (long runs on small data that may overfit)."""
    out = Path(out)
    start = 0
    if resume:
        if not (out / "last" / "train_state.json").exists():
            raise InvalidArgumentError(f"--resume given but {out}/last holds no training state", "drop --resume to start afresh")
        start, rngs = load_train_state(out / "last", recipe.modules, recipe.optimizers)
        recipe.set_rng_state(rngs)
    metrics: dict = {}
    log = out / "log.jsonl"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    running: dict[str, float] = {}
    best = _best_so_far(log, start) if keep_best else math.inf

    def validate(step: int) -> dict:
        """Validate, log it, and with ``keep_best`` export the model when it beats every validation so far."""
        nonlocal best
        metrics = {"step": step, **recipe.validate()}
        with open(log, "a") as f:
            f.write(json.dumps({"validation": metrics}) + "\n")
        if keep_best and metrics.get("valid_loss", math.inf) < best:
            best = metrics["valid_loss"]
            recipe.export(out / "best", metrics)
        return metrics

    if start == 0 and getattr(getattr(recipe, "tcfg", None), "init", None) and info.is_main:
        # a fine-tuning run first measures the model it starts from: the log shows the starting point, and
        # --keep-best keeps that model if no step beats it
        metrics = validate(0)
    t0 = time.time()
    with progress_bar(name, total=steps, unit="steps") as bar:
        bar.update(completed=start)
        stop = min(steps, until) if until else steps
        budget = _Budget(time_budget, start) if time_budget else None
        step = start
        while step < stop:
            for k, v in recipe.train_step(step).items():
                running[k] = running.get(k, 0.0) + v
            bar.advance(1)
            done = step = step + 1
            if budget is not None:
                fit = _agree(budget.fit(done), info)
                if fit is not None and fit < stop:
                    stop = max(done, fit)
                    if hasattr(recipe, "tcfg") and hasattr(recipe.tcfg, "total_steps"):
                        recipe.tcfg.total_steps = stop
                    bar.update(total=stop)
                    if info.is_main:
                        with open(log, "a") as f:
                            f.write(json.dumps({"time_budget": time_budget, "steps": stop}) + "\n")
            if info.is_main and done % log_every == 0:
                entry = {"step": done, "time": round(time.time() - t0, 1), **{k: round(v / log_every, 5) for k, v in running.items()}}
                running = {}
                with open(log, "a") as f:
                    f.write(json.dumps(entry) + "\n")
                bar.update(description=f"{name} " + " ".join(f"{k}={entry[k]:.3g}" for k in list(entry)[2:5]))
            if info.is_main and (done % val_every == 0 or done == stop):
                metrics = validate(done)
            if info.is_main and (done % ckpt_every == 0 or done == stop):
                save_train_state(out / "last", done, recipe.modules, recipe.optimizers, recipe.rng_state())
                recipe.export(out / "model", metrics)
    return metrics


def _best_so_far(log: Path, start: int) -> float:
    """The lowest validation loss logged up to step ``start`` (a resumed ``--keep-best`` run keeps beating it,
    not whatever its first validation after the resume gives)."""
    best = math.inf
    if start and log.exists():
        for line in log.read_text().splitlines():
            v = json.loads(line).get("validation") or {}
            if v.get("step", math.inf) <= start and "valid_loss" in v:
                best = min(best, v["valid_loss"])
    return best


def _agree(fit: int | None, info: DistInfo) -> int | None:
    """Rank 0's answer on every rank (DDP ranks time their steps apart, and must stop at the same step)."""
    if info.world_size == 1:
        return fit
    t = torch.tensor([-1 if fit is None else fit], device=info.device)
    dist.broadcast(t, 0)
    return None if int(t) < 0 else int(t)


class _Budget:
    """Fits a run into a wall-time budget: times ``calibrate`` steps after ``warm`` warm-up ones, then says how many
    steps in all fit (with a margin for validation and checkpoints); later it only answers once time has run out."""

    def __init__(self, seconds: float, start: int, warm: int = 20, calibrate: int = 100, margin: float = 0.9) -> None:
        self.seconds, self.margin = seconds, margin
        self.t0 = time.time()
        self.warm_at, self.calib_at = start + warm, start + warm + calibrate
        self.t_warm: float | None = None

    def fit(self, done: int) -> int | None:
        now = time.time()
        if done == self.warm_at:
            self.t_warm = now
        elif done == self.calib_at and self.t_warm is not None:
            per_step = (now - self.t_warm) / (self.calib_at - self.warm_at)
            left = self.seconds * self.margin - (now - self.t0)
            return done + max(0, int(left / per_step))
        if now - self.t0 > self.seconds:
            return done
        return None
