"""The server under load and attack: no memory kept across engine jobs, abandoned requests cancelled at once,
admission by measured capacity with a bounded queue, backpressure that parks and cancels, audio uploads checked
from their header, refusals that leak nothing, and the smaller guards (log redaction, Origin, keys, limits)."""
import gc
import json
import socket
import threading
import time

import numpy as np
import pytest
import torch

import task_models as tm
from tokenwave.conditioning import Conditioning
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams
from tokenwave.serve.engine import BatchEngine, Job
from tokenwave.serve.service import ServeConfig, Service
from test_serve import Running as _Running, _wait, models  # noqa: F401 - the tiny task models fixture

pytest.importorskip("fastapi")


class Running(_Running):
    """The server on a real socket; ``small_send_buffer``: on the socket ``tokenwave serve`` listens on."""

    def __init__(self, service, small_send_buffer: bool = False) -> None:
        if small_send_buffer:
            self._start_on_small_buffers(service)
        else:
            super().__init__(service)

    def _start_on_small_buffers(self, service) -> None:
        import uvicorn

        from tokenwave.serve.app import listen_socket, make_app

        sock = listen_socket("127.0.0.1", 0)
        self.service, self.port = service, sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(make_app(service), log_level="warning",
                                                    ws_max_size=service.config.max_body_bytes))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        assert _wait(lambda: self.server.started, timeout=20)
        self.http, self.ws = f"http://127.0.0.1:{self.port}", f"ws://127.0.0.1:{self.port}/v1/stream"


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


# --- 2. abandoned requests, wrong keys -----------------------------------------------------------------------------
def _slow(engine, monkeypatch, seconds=0.02):
    """Slow an engine's step down (an engine in a thread: ``ServeConfig(engine="thread")``)."""
    tick = engine._tick

    def slow_tick():  # slow generation down so the requests are still rendering when their clients leave
        time.sleep(seconds)
        tick()

    monkeypatch.setattr(engine, "_tick", slow_tick)


def _post_raw(port: int, path: str, body: dict) -> socket.socket:
    data = json.dumps(body).encode()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return s


def test_abandoned_http_requests_stop_and_free_their_slots_within_a_second(models, monkeypatch):
    root, codec = models
    svc = Service({"sfx": root / "sfx"}, codec, ServeConfig(max_streams=2, max_duration=3.0, engine="thread"))
    run = Running(svc)
    try:
        engine = svc.engines["sfx"]
        _slow(engine, monkeypatch)
        socks = [_post_raw(run.port, "/v1/sfx", {"prompt": "organ", "duration": 3.0}) for _ in range(2)]
        assert _wait(lambda: svc.active == 2 and engine.streams == 2)
        time.sleep(0.2)
        t0 = time.perf_counter()
        for s in socks:
            s.close()  # the clients give up (as `timeout 0.5 curl` does)
        assert _wait(lambda: svc.active == 0 and engine.streams == 0, timeout=5.0)
        assert time.perf_counter() - t0 < 1.0
        assert svc.metrics.cancelled == 2 and svc.metrics.finished == 0
        ws_client = pytest.importorskip("websockets.sync.client")
        streams = []
        for _ in range(2):  # the same over WebSocket
            ws = ws_client.connect(run.ws, max_size=None).__enter__()
            ws.send(json.dumps({"task": "sfx", "prompt": "organ", "duration": 3.0}))
            assert json.loads(ws.recv(10))["type"] == "started"
            streams.append(ws)
        assert _wait(lambda: svc.active == 2 and engine.streams == 2)
        t0 = time.perf_counter()
        for ws in streams:
            ws.close()
        assert _wait(lambda: svc.active == 0 and engine.streams == 0, timeout=5.0)
        assert time.perf_counter() - t0 < 1.0 and svc.metrics.cancelled == 4
    finally:
        run.stop()


def test_wrong_keys_are_rate_limited_by_default(models):
    from fastapi.testclient import TestClient

    from tokenwave.serve.app import make_app

    root, codec = models
    svc = Service({"sfx": root / "sfx"}, codec, ServeConfig(api_keys=("k1",), max_streams=2, max_duration=1.0))
    try:
        client = TestClient(make_app(svc))
        body = {"prompt": "rain", "duration": 0.2}
        codes = [client.post("/v1/sfx", json=body, headers={"X-API-Key": f"guess{i}"}).status_code for i in range(14)]
        assert codes[:10] == [401] * 10 and set(codes[10:]) == {429}, codes
        r = client.post("/v1/sfx", json=body, headers={"X-API-Key": "k1"})  # no oracle while the client is blocked
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "wrong API keys" in r.json()["error"]
    finally:
        svc.close()


# --- 5. audio uploads checked from the header ----------------------------------------------------------------------
def _flac(seconds: float, rate: int, channels: int) -> bytes:
    import io

    import numpy as np
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.zeros((int(seconds * rate), channels), np.int16), rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def test_voice_uploads_are_checked_from_the_header_before_decoding(monkeypatch, tmp_path):
    import base64
    import io

    import soundfile as sf

    from tokenwave.audio.io import load_audio, read_audio_header
    from tokenwave.errors import AudioFileError
    from tokenwave.serve.app import decode_voice_audio

    def no_decode(*a, **k):
        raise AssertionError("decoded before the header was checked")

    absurd = _flac(2.0, 655_350, 8)  # the attack: a few hundred KB that decode to hundreds of MB
    assert len(absurd) < 200_000
    info = sf.info(io.BytesIO(absurd))
    assert (info.samplerate, info.channels, info.frames) == (655_350, 8, 2 * 655_350)
    with pytest.raises(AudioFileError, match="655350 Hz"):
        read_audio_header(absurd)
    assert read_audio_header(_flac(1.0, 24_000, 1)).frames == 24_000
    monkeypatch.setattr(sf, "read", no_decode)
    with pytest.raises(AudioFileError, match="655350 Hz"):
        decode_voice_audio(base64.b64encode(absurd).decode(), 30.0)
    with pytest.raises(AudioFileError, match="8 channels"):
        decode_voice_audio(base64.b64encode(_flac(2.0, 24_000, 8)).decode(), 30.0)
    with pytest.raises(AudioFileError, match=r"holds 40.0 s, over 30 s"):  # seconds from the header, at its rate
        decode_voice_audio(base64.b64encode(_flac(40.0, 48_000, 1)).decode(), 30.0)
    monkeypatch.undo()
    wav, sr = decode_voice_audio(base64.b64encode(_flac(2.0, 48_000, 2)).decode(), 30.0)
    assert sr == 48_000 and wav.shape == (96_000,)
    (tmp_path / "absurd.flac").write_bytes(absurd)  # the CLI's loader refuses it too, before decoding
    with pytest.raises(AudioFileError, match="655350 Hz"):
        load_audio(tmp_path / "absurd.flac")


# --- 3. and 6. what the server shows and accepts -------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_server(models):
    root, codec = models
    svc = Service({"tts": root / "tts", "sfx": root / "sfx"}, codec, ServeConfig(max_streams=2, max_duration=3.0))
    run = Running(svc)
    yield run
    run.stop()


def test_models_show_names_not_paths_and_consent_refusals_leak_nothing(small_server):
    import base64
    import io

    import httpx
    import numpy as np
    import soundfile as sf

    m = httpx.get(small_server.http + "/v1/models").json()
    assert m["tasks"]["tts"]["model"] == "tts" and m["tasks"]["sfx"]["model"] == "sfx"
    assert str(small_server.service.tasks["tts"].folder.parent) not in json.dumps(m)
    buf = io.BytesIO()
    t = np.arange(3 * tm.SR) / tm.SR
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), tm.SR, format="WAV")
    r = httpx.post(small_server.http + "/v1/tts", json={"text": "hi", "voice_audio": base64.b64encode(buf.getvalue()).decode()})
    assert r.status_code == 400 and r.json()["error"].startswith("the voice prompt matches no consented voice (fix:")
    assert not any(c.isdigit() for c in r.json()["error"])


def test_openapi_limits_are_the_servers(models):
    from tokenwave.serve.app import make_app

    root, codec = models
    for cfg in (ServeConfig(max_streams=1), ServeConfig(max_streams=1, max_duration=12.0, max_text_chars=300)):
        svc = Service({"sfx": root / "sfx"}, codec, cfg)
        try:
            schemas = make_app(svc).openapi()["components"]["schemas"]
            assert schemas["TTSFileRequest"]["properties"]["text"]["maxLength"] == cfg.max_text_chars
            assert schemas["TaggedFileRequest"]["properties"]["duration"]["maximum"] == cfg.max_duration
        finally:
            svc.close()
    assert ServeConfig().max_duration == 300.0 and ServeConfig().max_text_chars == 1000  # 5 minutes of music


def test_bad_bodies_and_first_frames_get_clear_errors(small_server):
    import httpx

    ws_client = pytest.importorskip("websockets.sync.client")
    r = httpx.post(small_server.http + "/v1/tts", content=b'{"text": "\xff\xfe"}',
                   headers={"content-type": "application/json"})
    assert 400 <= r.status_code < 500 and set(r.json()) == {"error", "status"} and r.json()["status"] == r.status_code
    for frame, message in ((b"\x00\x01binary", "text frame"), ("[" * 100_000 + "]" * 100_000, "nested too deeply")):
        with ws_client.connect(small_server.ws, max_size=None) as ws:
            ws.send(frame)
            event = json.loads(ws.recv(10))
            assert event["type"] == "error" and event["status"] == 400 and message in event["error"], event


def test_websocket_origin_is_checked_without_a_key(small_server, models):
    ws_client = pytest.importorskip("websockets.sync.client")
    request = json.dumps({"task": "tts", "text": "Hi."})
    with ws_client.connect(small_server.ws, origin="http://evil.example") as ws:  # refused before any request
        event = json.loads(ws.recv(10))
        assert event["status"] == 403 and "origin" in event["error"].lower()
    with ws_client.connect(small_server.ws, origin=small_server.http) as ws:  # the player page: same origin
        ws.send(request)
        assert json.loads(ws.recv(10))["type"] == "started"
    root, codec = models
    svc = Service({"tts": root / "tts"}, codec, ServeConfig(max_streams=1, allowed_origins=("https://app.example",)))
    run = Running(svc)
    try:
        with ws_client.connect(run.ws, origin="https://app.example") as ws:
            ws.send(request)
            assert json.loads(ws.recv(10))["type"] == "started"
    finally:
        run.stop()


def test_keys_in_the_query_are_redacted_from_the_access_log_and_compared_in_constant_time(models, caplog,
                                                                                          monkeypatch):
    import hmac
    import logging

    from fastapi.testclient import TestClient

    from tokenwave.serve.app import make_app

    root, codec = models
    svc = Service({"sfx": root / "sfx"}, codec, ServeConfig(api_keys=("sekrit",), max_streams=1, max_duration=1.0))
    try:
        calls = []
        real = hmac.compare_digest
        monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append(1) or real(a, b))
        client = TestClient(make_app(svc))
        assert client.get("/v1/models").status_code == 200
        r = client.post("/v1/sfx?api_key=sekrit", json={"prompt": "rain", "duration": 0.2})
        assert r.status_code == 200 and calls
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET",
                                                     "/v1/stream?format=pcm16&api_key=sekrit&x=1", "1.1", 101)
        assert "sekrit" not in caplog.text and "api_key=REDACTED&x=1" in caplog.text
    finally:
        svc.close()


def test_serve_warns_without_a_key_and_sets_its_thread_count(models, tmp_path):
    import os
    import subprocess
    import sys

    root, codec = models
    codec.save(tmp_path / "codec")
    env = {k: v for k, v in os.environ.items() if k != "TOKENWAVE_API_KEY"}
    env.update(TOKENWAVE_CHECKPOINTS=str(tmp_path / "empty"))
    run = subprocess.run([sys.executable, "-m", "tokenwave", "serve", "--codec", str(tmp_path / "codec"),
                          "--host", "0.0.0.0", "--threads", "3", "--max-streams", "2"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2 and "no task model could be loaded" in run.stderr
    assert "without an API key" in run.stderr and "torch threads: 3" in run.stderr


@pytest.mark.parametrize("cores, expected", [(None, 1), (1, 1), (2, 1), (3, 1), (16, 8)])
def test_default_threads_leave_the_engine_and_the_decoder_a_core_each(monkeypatch, cores, expected):
    """Without --threads the server takes half the cores: its engine and decoder threads each run a team of that
    many torch threads at once (a team of all the cores each oversubscribed 2 cores)."""
    import os

    from tokenwave.serve.capacity import default_threads

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert default_threads() == expected


# --- 4. admission by measured capacity, a bounded queue, backpressure ----------------------------------------------
def test_default_limit_is_measured_once_and_stored(models, tmp_path, monkeypatch):
    from tokenwave.serve import capacity

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root, codec = models
    svc = Service({"sfx": root / "sfx"}, codec, ServeConfig())  # max_streams unset: measured
    try:
        measured = svc.config.max_streams
        assert 1 <= measured <= capacity.MAX_STREAMS and svc.capacity["sfx"]["source"] == "measured at start-up"
        assert svc.engines["sfx"].max_rows == 2 * measured
        loads = svc.capacity["sfx"]["load"]
        assert all(float(loads[str(n)]) <= capacity.MARGIN for n in capacity.PROBE_SIZES if n <= measured
                   and str(n) in loads)
    finally:
        svc.close()
    stored = json.loads(capacity.cache_path().read_text())
    (key, entry), = stored.items()
    assert key.startswith("sfx:") and entry["streams"] == measured
    # the next start reads it (a benchmark's measurement, stored the same way, wins over the probe)
    capacity.store(key, {"streams": 5, "source": "benchmarks/serve.py"})
    monkeypatch.setattr(capacity, "measure", lambda *a, **k: pytest.fail("measured again"))
    svc = Service({"sfx": root / "sfx"}, codec, ServeConfig())
    try:
        assert svc.config.max_streams == 5 and svc.capacity["sfx"]["source"] == "benchmarks/serve.py"
    finally:
        svc.close()


def test_requests_over_the_limit_wait_in_a_bounded_queue_with_their_place(models, monkeypatch):
    import httpx

    ws_client = pytest.importorskip("websockets.sync.client")
    root, codec = models
    svc = Service({"sfx": root / "sfx", "tts": root / "tts"}, codec,
                  ServeConfig(max_streams=1, max_queue=1, queue_timeout=0.5, max_duration=3.0, engine="thread"))
    run = Running(svc)
    try:
        _slow(svc.engines["sfx"], monkeypatch)
        holder = ws_client.connect(run.ws, max_size=None).__enter__()
        holder.send(json.dumps({"task": "sfx", "prompt": "rain", "duration": 3.0}))
        assert json.loads(holder.recv(10))["type"] == "started"
        waiting = ws_client.connect(run.ws, max_size=None).__enter__()
        waiting.send(json.dumps({"task": "tts", "text": "Hi there."}))
        assert json.loads(waiting.recv(10)) == {"type": "queued", "position": 1}
        assert _wait(lambda: svc.queued == 1)
        r = httpx.post(run.http + "/v1/sfx", json={"prompt": "rain", "duration": 0.5})  # the queue is full
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1 and "1 waiting" in r.json()["error"]
        holder.close()  # the slot frees: the one waiting gets it
        events = []
        for msg in waiting:
            if isinstance(msg, str):
                events.append(json.loads(msg)["type"])
        assert events[0] == "started" and events[-1] == "done"
        waiting.close()
        assert _wait(lambda: svc.active == 0 and svc.queued == 0)
        # a request that waits longer than queue_timeout gets 503 with Retry-After
        holder = ws_client.connect(run.ws, max_size=None).__enter__()
        holder.send(json.dumps({"task": "sfx", "prompt": "rain", "duration": 3.0}))
        assert json.loads(holder.recv(10))["type"] == "started"
        t0 = time.perf_counter()
        r = httpx.post(run.http + "/v1/sfx", json={"prompt": "rain", "duration": 0.5}, timeout=10)
        assert r.status_code == 503 and r.headers["retry-after"] and "for 0.5 s" in r.json()["error"]
        assert 0.4 < time.perf_counter() - t0 < 5
        holder.close()
        assert _wait(lambda: svc.active == 0 and svc.queued == 0)
    finally:
        run.stop()


def test_a_client_that_stops_reading_is_parked_then_cancelled(models):
    ws_client = pytest.importorskip("websockets.sync.client")
    root, codec = models
    svc = Service({"sfx": root / "sfx"}, codec, ServeConfig(max_streams=2, max_duration=30.0, ahead_seconds=0.2,
                                                            stall_seconds=1.0, decode_frames=1))
    run = Running(svc, small_send_buffer=True)
    try:
        engine = svc.engines["sfx"]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a client that reads nothing fills this soon
        sock.connect(("127.0.0.1", run.port))
        ws = ws_client.connect(run.ws, sock=sock, max_size=None).__enter__()
        ws.send(json.dumps({"task": "sfx", "prompt": "rain", "duration": 30.0}))
        assert json.loads(ws.recv(10))["type"] == "started"
        # paced to real time: the job runs ahead of its consumer, so the engine parks it (its rows leave the batch)
        assert _wait(lambda: engine.stats["parks"] >= 1, timeout=10)
        assert _wait(lambda: svc.metrics.cancelled == 1 and svc.active == 0 and engine.streams == 0, timeout=15)
        assert svc.metrics.finished == 0
        ws.close()
    finally:
        run.stop()


def test_int8_serving_streams_what_the_int8_tts_makes_and_keeps_its_own_capacity(models, tmp_path, monkeypatch):
    from tokenwave.errors import InvalidArgumentError
    from tokenwave.serve import capacity
    from tokenwave.serve.audio import pcm16
    from tokenwave.tasks import Sampling, load_task

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root, codec = models
    with pytest.raises(InvalidArgumentError, match="unknown precision 'fp8'"):
        Service({"tts": root / "tts"}, codec, ServeConfig(max_streams=1, precision="fp8"))
    with pytest.raises(InvalidArgumentError, match="unknown engine placement 'gpu'.*process, thread"):
        Service({"tts": root / "tts"}, codec, ServeConfig(max_streams=1, engine="gpu"))
    svc = Service({"tts": root / "tts"}, codec, ServeConfig(max_streams=1, precision="int8"))
    try:
        assert svc.tasks["tts"].precision == "int8" and svc.models()["tts"]["precision"] == "int8"
        chunks = list(svc.stream("tts", {"text": "Hello there.", "voice": "alice", "seed": 2}))
        ref = load_task("tts", root / "tts", codec, precision="int8").synthesize("Hello there.", "alice",
                                                                                Sampling(seed=2))
        fp32 = load_task("tts", root / "tts", codec).synthesize("Hello there.", "alice", Sampling(seed=2))
        got = np.concatenate(chunks)
        assert pcm16(got) == pcm16(ref.wav) and ref.metadata["precision"] == "int8"
        assert len(got) != len(fp32.wav) or not np.array_equal(got, fp32.wav)  # int8 weights make other audio
    finally:
        svc.close()
    # a stored capacity belongs to one precision: fp32 and int8 keys differ, fp32's as before
    fp32_key, int8_key = (capacity.capacity_key("tts", root / "tts", 1, p) for p in ("fp32", "int8"))
    assert fp32_key != int8_key and "precision" not in fp32_key and ":precision=int8:" in int8_key
