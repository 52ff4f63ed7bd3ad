"""The batch engine in a process of its own: :class:`EngineProcess` has :class:`~tokenwave.serve.engine.BatchEngine`'s
interface (``submit``, ``stats``, ``n``, ``parked``, ``streams``, ``queue_depth``, ``start``, ``stop``) and runs one
in a child process.

Why: the engine's decode loop is one Python thread, and between its torch calls it needs the interpreter lock. In
the server's process it shares that lock with every stream's decoder, watermark and socket. Measured with the
default TTS model and 8 guided streams on 2 cores (int8, one torch thread): the engine alone makes 126 steps/s; with
8 threads decoding chunks at real-time pace in the same process, 107; with the same threads in another process, 130.
In the server, 80 in-process. Here the child holds its own lock; the server's process only decodes and sends.

The child is ``python -m tokenwave.serve.process FD`` (not ``multiprocessing``'s spawn, which re-imports the
caller's main script: a script that builds a server at its top level would start itself again). Wire: a socket
pair; every message a plain pickle (tensors by value, no shared memory). The parent first sends the model and the
engine's settings, then ``("submit", id, cond, frames, params, prompt)``, ``("taken", id, n)`` (the frames a job's
consumer took, when the child needs them for backpressure: :class:`_Link`), ``("cancel", id)`` and ``("stop",)``;
the child answers after each engine round with its events ``[(id, kind, value), ...]`` (codes as numpy arrays) and
its counters. The codes are the engine's own: a lone stream gets exactly the tokens the in-process engine makes.

If the child dies, every job it held gets :class:`EngineProcessError`; a child that had run
:attr:`EngineProcess.RESTART_AFTER_S` is started again for the jobs that follow, one that dies younger is not (then
every later submit gets the error, and ``/healthz`` says so).
"""
from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from tokenwave.errors import TokenwaveError
from tokenwave.lm.model import TokenLM
from tokenwave.serve.engine import BatchEngine, Job, check_job, new_stats

log = logging.getLogger("tokenwave.serve")
SNAPSHOT_S = 0.05    # counters go with the events, when the batch changes, and at most this late otherwise


class EngineProcessError(TokenwaveError):
    """The engine's process stopped."""


def _portable(err: BaseException) -> BaseException:
    """An exception that survives a pickle round trip (its own, else a RuntimeError with its text)."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:  # noqa: BLE001 - any unpicklable exception
        return RuntimeError(f"{type(err).__name__}: {err}")


class _Outbox:
    """The child's side: events of the engine's jobs, gathered on the engine's thread and sent once per round."""

    def __init__(self, conn, engine: BatchEngine) -> None:
        self.conn, self.engine = conn, engine
        self.events: list = []
        self.lock, self.send_lock = threading.Lock(), threading.Lock()
        self.jobs: dict[int, Job] = {}
        self.sent_at = 0.0
        self.shape, self.stats = None, None  # the counters last sent

    def relay(self, jid: int) -> _Relay:
        return _Relay(self, jid)

    def put(self, jid: int, kind: str, value) -> None:
        if kind == "codes":
            value = value.numpy()
        elif kind == "error":
            value = _portable(value)
        if kind != "codes":
            self.jobs.pop(jid, None)
        with self.lock:
            self.events.append((jid, kind, value))

    def flush(self) -> None:
        with self.lock:
            events, self.events = self.events, []
        now, e = time.monotonic(), self.engine
        shape = (e.n, len(e.parked), len(e.waiting))
        if not events and shape == self.shape and (now - self.sent_at < SNAPSHOT_S or e.stats == self.stats):
            return
        self.shape, self.stats = shape, dict(e.stats)
        counters = {"stats": self.stats, "n": e.n, "parked": len(e.parked), "waiting": len(e.waiting)}
        try:
            with self.send_lock:
                self.conn.send_bytes(pickle.dumps((events, counters), protocol=pickle.HIGHEST_PROTOCOL))
        except (BrokenPipeError, OSError):  # the parent is gone: the reader loop ends too
            pass
        self.sent_at = now


class _Relay:
    """``Job.events`` in the child: what the engine puts goes to the parent."""

    def __init__(self, box: _Outbox, jid: int) -> None:
        self.box, self.jid = box, jid

    def put(self, item) -> None:
        self.box.put(self.jid, *item)


def _child(conn: Connection) -> None:
    """The child process: an engine, and a loop that reads the parent's messages until "stop" or a closed pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the server stops its engines
    with warnings.catch_warnings():  # torch's notes on unpickling storages and int8 weights: nothing to act on
        warnings.simplefilter("ignore", UserWarning)
        lm, max_rows, ahead_frames, name, threads = pickle.loads(conn.recv_bytes())
    torch.set_num_threads(threads)
    engine = BatchEngine(lm, max_rows=max_rows, ahead_frames=ahead_frames, name=name)
    box = _Outbox(conn, engine)
    engine.on_tick = box.flush
    engine.start()
    try:
        while True:
            try:
                msg = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                break
            kind = msg[0]
            if kind == "submit":
                _, jid, cond, frames, params, prompt = msg
                job = Job(cond, frames, params, prompt)
                job.events = box.relay(jid)
                box.jobs[jid] = job
                try:
                    engine.submit(job)
                except Exception as err:  # noqa: BLE001 - this job's own failure, told to its consumer
                    box.put(jid, "error", err)
                    box.flush()
            elif kind == "taken":
                job = box.jobs.get(msg[1])
                if job is not None:
                    job.taken = msg[2]
            elif kind == "cancel":
                job = box.jobs.pop(msg[1], None)
                if job is not None:
                    job.cancel()
            elif kind == "stop":
                break
    finally:
        engine.stop()
        conn.close()


class EngineProcess:
    """A :class:`~tokenwave.serve.engine.BatchEngine` of ``lm`` in a child process (see the module's docstring).

    ``threads``: the child's torch threads (default: this process's). ``lm`` is sent once, pickled (int8 weights
    included); the child starts in the background, and jobs submitted meanwhile wait in the pipe."""

    RESTART_AFTER_S = 10.0  # a child that dies after running this long is started again (a crash loop is not)

    def __init__(self, lm: TokenLM, max_rows: int = 32, ahead_frames: int = 225, name: str = "lm",
                 threads: int | None = None) -> None:
        self.lm, self.name, self.max_rows, self.ahead = lm, name, max_rows, ahead_frames
        self.stats = new_stats()  # the child's, as its last message had them
        self.n, self.parked_count, self.waiting_count = 0, 0, 0
        self._jobs: dict[int, Job] = {}
        self._next = 0
        self._lock = threading.Lock()
        self._dead: EngineProcessError | None = None
        self._stopping = False
        self._settings = (max_rows, ahead_frames, name, threads or torch.get_num_threads())
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._started_at = 0.0
        self.restarts = 0

    # --- BatchEngine's interface ----------------------------------------------------------------------------------
    def start(self) -> EngineProcess:
        if self._reader is None:
            self._spawn()
        return self

    def _spawn(self, locked: bool = False) -> None:
        """Start a child; ``locked``: the caller holds the pipe's lock (a restart swapping the pipe under it)."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)  # the child imports this package from where this process found it
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        with theirs:
            self._proc = subprocess.Popen([sys.executable, "-m", "tokenwave.serve.process", str(theirs.fileno())],
                                          pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        self._conn = Connection(ours.detach())
        self._started_at = time.monotonic()
        # the model goes over while the child imports torch: held until then, the pipe's lock keeps any submit
        # behind it (and the servers' engines start side by side)
        if not locked:
            self._lock.acquire()
        self._reader = threading.Thread(target=self._read, name=f"engine-{self.name}-reader", daemon=True)
        self._reader.start()

    @property
    def alive(self) -> bool:
        """Whether the child runs (or starts); False once it stopped for good."""
        return self._reader is not None and self._dead is None

    def stop(self) -> None:
        if self._reader is None:
            return
        self._stopping = True
        self._send(("stop",))
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        self._reader.join(5)
        self._conn.close()

    def submit(self, job: Job) -> Job:
        check_job(self.lm, job)
        if self._dead is not None:
            raise self._dead
        with self._lock:
            jid, self._next = self._next, self._next + 1
            self._jobs[jid] = job
        job.link = _Link(self, jid, job)
        self._send(("submit", jid, job.cond, job.frames, job.params, job.prompt))
        return job

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def parked(self) -> range:
        return range(self.parked_count)  # only their number crosses the pipe

    @property
    def queue_depth(self) -> int:
        return self.waiting_count

    @property
    def streams(self) -> int:
        return len(self._jobs)

    # --- the pipe -------------------------------------------------------------------------------------------------
    def _send(self, msg: tuple) -> None:
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            with self._lock:
                self._conn.send_bytes(data)
        except (BrokenPipeError, OSError) as err:
            if msg[0] not in ("stop", "cancel", "taken"):
                raise self._died() from err

    def _forget(self, jid: int) -> bool:
        with self._lock:
            return self._jobs.pop(jid, None) is not None

    def _read(self) -> None:
        try:
            self._conn.send_bytes(pickle.dumps((self.lm, *self._settings), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass  # the child is gone: the loop below reads EOF and says so
        finally:
            self._lock.release()
        while True:
            try:
                events, counters = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError):
                break
            self.stats, self.n = counters["stats"], counters["n"]
            self.parked_count, self.waiting_count = counters["parked"], counters["waiting"]
            for jid, kind, value in events:
                job = self._jobs.get(jid)
                if job is None:  # cancelled meanwhile
                    continue
                if kind == "codes":
                    value = torch.from_numpy(value)
                    job.emitted += value.shape[-1]
                else:
                    self._forget(jid)
                job.events.put((kind, value))
        # a child that ran a while is started again (its jobs are lost, later ones run); one that dies young is not
        restart = not self._stopping and time.monotonic() - self._started_at >= self.RESTART_AFTER_S
        err = self._died()
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for job in jobs:
            job.events.put(("error", err))
        self.n = self.parked_count = self.waiting_count = 0
        if restart:
            log.warning("%s; starting it again", err.message)
            self._lock.acquire()  # no submit between the old pipe and the new one
            self._conn.close()
            self.restarts += 1
            self._dead = None
            self._spawn(locked=True)

    def _died(self) -> EngineProcessError:
        if self._dead is None and self._stopping:
            self._dead = EngineProcessError(f"the {self.name} engine was stopped", "start the server again")
        if self._dead is None:
            try:
                code = self._proc.wait(1)
            except subprocess.TimeoutExpired:
                code = None
            self._dead = EngineProcessError(
                f"the {self.name} engine's process stopped" + (f" (exit code {code})" if code is not None else ""),
                f"send the request again (the engine starts again if it had run {self.RESTART_AFTER_S:g} s); if it "
                "fails again, restart the server: its log says why the process ended")
        return self._dead


class _Link:
    """A submitted job's line to the engine's process (``Job.link``): its cancel, and the frames it took. The child
    parks a job whose consumer is ``ahead`` frames behind and resumes it at ``ahead / 2``, so the count goes over
    whenever the child's view of the gap (frames emitted minus the last count sent) passes ``ahead / 2``: about one
    message every ``ahead / 2`` frames for a consumer that keeps up, one per read for one that catches up."""

    def __init__(self, engine: EngineProcess, jid: int, job: Job) -> None:
        self.engine, self.jid, self.job, self.sent = engine, jid, job, 0

    def cancel(self) -> None:
        if self.engine._forget(self.jid):
            self.engine._send(("cancel", self.jid))

    def taken(self, n: int) -> None:
        if n > self.sent and (self.job.emitted - self.sent > self.engine.ahead // 2 or n >= self.job.frames):
            self.sent = n
            self.engine._send(("taken", self.jid, n))


__all__ = ["EngineProcess", "EngineProcessError"]

if __name__ == "__main__":
    _child(Connection(int(sys.argv[1])))
