"""The server's state without HTTP: the loaded tasks, one batching engine per task model, stream slots (admission
control), and each request turned into a stream of finished audio chunks.

A request's audio comes out of the offline task's own generation loop — TTS sentence by sentence
(:meth:`tokenwave.tasks.tts.TTS.render`), music and effects window by window
(:meth:`tokenwave.tasks.tagged.TaggedTask.render`) — given two parameters of the server's: the code source
(:class:`EngineSource`: every LM run is a :class:`~tokenwave.serve.engine.Job` of the task's shared engine, so the
decode steps of all concurrent requests of a task run as one batch) and the decoding (:class:`ChunkedDecoder`:
chunks of ``decode_frames``, the decoder's state kept per stream; chunks of concurrent streams that wait for the
decoder are decoded together, :class:`~tokenwave.serve.audio.DecodeBatcher`).
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from tokenwave.codec import load_codec
from tokenwave.conditioning import Conditioning
from tokenwave.errors import InvalidArgumentError, TokenwaveError
from tokenwave.lm.sampling import SamplingParams
from tokenwave.nn import check_precision
from tokenwave.serve.audio import DecoderState, Finisher
from tokenwave.serve.capacity import task_capacity
from tokenwave.serve.engine import BatchEngine, Cancelled, Job
from tokenwave.serve.process import EngineProcess
from tokenwave.tasks import load_task
from tokenwave.tasks.base import MissingModelError, Sampling
from tokenwave.tasks.sources import StepDecoder
from tokenwave.tasks.tts import UnknownVoiceError

log = logging.getLogger("tokenwave.serve")
ENGINES = {"process": EngineProcess, "thread": BatchEngine}


class BusyError(TokenwaveError):
    """Every stream slot is taken."""


class Ticket:
    """A request's place in the admission queue; ``granted`` once it holds a stream slot."""

    def __init__(self) -> None:
        self.granted = False


class EngineSource:
    """The server's :class:`~tokenwave.tasks.sources.CodeSource`: each call runs one :class:`Job` on ``engine``,
    batched with every other stream of the task; closing the iterator cancels the job. :meth:`cancel` (from any
    thread) stops the job running now and refuses later ones."""

    def __init__(self, engine: BatchEngine | EngineProcess) -> None:
        self.engine = engine
        self.job: Job | None = None
        self.stopped = False

    def __call__(self, cond: Conditioning, frames: int, params: SamplingParams,
                 prompt: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """See :meth:`tokenwave.tasks.sources.CodeSource.__call__`."""
        if self.stopped:
            raise Cancelled("the stream was cancelled")
        job = self.job = self.engine.submit(Job(cond, frames, params, prompt=prompt))
        if self.stopped:  # cancelled while it was submitted
            job.cancel()
        try:
            yield from job.codes()
        finally:
            job.cancel()

    def cancel(self) -> None:
        self.stopped = True
        if self.job is not None:
            self.job.cancel()


class Stream:
    """A stream's finished float32 chunks (an iterator, as :meth:`Service.stream` returns): ``close()`` from the
    thread that iterates, ``cancel()`` from any thread, e.g. while that thread waits for the next chunk: the
    engine job stops at once and the iterator raises :class:`~tokenwave.serve.engine.Cancelled`."""

    def __init__(self, chunks: Iterator[np.ndarray], source: EngineSource) -> None:
        self.chunks, self.source = chunks, source

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> np.ndarray:
        return next(self.chunks)

    def close(self) -> None:
        self.chunks.close()

    def cancel(self) -> None:
        self.source.cancel()


class ChunkedDecoder(StepDecoder):
    """The server's :class:`~tokenwave.tasks.sources.AudioDecoder`: the offline chunking and phone handling of
    :class:`~tokenwave.tasks.sources.StepDecoder`, decoded with the stream's own state (:class:`DecoderState`), so
    streams interleave on one codec."""

    def __init__(self, codec, decode_frames: int = 0, phones: torch.Tensor | None = None,
                 voice: torch.Tensor | None = None, sent: int = 0) -> None:
        super().__init__(codec, phones, voice, decode_frames, sent)

    def _open(self, codec) -> DecoderState:
        return DecoderState(codec)

    def _samples(self, codes: torch.Tensor, phones: torch.Tensor | None) -> np.ndarray:
        return self.dec.push(codes, phones, self.voice)

    def _tail(self) -> np.ndarray:
        return self.dec.flush()

    def close(self) -> None:
        """Nothing to release: the state lives in this object."""


@dataclass
class ServeConfig:
    max_streams: int = 0           # concurrent requests (HTTP and WebSocket together); 0 = what this machine sustains
                                   # in real time (serve/capacity.py: stored by benchmarks/serve.py or measured)
    max_queue: int = 32            # requests waiting for a stream slot (in order, told their place); beyond: 503
    queue_timeout: float = 30.0    # seconds a request may wait in the queue before 503 with Retry-After
    stall_seconds: float = 20.0    # a stream whose client reads nothing for this long is cancelled
    max_duration: float = 300.0    # seconds a music / sfx request may ask for (at most tasks.base.MAX_DURATION;
                                   # the OpenAPI schema states it)
    max_text_chars: int = 1000
    max_body_bytes: int = 2_000_000
    max_prompt_audio_seconds: float = 30.0
    decode_frames: int = 0         # frames per decode chunk; 0 = 2, 4, 8 (16 after 1.6 s), bit-identical to offline
    ahead_seconds: float = 3.0     # audio a stream may run ahead of its client before it is parked
    api_keys: tuple[str, ...] = ()
    rate_limit: float = 0.0        # requests per minute per key (0 = none)
    auth_failures: float = 10.0    # wrong keys a minute per client before 429 (brute force; 0 = unlimited)
    consent_check: bool = True
    precision: str = "fp32"        # the TTS token LM's weights: fp32 or int8 (faster; its Whisper CER beside fp32's in
                                   # benchmarks/results/tts_precision.json)
    allowed_origins: tuple[str, ...] = ()  # WebSocket Origins accepted besides the server's own when no key is set
    engine: str = "process"        # where each task's batch engine runs: "process" (a child process with its own
                                   # interpreter lock, serve/process.py) or "thread" (a thread of this process)


@dataclass
class Metrics:
    started: int = 0
    finished: int = 0
    failed: int = 0
    rejected: int = 0
    cancelled: int = 0
    ttfa: list = field(default_factory=list)   # seconds, last 1000
    audio_seconds: float = 0.0


class Service:
    """Loads the tasks it can (``models``: task -> checkpoint folder or None for the default) and serves them."""

    def __init__(self, models: dict[str, str | os.PathLike | None], codec=None, config: ServeConfig | None = None,
                 registry=None) -> None:
        self.config = config or ServeConfig()
        check_precision(self.config.precision)  # a typo fails the start, not only the TTS task
        if self.config.engine not in ENGINES:
            raise InvalidArgumentError(f"unknown engine placement {self.config.engine!r}",
                                       f"use one of {', '.join(ENGINES)}")
        self.codec = codec if codec is not None else load_codec(None)
        self.sample_rate = self.codec.sample_rate
        self.registry = registry
        self.tasks: dict[str, object] = {}
        self.missing: dict[str, str] = {}
        self.engines: dict[str, BatchEngine | EngineProcess] = {}
        for name, folder in models.items():
            try:
                # music / sfx stream from the token LM (first audio in one decode step; a flow window takes a whole
                # window's ODE solve, see benchmarks/results/generators-*.json)
                task = load_task(name, folder, self.codec, generator=None if name == "tts" else "lm",
                                 precision=self.config.precision if name == "tts" else None)
            except (MissingModelError, InvalidArgumentError) as err:
                self.missing[name] = err.one_line()
                log.warning("not serving %s: %s", name, err.one_line())
                continue
            self.tasks[name] = task
        if not self.tasks:
            raise MissingModelError("no task model could be loaded: " + "; ".join(self.missing.values()),
                                    "train one (`tokenwave train tts|lm`) or pass --tts/--music/--sfx with a folder")
        self.capacity: dict[str, dict] = {}
        if self.config.max_streams <= 0:  # what this machine sustains in real time, for the slowest task
            self.capacity = {name: task_capacity(name, task, self.codec, engine=self.config.engine)
                             for name, task in self.tasks.items()}
            self.config = replace(self.config, max_streams=min(int(c["streams"]) for c in self.capacity.values()))
            log.info("admitting %d streams (%s)", self.config.max_streams,
                     ", ".join(f"{n}: {c['streams']} {c.get('source', '')}" for n, c in self.capacity.items()))
        for name, task in self.tasks.items():
            ahead = int(self.config.ahead_seconds * task.frame_rate)
            self.engines[name] = ENGINES[self.config.engine](task.lm, max_rows=2 * self.config.max_streams,
                                                             ahead_frames=ahead, name=name).start()
        self.active = 0
        self._waiting: deque[Ticket] = deque()
        self._lock = threading.Lock()
        self.metrics = Metrics()
        self.t0 = time.time()

    def close(self) -> None:
        for e in self.engines.values():
            e.stop()

    # --- models -------------------------------------------------------------------------------------------------
    def models(self) -> dict:
        out = {}
        for name, task in self.tasks.items():
            # the model's name, never its path (no file-system layout for whoever can reach the server)
            entry = {"available": True, "sample_rate": self.sample_rate, "model": task.folder.name,
                     "frame_rate": task.frame_rate}
            if name == "tts":
                entry["voices"] = task.voices
                entry["precision"] = task.precision
            else:
                entry["tags"] = [t for t in task.vocab.tags if "=" in t]
                entry["tag_controls"] = task.tag_fields("lm")  # the request's "tags" (the server streams the LM)
                entry["max_duration"] = self.config.max_duration
            out[name] = entry
        for name, why in self.missing.items():
            out[name] = {"available": False, "reason": why}
        return out

    # --- slots --------------------------------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take a stream slot now, or raise :class:`BusyError` (no waiting)."""
        with self._lock:
            if self.active < self.config.max_streams and not self._waiting:
                self.active += 1
                return
        self.metrics.rejected += 1
        raise BusyError(f"the server is at its limit of {self.config.max_streams} concurrent streams",
                        "retry in a few seconds")

    def enqueue(self) -> Ticket:
        """A slot now (``ticket.granted``), or a place in the bounded queue (:meth:`position`); a full queue raises
        :class:`BusyError`. A granted ticket is given back with :meth:`release`, a waiting one with :meth:`withdraw`."""
        ticket = Ticket()
        with self._lock:
            if self.active < self.config.max_streams and not self._waiting:
                self.active += 1
                ticket.granted = True
                return ticket
            if len(self._waiting) < self.config.max_queue:
                self._waiting.append(ticket)
                return ticket
        self.metrics.rejected += 1
        raise BusyError(f"the server is at its limit of {self.config.max_streams} concurrent streams and "
                        f"{self.config.max_queue} waiting", "retry in a few seconds")

    def position(self, ticket: Ticket) -> int:
        """1 for the next in the queue, 2 after it, ...; 0 once the ticket holds a slot."""
        with self._lock:
            return 0 if ticket.granted else self._waiting.index(ticket) + 1

    def withdraw(self, ticket: Ticket) -> None:
        """Leave the queue (a client gone or timed out), or give the slot back if it was granted meanwhile."""
        with self._lock:
            if not ticket.granted:
                self._waiting.remove(ticket)
                return
        self.release()

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def release(self) -> None:
        """Give a slot back: the first waiting ticket takes it, else it is free."""
        with self._lock:
            if self._waiting:
                self._waiting.popleft().granted = True
            else:
                self.active -= 1

    # --- streams ------------------------------------------------------------------------------------------------
    def stream(self, task: str, req: dict, info: dict | None = None) -> Stream:
        """Check ``req`` for ``task`` (raising a :class:`TokenwaveError` now if it is bad), then return a
        :class:`Stream` of finished (clipped, watermarked) float32 chunks; ``info`` receives the metadata. Closing
        it cancels the work, and so does ``cancel()`` from another thread."""
        info = {} if info is None else info
        source = EngineSource(self.engines[task])
        raw = self._tts(req, info, source) if task == "tts" else self._tagged(task, req, info, source)
        return Stream(self._finish(raw, info), source)

    def _finish(self, raw: Iterator[np.ndarray], info: dict) -> Iterator[np.ndarray]:
        fin = Finisher(self.sample_rate, watermark=True)
        with closing(raw):  # a stream closed early closes the task's loop, which cancels its engine job
            for chunk in raw:
                out = fin.push(chunk)
                if len(out):
                    yield out
        tail = fin.flush()
        if len(tail):
            yield tail
        info["watermark"] = True

    @staticmethod
    def _sampling(req: dict, task) -> Sampling:
        """The request's controls; those it leaves unset take the task's measured defaults for the token LM (the
        generator the server streams), as a CLI render of the same request does."""
        s = Sampling(seed=req.get("seed", 0), temperature=req.get("temperature"), top_k=req.get("top_k"),
                     top_p=req.get("top_p"), cfg_scale=req.get("cfg_scale")).resolved(task.defaults_for("lm"))
        s.check()
        return s

    def _decoding(self, codec, phones: torch.Tensor | None = None, voice: torch.Tensor | None = None,
                  sent: int = 0) -> ChunkedDecoder:
        """The server's :class:`~tokenwave.tasks.sources.Decoding`: ``codec`` is the task's (with the decoder
        fine-tuned for its model, if it has one), so a stream sounds like the CLI's file."""
        return ChunkedDecoder(codec, self.config.decode_frames, phones, voice, sent)

    def _tts(self, req: dict, info: dict, source: EngineSource) -> Iterator[np.ndarray]:
        """A TTS request, checked now (:meth:`TTS.prepare`) -> its audio from :meth:`TTS.render` on the engine."""
        tts = self.tasks["tts"]
        sampling = self._sampling(req, tts)
        voice = req.get("voice")
        if isinstance(voice, str) and voice not in tts.voices:  # never a path on the server
            raise UnknownVoiceError(f"unknown voice {voice!r}", f"use one of {', '.join(tts.voices[:12])}"
                                    " (GET /v1/models), or send a recording as voice_audio")
        utt = tts.prepare(req["text"], voice, sampling, float(req.get("speed", 1.0)), self.config.consent_check,
                          self.registry, req.get("voice_text"), req.get("accent"))
        info.update(utt.info)
        info["sentences"] = len(utt.plans)
        return tts.render(utt, source, self._decoding)

    def _tagged(self, name: str, req: dict, info: dict, source: EngineSource) -> Iterator[np.ndarray]:
        """A music / sfx request, checked now (:meth:`TaggedTask.prepare`, the server's duration limit) -> its
        audio from the token LM's :meth:`TaggedTask.render` on the engine."""
        task = self.tasks[name]
        piece = task.prepare(req["prompt"], float(req.get("duration", 5.0)), self._sampling(req, task),
                             generator="lm", max_duration=self.config.max_duration, tags=req.get("tags"))
        info["tags"] = piece.tags
        if piece.nearest:
            info["nearest_captions"] = piece.nearest
        if piece.from_captions:
            info["tags_from_captions"] = piece.from_captions
        info["total_seconds"] = piece.frames / task.frame_rate
        return task.render(piece, source, self._decoding)
