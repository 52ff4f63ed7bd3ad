"""How many streams this machine sustains in real time, measured once and stored.

A stream of a token-LM task needs ``frame_rate * L / T`` batched decode steps a second (its pattern's steps per frame)
plus the codec decoder's time for one second of audio. With ``n`` streams in one batch, a step costs ``t_step(n)``
and the decoder runs once per stream (one at a time), so the share of the machine that ``n`` streams take is

    load(n) = steps_per_second * t_step(n) + n * decode_seconds_per_audio_second

and the capacity is the largest ``n`` with ``load(n) <= MARGIN`` (at least 1). ``measure`` times a few batch sizes
with dummy conditioning (a zero prefix of the task's length) on a private engine; ``benchmarks/serve.py`` stores the
level at which every real stream played without an underrun, which wins over the quick probe. Results live in one
JSON file under the user's cache (``serve-capacity.json`` in :func:`tokenwave.paths.user_cache_dir`), one entry per model, thread
count, torch version and CPU.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import torch

from tokenwave.conditioning import Conditioning
from tokenwave.fileio import atomic_path
from tokenwave.lm.sampling import SamplingParams
from tokenwave.paths import user_cache_dir
from tokenwave.serve.audio import DecoderState
from tokenwave.serve.engine import BatchEngine, Job
from tokenwave.sysdeps import cpuinfo
from tokenwave.tasks.base import Sampling

MARGIN = 0.8          # of the machine: the rest absorbs finishing, encoding, sending and jitter
PROBE_FRAMES = 24     # frames per probe job (about 0.3 s of audio at 75 Hz)
PROBE_SIZES = (1, 2, 4, 8, 16, 32, 64)
MAX_STREAMS = 64


def default_threads() -> int:
    """The server's torch threads when none are asked for: half the cores (at least one). The batch engine and the
    codec decoder run on two threads at once, each with its own team of torch threads. On 2 cores one torch thread
    each beat two at every load ``benchmarks/serve.py --quick`` tried, runs interleaved (first audio 0.09-0.11 s
    against 0.13 s at one stream, whose audio came 2.6x against 1.7x faster than real time; the slowest of 4
    streams 1.3x against 1.1x): two teams of two oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // 2)


def cache_path() -> Path:
    return user_cache_dir() / "serve-capacity.json"


def _cpu() -> str:
    return cpuinfo("model name") or platform.processor() or platform.machine()


def capacity_key(task_name: str, folder: str | os.PathLike | None, threads: int | None = None,
                 precision: str = "fp32", engine: str = "process") -> str:
    """One entry per task model (its config and weights by size and time), precision, engine placement (a process
    of its own or a thread of the server's), thread count, torch and CPU."""
    h = hashlib.sha256()
    if folder is not None:
        for p in sorted(Path(folder).glob("*")):
            if p.is_file():
                st = p.stat()
                h.update(f"{p.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    threads = threads or torch.get_num_threads()
    prec = "" if precision == "fp32" else f":precision={precision}"  # fp32 keys stay as they were stored
    place = "" if engine == "thread" else f":engine={engine}"  # keys stored before engines had processes: threads
    return f"{task_name}:{h.hexdigest()[:16]}{prec}{place}:threads={threads}:torch={torch.__version__}:{_cpu()}"


def read_stored(key: str) -> dict | None:
    try:
        return json.loads(cache_path().read_text()).get(key)
    except (OSError, ValueError):
        return None


def store(key: str, entry: dict) -> None:
    """Write ``entry`` (``streams`` and how it was found) under ``key``, keeping the other entries."""
    path = cache_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=1, sort_keys=True))


def measure(lm, decoder_codec, frame_rate: float, prefix_len: int = 8, guided: bool = True,
            budget_s: float = 20.0) -> dict:
    """A task's LM and decoding codec -> ``{"streams": n, "load": {n: share}, ...}`` measured on this machine."""
    dim = lm.cfg.dim
    L = lm.pattern.length(PROBE_FRAMES)
    steps_per_second = frame_rate * L / PROBE_FRAMES
    # the decoder: seconds of compute per second of audio, in the server's chunk size (16 frames)
    state = DecoderState(decoder_codec)
    codes = torch.randint(0, lm.cfg.codebook_size, (lm.cfg.K, 16))
    state.push(codes)
    t0 = time.perf_counter()
    for _ in range(3):
        state.push(codes)
    decode = (time.perf_counter() - t0) / (3 * 16 / frame_rate)
    loads, t_steps, t_start = {}, {}, time.perf_counter()
    params = SamplingParams(temperature=1.0, top_k=50, cfg_scale=2.0 if guided else 1.0, seed=0)
    for n in PROBE_SIZES:
        engine = BatchEngine(lm, max_rows=(2 if guided else 1) * n, ahead_frames=10 * PROBE_FRAMES, name="probe")
        jobs = [Job(Conditioning(prefix=torch.zeros(1, prefix_len, dim, dtype=lm.null_cond.dtype)), PROBE_FRAMES,
                    params) for _ in range(n)]
        for job in jobs:
            engine.submit(job)
        t0 = time.perf_counter()
        engine.start()
        try:
            for job in jobs:
                for _ in job.codes(timeout=120):
                    pass
        finally:
            engine.stop()
        t_steps[n] = (time.perf_counter() - t0) / L
        loads[n] = steps_per_second * t_steps[n] + n * decode
        if loads[n] > 1.0 or time.perf_counter() - t_start > budget_s:
            break
    fits = [n for n, load in loads.items() if load <= MARGIN]
    streams = 1
    if fits:
        lo = max(fits)
        hi = min([n for n in loads if n > lo], default=None)
        streams = lo
        if hi is not None:  # between two probed sizes the step time grows about linearly
            for m in range(lo + 1, hi):
                t = t_steps[lo] + (t_steps[hi] - t_steps[lo]) * (m - lo) / (hi - lo)
                if steps_per_second * t + m * decode <= MARGIN:
                    streams = m
    return {"streams": min(streams, MAX_STREAMS), "source": "measured at start-up",
            "load": {str(n): round(v, 4) for n, v in loads.items()},
            "decode_seconds_per_audio_second": round(decode, 5), "margin": MARGIN,
            "date": time.strftime("%Y-%m-%d")}


def task_capacity(name: str, task, decoder_codec, threads: int | None = None, engine: str = "process") -> dict:
    """The stored entry for this task model, engine placement and machine, or a fresh measurement (stored for the
    next start)."""
    key = capacity_key(name, getattr(task, "folder", None), threads, getattr(task, "precision", "fp32"), engine)
    entry = read_stored(key)
    if entry and int(entry.get("streams", 0)) >= 1:
        return entry
    guided = Sampling().resolved(task.defaults_for("lm")).cfg_scale != 1.0
    entry = measure(task.lm, decoder_codec, task.frame_rate, guided=guided)
    try:
        store(key, entry)
    except OSError:
        pass  # a read-only home: measured again at the next start
    return entry
