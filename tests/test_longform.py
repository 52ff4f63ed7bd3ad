"""Long music and sound effects by sliding windows on tiny random models: the asked duration exactly, the same seed
the same audio, a stream equal to the offline file across many windows (offline and on the server), progress told
in order; and bad input (an empty or 10,000-character prompt, a melody that is neither audio nor MIDI, a duration of
0 or 3 hours) refused with the limit and the fix on the Python API and the server (HTTP and WebSocket; the CLI's
cases are in tests/test_tasks.py)."""
import json

import httpx
import numpy as np
import pytest
import torch

import task_models as tm
from test_serve import Running
from test_serve import stream as ws_stream
from tokenwave.errors import InvalidArgumentError
from tokenwave.serve.audio import pcm16
from tokenwave.tasks import MAX_DURATION, Pipeline, Sampling, load_task
from tokenwave.tasks.sources import LMSource
from tokenwave.tasks.tagged import SILENT_RETRIES

ws_client = pytest.importorskip("websockets.sync.client")
LONG = 4.0  # seconds: 300 frames, about ten windows of the tiny token LM (40 frames) and six of the flow model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    codec = tm.tiny_codec()
    root = tmp_path_factory.mktemp("models")
    (root / "sfx").mkdir()
    (root / "music").mkdir()
    tm.tagged_model(root / "sfx", codec, melody=False)
    tm.tagged_model(root / "music", codec, melody=True, domain="music", flow=True)
    return root, codec


@pytest.fixture(scope="module")
def server(models):
    from tokenwave.serve.service import ServeConfig, Service

    root, codec = models
    svc = Service({"music": root / "music", "sfx": root / "sfx"}, codec,
                  ServeConfig(max_streams=2, max_duration=6.0, decode_frames=1, max_queue=0))
    run = Running(svc)
    yield run
    run.stop()


@pytest.mark.parametrize("generator", ["lm", "flow"])
def test_long_pieces_have_the_asked_duration_and_the_seed_decides(models, generator):
    root, codec = models
    music = load_task("music", root / "music", codec, generator=generator)
    sampling = dict(steps=3) if generator == "flow" else {}
    told = []
    a = music.generate("a reel", LONG, Sampling(seed=1, **sampling), watermark=False,
                       progress=lambda done, total: told.append((done, total)))
    frames = round(LONG * music.frame_rate)
    assert len(a.wav) == frames * codec.hop == int(LONG * codec.sample_rate)
    window = music.window if generator == "lm" else music.flow_window_overlap(music.generators["flow"])[0]
    assert window * 3 < frames  # many windows
    # progress: told in order, ending at the whole piece
    dones = [d for d, _ in told]
    assert dones == sorted(dones) and dones[-1] == frames and {t for _, t in told} == {frames}
    if generator == "lm":  # told for every block of new frames heard (TaggedTask.codes)
        block = music.window_overlap(music.prepare("a reel", LONG, Sampling(seed=1)).cond)[1] // 4
        assert len(told) >= frames // block
    else:
        assert len(told) >= 4
    b = music.generate("a reel", LONG, Sampling(seed=1, **sampling), watermark=False)
    c = music.generate("a reel", LONG, Sampling(seed=2, **sampling), watermark=False)
    assert np.array_equal(a.wav, b.wav) and not np.array_equal(a.wav, c.wav)
    # the windows past the first differ from one another: no window repeats the one before it
    hop = window * codec.hop
    assert not np.allclose(a.wav[hop: 2 * hop], a.wav[2 * hop: 3 * hop])
    odd = music.generate("a reel", 2.37, Sampling(seed=1, **sampling), watermark=False)
    assert len(odd.wav) == round(2.37 * music.frame_rate) * codec.hop


def test_long_music_holds_new_frames_back_until_heard(models):
    """Music longer than one window holds its new frames back in blocks until heard: a silent block is dropped, never
    sent, and the next window continues the frames before it; a model that goes on making silence is retried
    SILENT_RETRIES times with context and as many times afresh, then kept, so the piece ends with all its frames;
    music of one window is the clip as the model makes it, nothing heard."""
    root, codec = models
    music = load_task("music", root / "music", codec, generator="lm")
    req = music.prepare("a reel", 2.0, Sampling(seed=1), generator="lm")
    calls = []

    def source(cond, frames, params, prompt=None):
        calls.append(prompt)
        return LMSource(music.lm)(cond, frames, params, prompt)

    window, overlap = music.window_overlap(req.cond)
    probe = overlap // 4
    assert req.frames > 2 * window
    dropped = []  # the second window's first block is silent
    music.context_silent = lambda g, ctx: (ctx.shape[-1] == probe and len(calls) == 2 and not dropped
                                           and not dropped.append(ctx))
    codes = torch.cat(list(music.codes(req, source)), -1)
    assert codes.shape[-1] == req.frames and dropped
    assert torch.equal(calls[2], codes[:, window - overlap: window])  # continues the frames before the dropped block
    assert not any(torch.equal(dropped[0], codes[:, j: j + probe]) for j in range(codes.shape[-1] - probe + 1))
    calls.clear()  # silence only, after the first window
    music.context_silent = lambda g, ctx: ctx.shape[-1] == probe and len(calls) >= 2
    codes = torch.cat(list(music.codes(req, source)), -1)
    R = SILENT_RETRIES
    assert codes.shape[-1] == req.frames
    assert [p is None for p in calls[: 2 * R + 2]] == [True] + [False] * R + [True] * (R + 1)
    short = music.prepare("a reel", (window - 1) / music.frame_rate, Sampling(seed=1), generator="lm")
    calls.clear()
    music.context_silent = lambda g, ctx: pytest.fail("a one-window request was checked for silence")
    codes = torch.cat(list(music.codes(short, source)), -1)
    assert len(calls) == 1 and codes.shape[-1] == short.frames == window - 1


def test_long_stream_equals_the_offline_file(models):
    root, codec = models
    sfx = load_task("sfx", root / "sfx", codec)
    chunks = list(sfx.stream("heavy rain", LONG, Sampling(seed=4)))
    assert len(chunks) > 100  # decoded as the frames come, window after window
    wav = np.concatenate(chunks)
    file = sfx.generate("heavy rain", LONG, Sampling(seed=4), watermark=False).wav
    assert len(wav) == len(file) and np.abs(np.clip(wav, -1, 1) - file).max() < 1e-5


def test_server_streams_a_long_piece_like_the_offline_file_with_progress_in_order(server):
    for task in ("music", "sfx"):
        events, audio, *_ = ws_stream(server.ws, {"task": task, "prompt": "heavy rain", "duration": LONG, "seed": 3})
        kinds = [e["type"] for e in events]
        assert kinds[0] == "started" and kinds[-1] == "done" and set(kinds[1:-1]) == {"progress"}, kinds
        told = [e["audio_seconds"] for e in events if e["type"] == "progress"]
        assert told == sorted(told) and len(told) >= 7 and 0 < told[0] and told[-1] <= LONG
        assert all(e["total_seconds"] == LONG for e in events if e["type"] == "progress")
        assert events[-1]["audio_seconds"] == LONG
        ref = server.service.tasks[task].generate("heavy rain", LONG, Sampling(seed=3), generator="lm").wav
        got = np.frombuffer(audio, dtype="<i2")
        assert len(got) == len(ref) and np.abs(got.astype(np.int32) - np.frombuffer(pcm16(ref), "<i2")).max() <= 2
    r = httpx.post(server.http + "/v1/music", json={"prompt": "a reel", "duration": LONG, "seed": 3}, timeout=120)
    assert r.status_code == 200 and float(r.headers["x-audio-seconds"]) == LONG
    schema = httpx.get(server.http + "/openapi.json").json()["components"]["schemas"]
    assert schema["TaggedFileRequest"]["properties"]["duration"]["maximum"] == 6.0
    assert httpx.get(server.http + "/v1/models").json()["tasks"]["music"]["max_duration"] == 6.0


def test_bad_input_on_the_python_api(models, tmp_path):
    root, codec = models
    pipe = Pipeline({"music": root / "music", "sfx": root / "sfx"}, codec)
    junk = tmp_path / "notes.txt"
    junk.write_text("not a tune")
    fake = tmp_path / "tune.mid"
    fake.write_bytes(b"MThd but nothing more")
    cases = [(dict(prompt=""), "the prompt is empty"), (dict(prompt="   "), "the prompt is empty"),
             (dict(prompt="x" * 10_000), "the prompt has 10000 characters, over the 500 limit"),
             (dict(duration=0), f"duration must be positive (over 0 s, at most {MAX_DURATION:g} s), got 0"),
             (dict(duration=3 * 3600), f"duration 10800 s is over the {MAX_DURATION:g} s limit"),
             (dict(melody=str(junk)), "is neither a MIDI file nor audio"),
             (dict(melody=str(fake)), "is neither a MIDI file nor audio")]
    for kw, message in cases:
        args = {"prompt": "a reel", "duration": 1.0, **kw}
        with pytest.raises(InvalidArgumentError) as err:
            pipe.music(args.pop("prompt"), **args)
        assert message in str(err.value) and err.value.fix, (kw, str(err.value))
    with pytest.raises(InvalidArgumentError, match="over the 300 s limit"):
        pipe.sfx("rain", duration=3 * 3600)
    with pytest.raises(InvalidArgumentError, match="the prompt is empty"):
        pipe.sfx("", duration=1)


BAD = [({"prompt": ""}, 422, "at least 1 character (the limit: 1 to 500 characters"),
       ({"prompt": "   "}, 400, "the prompt is empty"),
       ({"prompt": "x" * 10_000}, 422, "at most 500 characters (the limit: 1 to 500 characters"),
       ({"duration": 0}, 422, "duration: Input should be greater than 0 (the limit: over 0 s, at most 6 s"),
       ({"duration": 3 * 3600}, 422, "at most 6 s on this server"),
       ({"duration": 100}, 400, "duration 100 s is over the 6 s limit"),
       ({"melody": "tune.mid"}, 422, "a melody is taken by the CLI and the Python API only")]


@pytest.mark.parametrize("change, status, message", BAD)
def test_bad_input_on_the_server(server, change, status, message):
    body = {"prompt": "a reel", "duration": 1.0, **change}
    r = httpx.post(server.http + "/v1/music", json=body, timeout=30)
    assert r.status_code == status and message in r.json()["error"], r.text
    with ws_client.connect(server.ws) as ws:
        ws.send(json.dumps({"task": "music", **body}))
        event = json.loads(ws.recv(10))
        assert event["type"] == "error" and event["status"] == status and message in event["error"], event


def test_a_silent_context_is_not_continued(models):
    """Past a window whose carried frames are silent, the next window continues the last sounding context instead
    (the token LM would continue silence with silence: benchmarks/longform.py measured 2-minute pieces drifting
    into it); sounding contexts are carried as they are."""
    root, codec = models
    sfx = load_task("sfx", root / "sfx", codec)
    req = sfx.prepare("heavy rain", 2.0, Sampling(seed=1))
    calls = []

    def source(cond, frames, params, prompt=None):
        calls.append(prompt)
        return LMSource(sfx.lm)(cond, frames, params, prompt)

    window, overlap = sfx.window_overlap(req.cond)
    silent_at = 2  # the third window's carried frames are "silent" (the checks of new frames are not)
    sfx.context_silent = lambda g, ctx: ctx.shape[-1] == overlap and len(calls) == silent_at
    codes = torch.cat(list(sfx.codes(req, source)), -1)
    assert codes.shape[-1] == req.frames and len(calls) > silent_at + 1
    assert torch.equal(calls[silent_at], calls[silent_at - 1])  # the last sounding context again
    made_before = sum(window - (0 if p is None else p.shape[-1]) for p in calls[:silent_at])
    assert not torch.equal(calls[silent_at], codes[:, made_before - overlap: made_before])
    # sound effects send frames as they come: a window whose newest frames go silent ends there, and the next
    # continues the frames before the silence
    calls.clear()
    probe = overlap // 4
    fired = []
    sfx.context_silent = lambda g, ctx: ctx.shape[-1] == probe and len(calls) == 2 and not fired and not fired.append(1)
    codes = torch.cat(list(sfx.codes(req, source)), -1)
    assert codes.shape[-1] == req.frames and fired
    cut = window + probe  # the first window, then the second cut after `probe` new frames
    assert torch.equal(calls[2], codes[:, cut - probe - overlap: cut - probe])
    del sfx.context_silent
    zeros = codec.encode(torch.zeros(1, 1, codec.hop * 40), 2)[0]
    assert sfx.context_silent(sfx.generators["lm"], zeros) == (
        20 * np.log10(np.sqrt((codec.decode(zeros[None])[0, 0].numpy() ** 2).mean()) + 1e-10) < -40)
