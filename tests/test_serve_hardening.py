"""The server under load and attack: no memory kept across engine jobs, abandoned requests cancelled at once,
admission by measured capacity with a bounded queue, backpressure that parks and cancels, audio uploads checked
from their header, refusals that leak nothing, and the smaller guards (log redaction, Origin, keys, limits)."""
import gc
import threading
import time

import pytest
import torch

import task_models as tm
from tokenwave.conditioning import Conditioning
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams
from tokenwave.serve.engine import BatchEngine, Job


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _engine_lm(dim=32, depth=2, max_len=96):
    cfg = LMConfig(K=2, codebook_size=64, dim=dim, depth=depth, heads=2, max_len=max_len)
    torch.manual_seed(0)
    lm = TokenLM(cfg).eval()
    tm.randomise(lm, 5)
    return lm


def _run_job(engine, frames, seed=0, P=4, dim=32):
    cond = Conditioning(prefix=torch.randn(1, P, dim, generator=torch.Generator().manual_seed(seed)))
    job = engine.submit(Job(cond, frames, SamplingParams(temperature=0.8, top_k=20, cfg_scale=1.5, seed=seed)))
    return torch.cat(list(job.codes()), -1)


# --- 1. memory ---------------------------------------------------------------------------------------------------
def test_engine_keeps_no_autograd_graph_and_memory_is_flat():
    """The engine's decode loop runs without autograd: after a job no tensor of the engine holds a grad_fn (a
    graph chained through the KV cache kept every step's activations alive), and RSS stays flat across jobs."""
    lm = _engine_lm(dim=256, depth=4, max_len=400)
    assert any(p.requires_grad for p in lm.parameters())  # as a loaded model's are: nothing turns autograd off
    engine = BatchEngine(lm, max_rows=4, ahead_frames=10_000).start()
    try:
        codes = _run_job(engine, 200, dim=256)
        assert codes.grad_fn is None and not codes.requires_grad
        held = [engine.hidden, *engine.cache.k, *engine.cache.v]
        assert all(t.grad_fn is None and not t.requires_grad for t in held)
        _run_job(engine, 200, seed=1, dim=256)  # warm-up: allocator pools settle
        gc.collect()
        before = _rss_mb()
        for i in range(4):
            _run_job(engine, 200, seed=2 + i, dim=256)
        gc.collect()
        grown = _rss_mb() - before
        assert grown < 15, f"RSS grew {grown:.1f} MB over 4 jobs"
    finally:
        engine.stop()
