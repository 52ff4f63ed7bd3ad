"""The batch engine in a child process (the server's default): the same codes as the engine in a thread, jobs that
join and leave, backpressure and cancels across the pipe, errors told to their job, a dead child told to everyone."""
import os
import signal
import threading
import time

import pytest
import torch

import task_models as tm
from tokenwave.conditioning import Conditioning
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams
from tokenwave.serve.engine import BatchEngine, Job
from tokenwave.serve.process import EngineProcess, EngineProcessError


def _lm(max_len: int = 96) -> TokenLM:
    cfg = LMConfig(K=2, codebook_size=64, dim=32, depth=2, heads=2, max_len=max_len)
    torch.manual_seed(0)
    lm = TokenLM(cfg).eval()
    tm.randomise(lm, 5)
    return lm


def _job(frames: int, P: int, scale: float, seed: int, dim: int = 32) -> Job:
    cond = Conditioning(prefix=torch.randn(1, P, dim, generator=torch.Generator().manual_seed(10 + seed)))
    return Job(cond, frames, SamplingParams(temperature=0.8, top_k=20, cfg_scale=scale, seed=seed))


def _read(job: Job, slow: float = 0.0) -> torch.Tensor:
    parts = []
    for c in job.codes():
        parts.append(c)
        time.sleep(slow)
    return torch.cat(parts, -1)


@pytest.fixture(scope="module")
def lm():
    return _lm()


def test_a_lone_job_gets_the_thread_engines_codes_and_concurrent_jobs_park_and_finish(lm):
    specs = [(30, 3, 1.0), (50, 12, 2.0), (20, 7, 1.5), (40, 20, 2.0)]  # frames, prefix, cfg
    thread = BatchEngine(lm, max_rows=8, ahead_frames=6).start()
    try:
        ref = [_read(thread.submit(_job(*spec, seed=i))) for i, spec in enumerate(specs)]  # one at a time
    finally:
        thread.stop()
    engine = EngineProcess(lm, max_rows=8, ahead_frames=6, name="test").start()
    try:
        alone = [_read(engine.submit(_job(*spec, seed=i))) for i, spec in enumerate(specs)]
        assert all(torch.equal(a, r) for a, r in zip(alone, ref))  # the same engine code: bit for bit
        got, jobs = {}, [engine.submit(_job(*spec, seed=i)) for i, spec in enumerate(specs)]
        assert engine.streams == 4
        others_done = threading.Event()  # job 1's reader stops after its first chunk until the others are read

        def read(i: int) -> None:
            parts = []
            for c in jobs[i].codes():
                parts.append(c)
                if i == 1 and len(parts) == 1:
                    others_done.wait(60)
            got[i] = torch.cat(parts, -1)

        readers = [threading.Thread(target=read, args=(i,)) for i in range(4)]
        [t.start() for t in readers]
        [readers[i].join(60) for i in (0, 2, 3)]
        others_done.set()
        readers[1].join(60)
        for i, r in enumerate(ref):
            agree = (got[i] == r).float().mean().item()  # batched matmuls may differ in the last float bits
            assert got[i].shape == r.shape and agree >= 0.97, (i, agree)
        # the reader that fell behind was parked: its "taken" messages crossed the pipe, its job came back and finished
        assert engine.stats["parks"] >= 1 and engine.stats["row_steps"] > engine.stats["steps"]
        assert engine.streams == 0 and tm.wait_until(lambda: engine.n == 0)
        assert all(j.emitted == j.frames == j.taken for j in jobs)
    finally:
        engine.stop()


def test_a_cancelled_job_leaves_the_batch_at_once_and_the_engine_goes_on():
    lm = _lm(max_len=4000)
    engine = EngineProcess(lm, max_rows=4, ahead_frames=10_000, name="test").start()
    try:
        job = engine.submit(_job(3900, 4, 1.5, seed=0))
        codes = job.codes()
        next(codes)
        assert tm.wait_until(lambda: engine.n == 2)  # a guided job: two rows in the child's batch
        t0 = time.perf_counter()
        job.cancel()
        assert engine.streams == 0
        assert tm.wait_until(lambda: engine.n == 0, timeout=1.0) and time.perf_counter() - t0 < 1.0
        assert engine.stats["frames"] < 3900  # stopped, not finished
        again = _read(engine.submit(_job(20, 4, 1.5, seed=0)))
        assert again.shape == (2, 20)
    finally:
        engine.stop()


def test_errors_reach_their_job_and_a_dead_engine_is_told(lm, monkeypatch):
    monkeypatch.setattr(EngineProcess, "RESTART_AFTER_S", 1e9)  # "dies young" however slow the machine
    engine = EngineProcess(lm, max_rows=4, name="test").start()
    try:
        with pytest.raises(InvalidArgumentError, match="this model holds 96"):
            engine.submit(_job(200, 4, 1.0, seed=0))  # refused here, before the pipe
        bad = engine.submit(_job(10, 4, 1.0, seed=0, dim=16))  # a prefix of the wrong width fails in the child
        with pytest.raises(Exception, match="16"):
            _read(bad)
        assert _read(engine.submit(_job(10, 4, 1.0, seed=1))).shape == (2, 10)  # the engine goes on
        waiting = engine.submit(_job(90, 4, 1.0, seed=2))
        os.kill(engine.pid, signal.SIGKILL)  # a child that dies young (a crash loop) is not started again
        with pytest.raises(EngineProcessError, match=r"the test engine's process stopped \(exit code -9\)"):
            _read(waiting)
        with pytest.raises(EngineProcessError, match="restart the server"):
            engine.submit(_job(10, 4, 1.0, seed=3))
        assert engine.streams == 0 and not engine.alive and engine.restarts == 0
    finally:
        engine.stop()


def test_a_child_that_ran_a_while_is_started_again(lm, monkeypatch):
    monkeypatch.setattr(EngineProcess, "RESTART_AFTER_S", 0.0)
    engine = EngineProcess(lm, max_rows=4, name="test").start()
    try:
        first = engine.pid
        assert _read(engine.submit(_job(10, 4, 1.0, seed=1))).shape == (2, 10)
        waiting = engine.submit(_job(90, 4, 1.0, seed=2))
        os.kill(first, signal.SIGKILL)
        with pytest.raises(EngineProcessError, match="exit code -9"):  # the jobs it held are lost, and told
            _read(waiting)
        assert tm.wait_until(lambda: engine.restarts == 1 and engine.alive)
        again = _read(engine.submit(_job(10, 4, 1.0, seed=1)))  # the next job runs on a new child
        assert engine.pid != first and again.shape == (2, 10)
    finally:
        engine.stop()


def test_stop_ends_the_child_and_later_jobs_are_refused(lm):
    engine = EngineProcess(lm, max_rows=2, name="test").start()
    assert _read(engine.submit(_job(10, 4, 1.0, seed=0))).shape == (2, 10)
    engine.stop()
    assert engine._proc.returncode == 0
    with pytest.raises(EngineProcessError, match="was stopped"):
        engine.submit(_job(10, 4, 1.0, seed=0))
