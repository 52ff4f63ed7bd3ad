"""HTTP and WebSocket endpoints (FastAPI) over a :class:`~tokenwave.serve.service.Service`.

- ``POST /v1/tts``, ``/v1/music``, ``/v1/sfx``: a finished file (``format``: wav or ogg/opus)
- ``WS /v1/stream``: one JSON request in; JSON events (``started``, ``progress`` every 0.5 s of audio with
  ``audio_seconds`` and, for music / sfx, ``total_seconds``, ``done``, ``error``) and binary audio chunks (PCM16 LE
  mono or Ogg/Opus pages) out; a client that goes away cancels its work
- ``GET /v1/models``, ``/healthz``, ``/metrics`` (Prometheus text), ``/`` (the player page)

Every request is admitted against ``max_streams`` slots (by default what the machine sustains in real time, see
:mod:`tokenwave.serve.capacity`); beyond them a request waits in a bounded queue (a WebSocket hears ``queued`` events
with its place), and beyond the queue, or after ``queue_timeout`` in it, HTTP answers 503 (with ``Retry-After``)
and a WebSocket closes with code 1013 and the reason. A stream is paced to real time plus ``ahead_seconds``, so the
engine parks the job of a client that reads slowly; a client that reads nothing for ``stall_seconds`` is cancelled,
and one that leaves frees its slot at once.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import logging
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import soundfile as sf
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from tokenwave.audio.io import read_audio_header
from tokenwave.errors import AudioFileError, TokenwaveError
from tokenwave.serve.audio import BATCHER, OpusStream, encode_file, pcm16
from tokenwave.serve.engine import Cancelled
from tokenwave.serve.schema import ErrorBody, StreamRequest, TaggedFileRequest, TTSFileRequest
from tokenwave.serve.service import BusyError, Service
from tokenwave.tasks.base import MissingModelError

_END = object()


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to that many."""

    def __init__(self, per_minute: float) -> None:
        self.rate, self.buckets = per_minute / 60.0, {}

    def retry_after(self, key: str, charge: bool = True) -> float:
        """0 if ``key`` may go now (and charges it, unless ``charge`` is False), else seconds to wait."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (self.rate * 60.0, now))
        tokens = min(self.rate * 60.0, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self.buckets[key] = (tokens - 1.0 if charge else tokens, now)
            return 0.0
        self.buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


class HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        self.status, self.message, self.headers = status, message, headers or {}


# what a stream's "done" message tells of how the request was read
DONE_INFO = ("tags", "nearest_captions", "tags_from_captions", "voice_kind", "accent", "watermark")


def field_error(e: dict, max_duration: float) -> str:
    """One pydantic error -> ``"field: message"``, with the limit and the fix added for the fields a person gets wrong
    most: a music / sfx prompt (empty, too long) and a duration out of range (``max_duration``: the server's)."""
    where = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
    field = where.rsplit(".", 1)[-1]
    hint = ""
    if field == "duration":
        hint = (f" (the limit: over 0 s, at most {max_duration:g} s on this server; ask for at most that, longer "
                "pieces in parts)")
    elif field == "prompt":
        hint = ' (the limit: 1 to 500 characters; describe the sound, e.g. "gentle rain on a tin roof")'
    elif e.get("type") == "extra_forbidden":
        hint = " (not a field of this request: the fields are in /openapi.json; a melody is taken by the CLI and the " \
               "Python API only)" if field == "melody" else " (not a field of this request: see /openapi.json)"
    return f"{where}: {e.get('msg')}{hint}"


def _status_of(err: Exception) -> int:
    if isinstance(err, BusyError):
        return 503
    if isinstance(err, MissingModelError):
        return 404
    return 400 if isinstance(err, TokenwaveError) else 500


class BodyLimit:
    """ASGI middleware: HTTP bodies over ``limit`` bytes get 413 before they are read whole."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = dict(scope.get("headers") or []).get(b"content-length")
        if size is not None and size.isdigit() and int(size) > self.limit:
            return await _too_large(self.limit, send)
        seen = 0

        async def limited():
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.limit:
                raise _BodyTooLarge()
            return msg

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _too_large(self.limit, send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(limit: int, send) -> None:
    body = json.dumps({"error": f"the request body is over the {limit}-byte limit", "status": 413}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def decode_voice_audio(data: str, max_seconds: float, max_channels: int = 2) -> tuple[np.ndarray, int]:
    """base64 of an audio file -> (mono float32, sample rate); the header (rate, channels, length in seconds) is
    checked before anything is decoded."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise AudioFileError("voice_audio is not valid base64", "send the file's bytes base64-encoded") from None
    try:
        info = read_audio_header(raw)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise AudioFileError("voice_audio is not a readable WAV, FLAC or OGG file", "send a WAV recording") from None
    if info.channels > max_channels:
        raise AudioFileError(f"voice_audio has {info.channels} channels", "send a mono or stereo recording")
    seconds = info.frames / info.samplerate
    if seconds > max_seconds:
        raise AudioFileError(f"voice_audio holds {seconds:.1f} s, over {max_seconds:g} s", "send 3-10 s")
    try:
        wav, sr = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True,
                          frames=int(max_seconds * info.samplerate) + 1)  # a lying header decodes no further
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise AudioFileError("voice_audio is not a readable WAV, FLAC or OGG file", "send a WAV recording") from None
    if len(wav) > max_seconds * sr:
        raise AudioFileError(f"voice_audio holds over {max_seconds:g} s", "send 3-10 s")
    return wav.mean(axis=1), int(sr)


class RedactKeys(logging.Filter):
    """Rewrites ``api_key=...`` in a log record (uvicorn's access log shows each request's query) to REDACTED."""

    PATTERN = re.compile(r"(api_key=)[^&\s\"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.PATTERN.sub(r"\1REDACTED", a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = self.PATTERN.sub(r"\1REDACTED", record.msg)
        return True


def _redact_access_log() -> None:
    log = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactKeys) for f in log.filters):
        log.addFilter(RedactKeys())


def origin_allowed(headers, allowed: tuple[str, ...]) -> bool:
    """A browser's WebSocket ``Origin`` is the server's own (scheme-less host:port equal to ``Host``) or one of
    ``allowed``; a client that sends no Origin (not a browser) passes."""
    origin = headers.get("origin")
    if not origin:
        return True
    if origin in allowed or "*" in allowed:
        return True
    host = origin.split("://", 1)[-1].rstrip("/")
    return host == headers.get("host", "")


SEND_BUFFER = 64 * 1024  # bytes of kernel send buffer per connection (Linux doubles it): ~1.4 s of PCM16 at 24 kHz


def listen_socket(host: str, port: int) -> socket.socket:
    """A listening socket whose connections keep a small, fixed send buffer: a client that stops reading makes the
    server's send wait within about a second of audio (its job is then parked, and cancelled after
    ``stall_seconds``), where the default auto-tuned buffer took up to 4 MB (about 80 s of PCM16) first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)  # inherited by accepted connections
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def key_matches(given: str, keys) -> bool:
    """Whether ``given`` is one of ``keys``, compared in constant time (every key is compared)."""
    found = False
    for k in keys:
        found |= hmac.compare_digest(given.encode(), str(k).encode())
    return found


def make_app(service: Service) -> FastAPI:
    cfg = service.config
    app = FastAPI(title="tokenwave", version="0.1.0",
                  description="Speech, music and sound effects from neural-codec tokens, as files or streams.")
    app.state.service = service
    _redact_access_log()
    app.add_middleware(BodyLimit, limit=cfg.max_body_bytes)
    pool = ThreadPoolExecutor(max_workers=cfg.max_streams + 4, thread_name_prefix="serve")
    limiter = RateLimiter(cfg.rate_limit)
    failures = RateLimiter(cfg.auth_failures)  # wrong keys per client: brute force meets 429 (with no verdict)
    scrape = {"t": time.monotonic(), "steps": {}}

    def auth(headers, query, client: str) -> None:
        key = client
        if cfg.api_keys:
            blocked = failures.retry_after(client, charge=False)
            if blocked:
                raise HTTPError(429, f"too many wrong API keys from this client; retry in {blocked:.1f} s",
                                {"Retry-After": str(int(blocked) + 1)})
            given = headers.get("x-api-key") or query.get("api_key") or ""
            bearer = headers.get("authorization", "")
            if bearer.lower().startswith("bearer "):
                given = bearer[7:].strip()
            if not key_matches(given, cfg.api_keys):
                failures.retry_after(client)
                raise HTTPError(401, "missing or wrong API key (send `Authorization: Bearer KEY` or `X-API-Key`)")
            key = given
        wait = limiter.retry_after(key)
        if wait:
            raise HTTPError(429, f"rate limit of {cfg.rate_limit:g} requests a minute reached; retry in {wait:.1f} s",
                            {"Retry-After": str(int(wait) + 1)})

    def request_dict(task: str, body) -> dict:
        req = body.model_dump()
        if task not in service.tasks:
            raise MissingModelError(f"this server has no {task} model: {service.missing.get(task, 'not loaded')}",
                                    "ask the operator, or use GET /v1/models to see what is served")
        if req.get("voice_audio"):
            req["voice"] = decode_voice_audio(req.pop("voice_audio"), cfg.max_prompt_audio_seconds)
        if task == "tts" and len(req.get("text") or "") > cfg.max_text_chars:
            raise HTTPError(400, f"the text is over this server's {cfg.max_text_chars}-character limit")
        return req

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, err: HTTPError):
        return JSONResponse({"error": err.message, "status": err.status}, err.status, headers=err.headers)

    @app.exception_handler(TokenwaveError)
    async def _tw_error(request: Request, err: TokenwaveError):
        status = _status_of(err)
        headers = {"Retry-After": "2"} if status == 503 else None
        return JSONResponse({"error": err.one_line(), "status": status}, status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(request: Request, err: StarletteHTTPException):  # e.g. a body that is not UTF-8
        message = err.detail if isinstance(err.detail, str) else json.dumps(err.detail)
        if err.status_code == 400 and "parsing the body" in message:
            message = "the request body is not valid UTF-8 JSON"
        return JSONResponse({"error": message, "status": err.status_code}, err.status_code,
                            headers=getattr(err, "headers", None))

    def openapi() -> dict:
        """The schema with this server's own limits (the request models allow the most any server may)."""
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            for body in schema.get("components", {}).get("schemas", {}).values():
                props = body.get("properties", {})
                if "maxLength" in props.get("text", {}):
                    props["text"]["maxLength"] = cfg.max_text_chars
                if "duration" in props:
                    props["duration"]["maximum"] = cfg.max_duration
                    props["duration"].pop("exclusiveMaximum", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError):
        parts = []
        for e in err.errors()[:5]:
            parts.append(field_error(e, cfg.max_duration))
        return JSONResponse({"error": "invalid request: " + "; ".join(parts), "status": 422}, 422)

    def render(task: str, req: dict, gone: threading.Event, held: dict) -> tuple[np.ndarray | None, dict]:
        """The whole file, or None once ``gone`` is set (the client left): the stream (kept in ``held["stream"]``,
        which the caller cancels when the client leaves mid-chunk) is closed, which cancels its engine job."""
        info: dict = {}
        it = held["stream"] = service.stream(task, req, info)
        chunks = []
        try:
            for chunk in it:
                if gone.is_set():
                    return None, info
                chunks.append(chunk)
        except Cancelled:
            return None, info
        finally:
            it.close()
        return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), info

    async def until_disconnect(request: Request, gone: threading.Event) -> None:
        """Sets ``gone`` when the HTTP client disconnects (its body has been read: the next message is that)."""
        try:
            while True:
                if (await request.receive())["type"] == "http.disconnect":
                    break
        finally:
            gone.set()

    async def admit(gone, notify=None) -> bool:
        """Wait for a stream slot in the bounded queue, telling ``notify(place)`` each new place; False if the client
        left first (``gone`` set). A full queue, or ``queue_timeout`` seconds in it, raise :class:`BusyError` (503)."""
        ticket = service.enqueue()
        try:
            deadline, last = time.monotonic() + cfg.queue_timeout, None
            while not ticket.granted:
                if gone.is_set():
                    service.withdraw(ticket)
                    return False
                if time.monotonic() > deadline:
                    service.metrics.rejected += 1
                    raise BusyError(f"the server stayed at its limit of {cfg.max_streams} concurrent streams for "
                                    f"{cfg.queue_timeout:g} s", "retry in a few seconds")
                place = service.position(ticket)
                if notify is not None and place and place != last:
                    await notify(place)
                    last = place
                await asyncio.sleep(0.02)
        except BaseException:
            service.withdraw(ticket)
            raise
        return True

    async def file_endpoint(task: str, body, request: Request) -> Response:
        auth(request.headers, request.query_params, request.client.host if request.client else "-")
        req = request_dict(task, body)
        gone = threading.Event()
        watcher = asyncio.create_task(until_disconnect(request, gone))
        try:
            admitted = await admit(gone)
        except BaseException:
            watcher.cancel()
            raise
        if not admitted:
            watcher.cancel()
            return Response(status_code=499)  # left while waiting: nobody is listening
        t0 = time.perf_counter()
        try:
            service.metrics.started += 1
            held: dict = {}
            rendering = asyncio.get_running_loop().run_in_executor(pool, render, task, req, gone, held)
            await asyncio.wait({rendering, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not rendering.done():  # the client left: its slot is free now, and its engine job stops at once
                if "stream" in held:
                    held["stream"].cancel()
                rendering.add_done_callback(lambda f: f.cancelled() or f.exception())
                wav = None
            else:
                wav, info = rendering.result()
        except Exception:
            service.metrics.failed += 1
            raise
        finally:
            watcher.cancel()
            service.release()
        if wav is None:
            service.metrics.cancelled += 1
            return Response(status_code=499)  # nobody is listening
        service.metrics.finished += 1
        service.metrics.audio_seconds += len(wav) / service.sample_rate
        data, media = encode_file(wav, service.sample_rate, body.format)
        return Response(data, media_type=media, headers={
            "X-Audio-Seconds": f"{len(wav) / service.sample_rate:.3f}", "X-Watermark": "1",
            "X-Render-Seconds": f"{time.perf_counter() - t0:.3f}",
            **({"X-Accent": info["accent"]} if info.get("accent") else {})})

    errors = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 404: {"model": ErrorBody},
              413: {"model": ErrorBody}, 422: {"model": ErrorBody}, 429: {"model": ErrorBody}, 503: {"model": ErrorBody}}
    audio = {200: {"content": {"audio/wav": {}, "audio/ogg": {}}, "description": "The audio file (watermarked)."}}

    @app.post("/v1/tts", responses={**audio, **errors}, response_class=Response)
    async def tts(body: TTSFileRequest, request: Request):
        """Speak `text` in a built-in voice (or a consented recording) and return the file."""
        return await file_endpoint("tts", body, request)

    @app.post("/v1/music", responses={**audio, **errors}, response_class=Response)
    async def music(body: TaggedFileRequest, request: Request):
        """Render `duration` seconds of music for `prompt`."""
        return await file_endpoint("music", body, request)

    @app.post("/v1/sfx", responses={**audio, **errors}, response_class=Response)
    async def sfx(body: TaggedFileRequest, request: Request):
        """Render a sound effect for `prompt`."""
        return await file_endpoint("sfx", body, request)

    @app.get("/v1/models")
    async def models() -> dict:
        """The tasks this server has (voices, tags, limits) and those it lacks, with why."""
        return {"tasks": service.models(), "max_streams": cfg.max_streams, "max_queue": cfg.max_queue,
                "formats": ["wav", "ogg"],
                "stream_formats": ["pcm16", "opus"], "auth": bool(cfg.api_keys)}

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        engines = {name: "running" if e.alive else "stopped" for name, e in service.engines.items()}
        ok = all(v == "running" for v in engines.values())  # a stopped engine: 503, for a load balancer to see
        return JSONResponse({"ok": ok, "tasks": sorted(service.tasks), "engines": engines,
                             "active_streams": service.active, "queued_requests": service.queued},
                            status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return prometheus(service, scrape)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return resources.files("tokenwave.serve").joinpath("page.html").read_text()

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        await ws.accept()
        loop = asyncio.get_running_loop()

        async def fail(status: int, message: str, code: int) -> None:
            try:
                await ws.send_json({"type": "error", "status": status, "error": message})
                await ws.close(code, message[:120])
            except Exception:  # noqa: BLE001 - the client may already be gone
                pass

        try:
            if not cfg.api_keys and not origin_allowed(ws.headers, cfg.allowed_origins):
                raise HTTPError(403, f"origin {ws.headers.get('origin')!r} is not allowed (open the server's own page, "
                                     "or start it with --allow-origin or an API key)")
            auth(ws.headers, ws.query_params, ws.client.host if ws.client else "-")
            first = await asyncio.wait_for(ws.receive(), 30)
            if first["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(first.get("code", 1000))
            text = first.get("text")
            if text is None:
                raise HTTPError(400, "the first message must be a JSON text frame, not binary")
            if len(text) > cfg.max_body_bytes:
                raise HTTPError(413, f"the request is over the {cfg.max_body_bytes}-byte limit")
            try:
                body = StreamRequest.model_validate(json.loads(text))
            except json.JSONDecodeError as err:
                raise HTTPError(400, f"the request is not JSON: {err.msg} at character {err.pos}") from None
            except RecursionError:
                raise HTTPError(400, "the request is nested too deeply (send one flat JSON object)") from None
            except ValidationError as err:
                e = err.errors()[0]
                raise HTTPError(422, f"invalid request: {field_error(e, cfg.max_duration)}") from None
            field = "text" if body.task == "tts" else "prompt"
            if not getattr(body, field):
                raise HTTPError(422, f"invalid request: {field}: a {body.task} request needs `{field}`")
            req = request_dict(body.task, body)
        except HTTPError as err:
            return await fail(err.status, err.message, 1008 if err.status != 413 else 1009)
        except (asyncio.TimeoutError, WebSocketDisconnect, RuntimeError):
            return await fail(408, "no request received", 1008)
        except TokenwaveError as err:
            status = _status_of(err)
            return await fail(status, err.one_line(), 1013 if status == 503 else 1008)
        gone = asyncio.Event()

        async def watch() -> None:
            try:
                while True:
                    msg = await ws.receive()
                    if msg["type"] == "websocket.disconnect" or "cancel" in (msg.get("text") or ""):
                        break
            except Exception:  # noqa: BLE001
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        try:
            admitted = await admit(gone, lambda place: ws.send_json({"type": "queued", "position": place}))
        except TokenwaveError as err:
            watcher.cancel()
            status = _status_of(err)
            return await fail(status, err.one_line(), 1013 if status == 503 else 1008)
        except Exception:  # noqa: BLE001 - the client went away while told its place
            watcher.cancel()
            return None
        if not admitted:
            watcher.cancel()
            return None
        info: dict = {}
        try:
            it = await loop.run_in_executor(pool, service.stream, body.task, req, info)
        except Exception as err:  # noqa: BLE001 - a bad request (or a broken model): say so, free the slot
            watcher.cancel()
            service.release()
            service.metrics.failed += 1
            status = _status_of(err)
            msg = err.one_line() if isinstance(err, TokenwaveError) else f"internal error: {type(err).__name__}: {err}"
            return await fail(status, msg, 1008 if status < 500 else 1011)
        opus = OpusStream(service.sample_rate) if body.format == "opus" else None
        t0, samples, last_progress, ttfa = time.perf_counter(), 0, 0.0, None
        t_play, stalled, pending = t0, False, None
        leaving = asyncio.ensure_future(gone.wait())
        service.metrics.started += 1
        outcome = "failed"
        try:
            await ws.send_json({"type": "started", "task": body.task, "sample_rate": service.sample_rate,
                                "channels": 1, "format": body.format})
            while not gone.is_set():
                pending = loop.run_in_executor(pool, next, it, _END)
                await asyncio.wait({pending, leaving}, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():  # the client left mid-chunk: free the slot now, close after the chunk
                    break
                chunk, pending = pending.result(), None
                if chunk is _END or gone.is_set():
                    break
                data = opus.push(chunk) if opus else pcm16(chunk)
                if data:
                    try:  # a client that reads nothing fills the socket buffers, then this send waits
                        await asyncio.wait_for(ws.send_bytes(data), cfg.stall_seconds)
                    except asyncio.TimeoutError:
                        stalled = True
                        break
                if ttfa is None:
                    ttfa = time.perf_counter() - t0
                    service.metrics.ttfa = service.metrics.ttfa[-999:] + [ttfa]
                    t_play = time.perf_counter()
                samples += len(chunk)
                # paced: at most ahead_seconds of audio ahead of real-time playback, so the job of a client that
                # reads slowly (or not at all) is parked by the engine rather than piling up in socket buffers
                lead = samples / service.sample_rate - (time.perf_counter() - t_play)
                if lead > cfg.ahead_seconds:
                    try:
                        await asyncio.wait_for(gone.wait(), lead - cfg.ahead_seconds)
                    except asyncio.TimeoutError:
                        pass
                if samples / service.sample_rate - last_progress >= 0.5:
                    last_progress = samples / service.sample_rate
                    await ws.send_json({"type": "progress", "audio_seconds": round(last_progress, 3),
                                        **({"total_seconds": round(info["total_seconds"], 3)}
                                           if "total_seconds" in info else {})})
            if gone.is_set() or stalled:
                outcome = "cancelled"
            else:
                if opus:
                    await ws.send_bytes(opus.close())
                seconds = samples / service.sample_rate
                await ws.send_json({"type": "done", "audio_seconds": round(seconds, 3), "samples": samples,
                                    "time_to_first_audio_ms": round(1000 * (ttfa or 0), 1),
                                    "seconds": round(time.perf_counter() - t0, 3),
                                    **{k: v for k, v in info.items() if k in DONE_INFO}})
                service.metrics.audio_seconds += seconds
                outcome = "finished"
                await ws.close(1000)
        except TokenwaveError as err:
            await fail(_status_of(err), err.one_line(), 1008)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            outcome = "cancelled"
        except Exception as err:  # noqa: BLE001 - report, keep serving
            await fail(500, f"internal error: {type(err).__name__}: {err}", 1011)
        finally:
            watcher.cancel()
            leaving.cancel()
            if pending is not None:  # a chunk is still being made: stop its engine job now, close the stream after
                it.cancel()
                pending.add_done_callback(lambda f: (f.cancelled() or f.exception(), pool.submit(it.close)))
            else:
                await loop.run_in_executor(pool, it.close)  # cancels the engine job of the stream
            service.release()
            setattr(service.metrics, outcome, getattr(service.metrics, outcome) + 1)

    return app


def prometheus(service: Service, scrape: dict) -> str:
    """The metrics in Prometheus' text format."""
    m, now = service.metrics, time.monotonic()
    dt = max(now - scrape["t"], 1e-6)
    lines = ["# HELP tokenwave_active_streams Streams being generated now (HTTP and WebSocket).",
             "# TYPE tokenwave_active_streams gauge", f"tokenwave_active_streams {service.active}",
             "# HELP tokenwave_max_streams Admission limit.", "# TYPE tokenwave_max_streams gauge",
             f"tokenwave_max_streams {service.config.max_streams}",
             "# HELP tokenwave_queued_requests Requests waiting for a stream slot.",
             "# TYPE tokenwave_queued_requests gauge", f"tokenwave_queued_requests {service.queued}",
             "# HELP tokenwave_streams_total Streams by outcome.", "# TYPE tokenwave_streams_total counter"]
    for k in ("started", "finished", "failed", "rejected", "cancelled"):
        lines.append(f'tokenwave_streams_total{{outcome="{k}"}} {getattr(m, k)}')
    lines += ["# HELP tokenwave_audio_seconds_total Audio delivered.", "# TYPE tokenwave_audio_seconds_total counter",
              f"tokenwave_audio_seconds_total {m.audio_seconds:.3f}",
              "# HELP tokenwave_time_to_first_audio_seconds Time from request to first audio chunk (last 1000).",
              "# TYPE tokenwave_time_to_first_audio_seconds summary"]
    if m.ttfa:
        for q in (0.5, 0.95):
            lines.append(f'tokenwave_time_to_first_audio_seconds{{quantile="{q}"}} {np.quantile(m.ttfa, q):.4f}')
    lines += [f"tokenwave_time_to_first_audio_seconds_sum {sum(m.ttfa):.4f}",
              f"tokenwave_time_to_first_audio_seconds_count {len(m.ttfa)}"]
    gauges = {"queue_depth": "Jobs waiting for a batch row.", "batch_rows": "Cache rows in the running batch.",
              "steps_per_second": "Batched decode steps per second since the last scrape.",
              "decode_steps_total": "Batched decode steps.", "parked_streams": "Streams parked by backpressure.",
              "prefix_hits_total": "Jobs that joined a running batch with their shared prefix (a voice) prefilled before."}
    for name, help_ in gauges.items():
        kind = "counter" if name.endswith("_total") else "gauge"
        lines += [f"# HELP tokenwave_{name} {help_}", f"# TYPE tokenwave_{name} {kind}"]
        for task, e in service.engines.items():
            value = {"queue_depth": e.queue_depth, "batch_rows": e.n, "parked_streams": len(e.parked),
                     "decode_steps_total": e.stats["steps"], "prefix_hits_total": e.stats["prefix_hits"],
                     "steps_per_second": (e.stats["steps"] - scrape["steps"].get(task, 0)) / dt}[name]
            lines.append(f'tokenwave_{name}{{task="{task}"}} {value:.3f}' if isinstance(value, float)
                         else f'tokenwave_{name}{{task="{task}"}} {value}')
    lines += ["# HELP tokenwave_decoder_calls_total Decoder calls (concurrent streams' chunks decoded together).",
              "# TYPE tokenwave_decoder_calls_total counter", f"tokenwave_decoder_calls_total {BATCHER.calls}",
              "# HELP tokenwave_decoded_chunks_total Stream chunks decoded (over decoder calls: the mean batch).",
              "# TYPE tokenwave_decoded_chunks_total counter", f"tokenwave_decoded_chunks_total {BATCHER.chunks}"]
    scrape["t"], scrape["steps"] = now, {t: e.stats["steps"] for t, e in service.engines.items()}
    return "\n".join(lines) + "\n"
