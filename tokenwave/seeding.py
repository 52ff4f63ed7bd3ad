"""One seed for every random source a run draws from (Python, NumPy, torch): training, evaluation and benchmarks."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """``seed`` -> Python's, NumPy's and torch's global generators seeded with it."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


__all__ = ["seed_everything"]
