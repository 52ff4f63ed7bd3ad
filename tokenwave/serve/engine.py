"""Continuous batching of token-LM decode steps: every active stream of one model advances one pattern step per
tick, in one batched transformer call; streams join and leave between ticks.

One :class:`KVCache` of ``max_rows`` rows holds every active stream (two rows with classifier-free guidance: the
conditional and the null one), packed at the front; all rows share one write position ``pos``. Rotary attention
depends only on relative positions, so a stream that joins at ``pos`` has its prefix (conditioning + start token)
prefilled at positions ``pos - P - 1 .. pos - 1`` of its own row, with every other slot of the row marked invalid:
it then sees exactly the relative positions of an offline run. When the shared window would leave the cache
(``pos`` past ``max_len``, or a newcomer's prefix longer than ``pos``), the whole cache is shifted along the slot
axis and every cached key is re-rotated by the shift (rotations compose: R(a) R(d) = R(a + d)), which keeps all
relative positions. A stream whose client reads slowly is *parked*: its rows' keys/values leave the batch and come
back later, re-rotated to the new position (backpressure without stalling the others). A cancelled stream's rows
are freed at the next tick.

Each stream samples with its own ``torch.Generator`` seeded like :func:`tokenwave.lm.generate.stream`, so a lone
stream reproduces the offline tokens exactly; in a batch, batched matmuls may differ from batch 1 in the last float
bits (and shifted keys by a rotation's rounding), so batched streams agree with offline in distribution, token for
token up to a slot where those bits decide a near-tie (sooner with a bfloat16 cache, whose rounding can enlarge
them), not bit for bit.
"""
from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import torch

from tokenwave.conditioning import Conditioning
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.generate import forced_steps
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams, draw_each
from tokenwave.nn import KVCache, rotary


PREFIXES = 32  # cached shared prefixes (rows): a 3 s voice prompt's keys and values take about 2 MB in fp32


class Cancelled(Exception):
    """The job was cancelled (its client went away)."""


class Job:
    """One generation of ``frames`` frames for one conditioning item (batch 1), as ``lm.generate.stream`` would
    run it. ``prompt [K, Tp]``: codes forced at the first frames (continuation). Read the frames with
    :meth:`codes` (blocking; the frames it yields count as taken, which the engine's backpressure watches) and call
    :meth:`cancel` to stop."""

    def __init__(self, cond: Conditioning, frames: int, params: SamplingParams,
                 prompt: torch.Tensor | None = None) -> None:
        self.cond, self.frames, self.params, self.prompt = cond, int(frames), params, prompt
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.cancelled = False
        self.emitted = 0     # frames produced
        self.taken = 0       # frames the consumer has taken
        self.submitted = time.perf_counter()
        self.link = None     # an engine in another process: its ``cancel()`` and ``taken(n)`` tell it

    def cancel(self) -> None:
        """Stop the job (from any thread): the engine frees its rows at its next step, and a consumer waiting in
        :meth:`codes` gets :class:`Cancelled` at once."""
        self.cancelled = True
        self.events.put(("cancelled", None))
        if self.link is not None:
            self.link.cancel()

    def codes(self, timeout: float = 60.0):
        """Yield ``codes LongTensor[K, n]`` as the engine produces them; raises the engine's error, if any, and
        :class:`Cancelled` once the job was cancelled."""
        while True:
            kind, value = self.events.get(timeout=timeout)
            if kind == "codes":
                self.taken += value.shape[-1]
                if self.link is not None:
                    self.link.taken(self.taken)
                yield value
            elif kind == "error":
                raise value
            elif kind == "cancelled":
                raise Cancelled("the job was cancelled")
            else:
                return


def new_stats() -> dict:
    """An engine's counters, all zero (an engine in another process reports the same ones)."""
    return {"steps": 0, "row_steps": 0, "frames": 0, "shifts": 0, "parks": 0, "prefix_hits": 0, "busy_s": 0.0}


def check_job(lm: TokenLM, job: Job) -> None:
    """Refuse a job ``lm`` cannot run (too many frames for its positions, sampling it does not support)."""
    P = job.cond.prefix_len
    L = lm.pattern.length(job.frames)
    if job.frames < 1 or P + L > lm.cfg.max_len:
        raise InvalidArgumentError(f"{job.frames} frames need {P + L} positions; this model holds {lm.cfg.max_len}",
                                   "ask for fewer frames")
    job.params.check(lm.cfg.K)


@dataclass
class _Active:
    job: Job
    rows: list[int]            # [cond] or [cond, null]
    guided: bool
    P: int
    L: int
    frame: torch.Tensor        # [S, L]
    book: torch.Tensor         # [S, L]
    mask: torch.Tensor         # [S, L]
    temps: torch.Tensor        # [S, L]
    gen: torch.Generator
    grid: torch.Tensor         # [K, T]
    frames_in: torch.Tensor | None  # [R, T, D] per-frame conditioning of the rows
    start: int = 0             # first cache slot of the rows
    step: int = 0              # next step to sample
    done: int = 0              # frames emitted
    tok: torch.Tensor | None = None
    parked: dict | None = field(default=None)

    @property
    def end(self) -> int:      # one past the last slot the rows will write
        return self.start + self.P + self.L


class BatchEngine:
    """A thread that runs all jobs of one token LM in one continuously batched decode loop.

    ``max_rows``: cache rows (a guided stream takes two); ``ahead_frames``: frames a job may run ahead of its
    consumer before it is parked."""

    def __init__(self, lm: TokenLM, max_rows: int = 32, ahead_frames: int = 225, name: str = "lm") -> None:
        self.lm, self.cfg, self.pattern, self.name = lm, lm.cfg, lm.pattern, name
        self.device, self.dtype = lm.null_cond.device, lm.null_cond.dtype
        self.max_rows, self.ahead = max_rows, ahead_frames
        self.C = self.cfg.max_len
        self.kv_dtype = lm.cache_dtype  # as the offline decoding's cache (bfloat16 where the CPU computes in it)
        self.cache = KVCache(self.cfg, max_rows, self.device, self.kv_dtype)
        self.hidden = torch.zeros(max_rows, 1, self.cfg.dim, device=self.device, dtype=self.dtype)
        hd = self.cfg.dim // self.cfg.heads
        self._inv = 1.0 / self.cfg.rope_base ** (torch.arange(0, hd // 2, dtype=torch.float64) / (hd // 2))
        self.n = 0
        self.pos = 0
        self.active: list[_Active] = []
        self.parked: list[_Active] = []
        self.waiting: deque[Job] = deque()
        self._cv = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.stats = new_stats()
        self.prefixes: OrderedDict[tuple, list] = OrderedDict()  # shared prefix positions' keys/values (_prefill)
        self.on_tick = None  # called on the engine's thread after each round of scheduling and stepping

    # --- public ------------------------------------------------------------------------------------------------
    def start(self) -> BatchEngine:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"engine-{self.name}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(10)

    def submit(self, job: Job) -> Job:
        check_job(self.lm, job)
        with self._cv:
            self.waiting.append(job)
            self._cv.notify_all()
        return job

    @property
    def queue_depth(self) -> int:
        return len(self.waiting)

    @property
    def alive(self) -> bool:
        """Whether the engine's thread runs (or has not been started yet)."""
        return self._thread is None or self._thread.is_alive()

    @property
    def streams(self) -> int:
        return len(self.active) + len(self.parked)

    # --- loop --------------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        # no autograd: with it on, the KV cache and ``hidden`` chained every step's graph, and each job left about
        # 40 MB of activations alive (RSS grew without bound); inference mode also makes a step 1.3-1.9x faster
        with torch.inference_mode():
            self._run()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._stop and not self.active and not self.waiting and not self.parked:
                    self._cv.wait(0.5)
                if self._stop:
                    return
            t0 = time.perf_counter()
            try:
                self._schedule()
                if self.active:
                    self._tick()
                elif self.parked or self.waiting:
                    time.sleep(0.002)
            except Exception as err:  # noqa: BLE001 - every job hears about it; the engine starts afresh
                for a in self.active + self.parked:
                    a.job.events.put(("error", err))
                self.active, self.parked, self.n, self.pos = [], [], 0, 0
            self.stats["busy_s"] += time.perf_counter() - t0
            if self.on_tick is not None:
                self.on_tick()

    def _schedule(self) -> None:
        """Between ticks: drop cancelled jobs, park jobs too far ahead of their consumer, resume parked jobs whose
        consumer caught up, admit waiting jobs (in order) while rows and cache room allow."""
        for a in [a for a in self.active if a.job.cancelled]:
            self._remove(a)
        self.parked = [a for a in self.parked if not a.job.cancelled]
        with self._cv:
            while self.waiting and self.waiting[0].cancelled:
                self.waiting.popleft()
        for a in [a for a in self.active if a.job.emitted - a.job.taken > self.ahead]:
            self._park(a)
        for a in [a for a in self.parked if a.job.emitted - a.job.taken <= self.ahead // 2]:
            if not self._resume(a):
                break
        while self.waiting:
            job = self.waiting[0]
            try:
                if not self._admit(job):
                    break
            except Exception as err:  # noqa: BLE001 - this job's own failure (e.g. a bad conditioning)
                job.events.put(("error", err))
            with self._cv:
                self.waiting.popleft()

    # --- rows and slots ----------------------------------------------------------------------------------------
    def _room(self, rows: int, span: int, writes: int) -> int | None:
        """Make room for ``rows`` rows using ``span`` slots before ``pos`` and ``writes`` after it (shifting the
        cache if needed); returns the new rows' first slot, or None if it does not fit now."""
        if self.n + rows > self.max_rows:
            return None
        if self.n == 0:
            self.pos = span
            return 0
        if self.pos - span >= 0 and self.pos + writes <= self.C:
            return self.pos - span
        lo = min([self.pos - span] + [a.start for a in self.active])
        hi = max([self.pos + writes] + [a.end for a in self.active])
        if hi - lo > self.C:
            return None
        self._shift(-lo)
        return self.pos - span

    def _turn(self, d: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos, sin) [Dh / 2]`` of the rotary angles that move a cached key by ``d`` positions."""
        ang = (d * self._inv).to(self.dtype)
        return ang.cos().to(self.device), ang.sin().to(self.device)

    def _shift(self, d: int) -> None:
        """Move every row's slots by ``d`` and re-rotate the cached keys by ``d`` positions."""
        if d == 0:
            return
        n, pos = self.n, self.pos
        src = max(0, -d)
        cos, sin = self._turn(d)
        for k, v in zip(self.cache.k, self.cache.v):
            moved_k = rotary(k[:n, :, src:pos].clone(), cos, sin)
            moved_v = v[:n, :, src:pos].clone()
            k[:n, :, src + d: pos + d] = moved_k
            v[:n, :, src + d: pos + d] = moved_v
        valid = self.cache.valid[:n, src:pos].clone()
        self.cache.valid[:n] = False
        self.cache.valid[:n, src + d: pos + d] = valid
        self.pos += d
        for a in self.active:
            a.start += d
        self.stats["shifts"] += 1

    def _new_rows(self, count: int) -> list[int]:
        rows = list(range(self.n, self.n + count))
        self.cache.valid[rows] = False
        self.n += count
        return rows

    def _remove(self, a: _Active) -> None:
        """Free ``a``'s rows: the last active rows move into them, so rows stay packed."""
        self.active.remove(a)
        for r in sorted(a.rows, reverse=True):
            last = self.n - 1
            if r != last:
                owner = next(o for o in self.active if last in o.rows)
                for k, v in zip(self.cache.k, self.cache.v):
                    k[r, :, : self.pos] = k[last, :, : self.pos]
                    v[r, :, : self.pos] = v[last, :, : self.pos]
                self.cache.valid[r] = self.cache.valid[last]
                self.hidden[r] = self.hidden[last]
                owner.rows[owner.rows.index(last)] = r
            self.n -= 1
        if self.n == 0:
            self.pos = 0
        self._update_all_valid()

    def _update_all_valid(self) -> None:
        self.cache.all_valid = bool(self.cache.valid[: self.n, : self.pos].all()) if self.n else True

    # --- joining -----------------------------------------------------------------------------------------------
    def _admit(self, job: Job) -> bool:
        cond, params = job.cond, job.params
        guided = params.cfg_scale != 1.0 and cond.batch_size is not None
        run_cond = Conditioning.cat([cond, cond.null_like(self.lm.null_cond)]) if guided else cond
        if params.cfg_scale == 0.0 and not guided:
            run_cond = cond.null_like(self.lm.null_cond)
        R, P = (2 if guided else 1), run_cond.prefix_len
        L = self.pattern.length(job.frames)
        f, k, m = (t.to(self.device) for t in self.pattern.layout(job.frames))
        known = None  # [S, F]: the steps a continuation's prompt fills entirely, prefilled with the prefix
        if job.prompt is not None:
            known = forced_steps(job.prompt[None].to(self.device), f[None], k[None], m[None], self.cfg.special)[0]
        F = 0 if known is None else known.shape[-1]
        start = self._room(R, P + 1 + F, L - 1 - F)
        if start is None:
            return False
        frames_in = run_cond.frames
        a = _Active(job, [], guided, P, L, f, k, m, params.slot_temperatures(k),
                    torch.Generator(device=self.device).manual_seed(params.seed),
                    torch.zeros(self.cfg.K, job.frames, dtype=torch.long, device=self.device),
                    frames_in, start=start)
        # prefill [prefix | start token | forced steps] at slots start .. pos - 1, as lm.generate.stream does at 0 ..
        start_tok = torch.full((R, k.shape[0], 1), self.cfg.special, dtype=torch.long, device=self.device)
        x = self.lm.embed_steps(start_tok, k[None, :, :1].expand(R, -1, -1)) + self._frame_in(a, 0)
        if F:
            forced = self.lm.embed_steps(known[None].expand(R, -1, -1), k[None, :, :F].expand(R, -1, -1))
            x = torch.cat([x, forced + self._frame_in(a, 1, F)], 1)
        valid = None
        if P:
            x = torch.cat([run_cond.prefix, x], 1)
            if run_cond.prefix_mask is not None:
                valid = torch.cat([run_cond.prefix_mask, torch.ones(R, 1 + F, dtype=torch.bool, device=self.device)], 1)
        tmp, h = self._prefill(cond.shared, run_cond, x, valid, start)
        a.rows = self._new_rows(R)
        rows = slice(a.rows[0], a.rows[-1] + 1)
        for big_k, big_v, k_, v_ in zip(self.cache.k, self.cache.v, tmp.k, tmp.v):
            big_k[rows, :, start: self.pos] = k_[:, :, start:]
            big_v[rows, :, start: self.pos] = v_[:, :, start:]
        self.cache.valid[rows, start: self.pos] = tmp.valid[:, start:]
        self.hidden[rows] = h
        self.active.append(a)
        self._update_all_valid()
        if F:  # the forced steps' frames go out now; decoding goes on from step F
            sel = m[:, :F]
            a.grid[k[:, :F][sel], f[:, :F][sel]] = known[sel]
            a.step = F
            self._send(a, F)
        return True

    def _prefill(self, shared: int, run_cond: Conditioning, x: torch.Tensor, valid: torch.Tensor | None,
                 start: int) -> tuple[KVCache, torch.Tensor]:
        """A newcomer's ``x [R, P + 1, D]`` (prefix and start token; ``valid [R, P + 1]``) run at slots ``start ..``
        of a cache of its own rows -> (that cache, the last position's hidden state ``[R, 1, D]``).

        Prefix caching: the ``shared`` leading positions of each row (a voice prompt; the null row's are all the null
        vector) depend on those positions alone. Their keys and values are kept (un-rotated, :data:`PREFIXES` rows
        at most, least recently used out), and a newcomer that joins a running batch takes them, rotated to
        ``start``, and runs only the rest of its prefix: a TTS sentence's prefill drops from the voice prompt plus
        its phonemes to its phonemes, which is what every running stream waits for while a stream joins. A lone
        newcomer (nothing running) computes everything, so a lone stream stays bit-identical to offline decoding."""
        R, S = x.shape[0], shared
        tmp = KVCache(self.cfg, R, self.device, self.kv_dtype, max_len=self.pos)
        tmp.pos, tmp.lo, tmp.all_valid = start, start, True  # the newcomer's rows hold nothing before start
        if not (0 < S < x.shape[1] and run_cond.prefix is not None and (valid is None or bool(valid[:, :S].all()))):
            return tmp, self.lm.run(x, run_cond, valid, tmp)[:, -1:]
        keys = [(S, self.kv_dtype, hashlib.blake2b(run_cond.prefix[r, :S].contiguous().numpy().tobytes(),
                                                   digest_size=16).hexdigest()) for r in range(R)]
        if self.n and all(k in self.prefixes for k in keys):
            cos, sin = self._turn(start)
            for r, key in enumerate(keys):
                self.prefixes.move_to_end(key)
                for layer, (k, v) in enumerate(self.prefixes[key]):
                    tmp.k[layer][r, :, start: start + S] = rotary(k, cos, sin) if start else k
                    tmp.v[layer][r, :, start: start + S] = v
            tmp.valid[:, start: start + S] = True
            tmp.pos = start + S
            self.stats["prefix_hits"] += 1
            return tmp, self.lm.run(x[:, S:], run_cond, None if valid is None else valid[:, S:], tmp)[:, -1:]
        h = self.lm.run(x, run_cond, valid, tmp)[:, -1:]
        cos, sin = self._turn(-start)
        for r, key in enumerate(keys):
            kept = []
            for k, v in zip(tmp.k, tmp.v):
                k = k[r, :, start: start + S]
                kept.append((rotary(k, cos, sin).to(k.dtype) if start else k.clone(), v[r, :, start: start + S].clone()))
            self.prefixes[key] = kept
            self.prefixes.move_to_end(key)
        while len(self.prefixes) > PREFIXES:
            self.prefixes.popitem(last=False)
        return tmp, h

    def _frame_in(self, a: _Active, step: int, n: int = 1) -> torch.Tensor | int:
        """The per-frame conditioning of ``a``'s rows at steps ``step .. step + n`` -> ``[R, n, D]`` (or 0)."""
        if a.frames_in is None:
            return 0
        return a.frames_in[:, a.frame[0, step: step + n].clamp(0, a.frames_in.shape[1] - 1)]

    def _park(self, a: _Active) -> None:
        """Take ``a``'s rows out of the batch (keys, values, validity, hidden state kept aside)."""
        sl = slice(a.start, self.pos)
        a.parked = {"k": [k[a.rows, :, sl].clone() for k in self.cache.k],
                    "v": [v[a.rows, :, sl].clone() for v in self.cache.v],
                    "valid": self.cache.valid[a.rows, sl].clone(), "h": self.hidden[a.rows].clone(),
                    "pos": self.pos, "span": self.pos - a.start}
        self._remove(a)
        self.parked.append(a)
        self.stats["parks"] += 1

    def _resume(self, a: _Active) -> bool:
        st = a.parked
        start = self._room(len(a.rows), st["span"], a.L - 1 - a.step)
        if start is None:
            return False
        d = self.pos - st["pos"]
        cos, sin = self._turn(d)
        a.rows = self._new_rows(len(a.rows))
        rows = slice(a.rows[0], a.rows[-1] + 1)
        for k, v, pk, pv in zip(self.cache.k, self.cache.v, st["k"], st["v"]):
            k[rows, :, start: self.pos] = rotary(pk, cos, sin) if d else pk
            v[rows, :, start: self.pos] = pv
        self.cache.valid[rows, start: self.pos] = st["valid"]
        self.hidden[rows] = st["h"]
        a.start, a.parked = start, None
        self.parked.remove(a)
        self.active.append(a)
        self._update_all_valid()
        return True

    # --- one batched step --------------------------------------------------------------------------------------
    def _tick(self) -> None:
        n, S = self.n, self.pattern.streams
        book = torch.empty(n, S, 1, dtype=torch.long, device=self.device)
        for a in self.active:
            book[a.rows] = a.book[:, a.step: a.step + 1]
        logits = self.lm.logits_for(self.hidden[:n], book)[:, :, 0]  # [n, S, V]
        finished = []
        for group, toks in self._draw(self._guided(logits)):
            for a, tok in zip(group, toks):
                a.tok = self._emit(a, tok[None])
                a.step += 1
                if a.step >= a.L:
                    finished.append(a)
        self.stats["steps"] += 1
        self.stats["row_steps"] += n
        for a in finished:
            a.job.events.put(("end", None))
            self._remove(a)
        if not self.active:
            return
        n = self.n
        tok = torch.empty(n, S, 1, dtype=torch.long, device=self.device)
        book = torch.empty(n, S, 1, dtype=torch.long, device=self.device)
        for a in self.active:
            tok[a.rows] = a.tok[:, :, None]
            book[a.rows] = a.book[:, a.step - 1: a.step]
        x = self.lm.embed_steps(tok, book)
        for a in self.active:
            if a.frames_in is not None:
                x[a.rows] = x[a.rows] + self._frame_in(a, a.step)
        view = KVCache.__new__(KVCache)
        view.k, view.v = [k[:n] for k in self.cache.k], [v[:n] for v in self.cache.v]
        # the window: no active row holds a key before the earliest start, so no query reads the slots before it
        view.valid, view.pos, view.max_len, view.lo = self.cache.valid[:n], self.pos, self.C, min(a.start for a in self.active)
        view.all_valid, view.cross_src, view.cross_kv = self.cache.all_valid, None, {}
        self.hidden[:n] = self.lm.run(x, Conditioning(), None, view)
        self.pos = view.pos

    def _guided(self, logits: torch.Tensor) -> torch.Tensor:
        """``logits [n, S, V]`` of the cache rows -> ``[A, S, V]``, one per active stream in order: its conditional
        row's, or with guidance ``uncond + cfg_scale * (cond - uncond)`` (elementwise, as the offline loop)."""
        act = self.active
        lg = logits.index_select(0, torch.tensor([a.rows[0] for a in act], device=self.device))
        g = [i for i, a in enumerate(act) if a.guided]
        if g:
            gi = torch.tensor(g, device=self.device)
            u = logits.index_select(0, torch.tensor([act[i].rows[1] for i in g], device=self.device))
            scale = torch.tensor([act[i].job.params.cfg_scale for i in g], dtype=logits.dtype, device=self.device)
            lg.index_copy_(0, gi, u + scale[:, None, None] * (lg.index_select(0, gi) - u))
        return lg

    def _draw(self, lg: torch.Tensor):
        """Every active stream's next slot tokens, streams with the same top-k / top-p drawn in one call (each from
        its own generator, so a stream draws what it would alone): yields ``(streams, tokens [len, S])``."""
        groups: dict[tuple, list[int]] = {}
        for i, a in enumerate(self.active):
            groups.setdefault((a.job.params.top_k, a.job.params.top_p), []).append(i)
        for idx in groups.values():
            group = [self.active[i] for i in idx]
            temps = torch.stack([a.temps[:, a.step] for a in group])
            rows = lg if len(idx) == len(self.active) else lg.index_select(0, torch.tensor(idx, device=self.device))
            yield group, draw_each(rows, temps, group[0].job.params, [a.gen for a in group])

    def _emit(self, a: _Active, tok: torch.Tensor) -> torch.Tensor:
        """Step ``a.step``'s drawn tokens ``[1, S]`` of ``a``: force the prompt's, blank the slots the pattern leaves
        empty, record and emit the frames it completes."""
        s, job = a.step, a.job
        bk, mk, fr = a.book[None, :, s], a.mask[None, :, s], a.frame[None, :, s]
        if job.prompt is not None:
            Tp = job.prompt.shape[-1]
            tok = torch.where(mk & (fr < Tp), job.prompt[bk, fr.clamp(0, Tp - 1)], tok)
        tok = torch.where(mk, tok, torch.full_like(tok, self.cfg.special))
        sel = mk[0]
        a.grid[bk[0][sel], fr[0][sel]] = tok[0][sel]
        self._send(a, s + 1)
        return tok

    def _send(self, a: _Active, steps: int) -> None:
        """Emit the frames of ``a`` that its first ``steps`` steps completed and were not sent yet."""
        job, T = a.job, a.job.frames
        now = self.pattern.frames_done(steps, T) if steps <= self.pattern.length(T) else T
        if now > a.done:
            job.events.put(("codes", a.grid[:, a.done: now].clone()))
            job.emitted += now - a.done
            self.stats["frames"] += now - a.done
            a.done = now
