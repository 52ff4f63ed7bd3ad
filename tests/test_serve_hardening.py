"""The server under load and attack: no memory kept across engine jobs, abandoned requests cancelled at once,
admission by measured capacity with a bounded queue, backpressure that parks and cancels, audio uploads checked
from their header, refusals that leak nothing, and the smaller guards (log redaction, Origin, keys, limits)."""
import gc
import json
import socket
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
from tokenwave.serve.service import ServeConfig, Service
from test_serve import Running, _wait, models  # noqa: F401 - the tiny task models fixture

pytest.importorskip("fastapi")


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
    svc = Service({"sfx": root / "sfx"}, codec, ServeConfig(max_streams=2, max_duration=3.0))
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
