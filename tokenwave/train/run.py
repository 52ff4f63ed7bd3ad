"""The one way a training command runs a recipe: :func:`run_training` (threads, torchrun's process group, seed,
the shared trainer loop, a clean exit of every rank)."""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.distributed as dist

from tokenwave.seeding import seed_everything
from tokenwave.train.options import RunOptions
from tokenwave.train.trainer import DistInfo, Recipe, setup_distributed, train


def run_training(name: str, make_recipe: Callable[[DistInfo], Recipe], run: RunOptions) -> Optional[dict]:
    """Recipe factory + run options -> the last figures (on the main rank; ``None`` on the others).

    Sets torch's CPU threads (``run.threads`` > 0), joins torchrun's process group if any, seeds rank r with
    ``run.seed + r``, builds the recipe for this rank and runs the shared trainer (:func:`tokenwave.train.trainer.train`)."""
    if run.threads:
        torch.set_num_threads(run.threads)
    info = setup_distributed(run.device)
    seed_everything(run.seed + info.rank)
    metrics = train(make_recipe(info), run.out, run.steps, info, val_every=run.val_every, ckpt_every=run.ckpt_every,
                    log_every=run.log_every, resume=run.resume, name=name, until=run.until,
                    time_budget=run.time_budget, keep_best=run.keep_best)
    if dist.is_initialized():  # every rank waits for rank 0's last validation and export, then all leave together
        dist.barrier()
        dist.destroy_process_group()
    return metrics if info.is_main else None


__all__ = ["run_training"]
