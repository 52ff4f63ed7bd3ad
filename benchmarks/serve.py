"""Load on a local streaming server: 1, 2, 4, 8, 16 concurrent TTS WebSocket streams, a soak, abandoned requests.

    python benchmarks/serve.py [--quick] [--threads N] [--soak N] [--precision int8] [--engine thread]

Starts ``tokenwave serve --tasks tts`` (a subprocess, ``--threads`` torch threads: half the cores by default, as the
server's own default; as many stream slots as the largest level) on loopback with the default
speech model (``checkpoints/tts``); when that checkpoint is missing, a random-weight model of the same preset
(``small``: 256 wide, 4 layers, K = 8, 3 s voice prompt) stands in, which costs the same compute (recorded in
``figures.model``). Each level opens N WebSocket streams at once, each speaking a two-sentence text (about 4 s of
audio) in a built-in voice with its own seed; ``--quick`` runs levels 1, 2, 4 and 8 once, the full run every level
twice.

Per stream: time to first audio (request sent -> first binary chunk), delivered audio seconds per wall second
(audio / (last chunk - request)), and underruns: a player starts 100 ms after the first chunk and plays in real time;
each chunk that arrives after its play time is an underrun (the player then waits for it). Per level: p50/p95 time to
first audio, the slowest stream's speed, total underruns, and the server's batched decode steps/s (``/metrics``).

Then a soak: ``--soak`` HTTP ``POST /v1/tts`` requests (500; 40 with --quick), 4 at a time, with the server's RSS
(VmRSS, its engine processes included) after a warm-up of a tenth of them and at the end; and 16 abandoned
requests: 16 HTTP TTS requests whose clients disconnect once all are rendering, timed from the disconnect until the
server reports no active stream.

Targets (2 CPU cores, default speech model): first audio p50 under 150 ms at 1 stream; the largest level whose every
stream plays without an underrun (and is faster than real time) at least 8; RSS growth over the soak after warm-up
under 5 %; 16 abandoned requests free their slots within 1 s. The no-underrun level is stored as this machine's
capacity for the model (``tokenwave.serve.capacity``): ``tokenwave serve`` admits that many streams by default.
Writes benchmarks/results/serve.json and serve.png (``--precision int8``: serve-int8.json, the server run with
``tokenwave serve --precision int8``; ``--engine thread``: ``-thread`` added, the engines in threads of the server's
process as before they had processes of their own).
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, arg_parser, command_line, machine_info, target, write_result  # noqa: E402

from tokenwave.serve.capacity import default_threads  # noqa: E402

SR = 24000
PREBUFFER = 0.1
TEXTS = ["The quick brown fox jumps over the lazy dog. Then it runs far away into the woods.",
         "Streaming speech arrives while it is made. Every listener hears it without a gap.",
         "Small models can speak in real time on two cores. This is what we measure today.",
         "Please leave a message after the tone. We will call you back as soon as we can."]


def speech_model(tmp: Path) -> tuple[str, str]:
    """(folder, description): the default TTS checkpoint, or a random model of its preset."""
    from tokenwave.paths import default_checkpoint

    default = default_checkpoint("tts")
    if (default / "config.json").exists():
        return str(default), f"default ({default})"
    import torch

    from tokenwave.codec import load_codec
    from tokenwave.lm.config import LMConfig
    from tokenwave.models.tts import TTSFolder, TTSModel
    from tokenwave.train.lm import PRESETS

    codec = load_codec(None)
    symbols = sorted(set("abcdefghijklmnopqrstuvwxyzæðŋɐɑɔəɛɜɪɹʃʊʌʒθˈˌːɚɾʔ "))
    cfg = LMConfig(K=8, codebook_size=codec.codebook_size, pattern="delay", max_len=1280, **PRESETS["small"])
    torch.manual_seed(0)
    model = TTSModel(cfg, len(symbols) + 2).eval()
    folder = tmp / "tts"
    g = torch.Generator().manual_seed(1)
    voices = {f"v{i}": torch.randint(0, codec.codebook_size, (8, 225), generator=g) for i in range(2)}
    TTSFolder(model, {"phonemes": symbols, "duration": [0.9, 10.0], "train": {"max_frames": 450}}, voices).save(
        folder, codec.content_hash())
    return str(folder), "random weights, preset small (checkpoints/tts missing)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def one_stream(url: str, request: dict) -> dict:
    import websockets

    arrivals = []  # (seconds since request, samples in the chunk)
    async with websockets.connect(url, max_size=None) as ws:
        t0 = time.perf_counter()
        await ws.send(json.dumps(request))
        done = None
        async for msg in ws:
            if isinstance(msg, bytes):
                arrivals.append((time.perf_counter() - t0, len(msg) // 2))
            else:
                e = json.loads(msg)
                if e["type"] in ("done", "error"):
                    done = e
    if not arrivals or done is None or done["type"] != "done":
        return {"error": (done or {}).get("error", "no audio")}
    audio = sum(n for _, n in arrivals) / SR
    clock, underruns, played = arrivals[0][0] + PREBUFFER, 0, 0.0
    for t, n in arrivals:  # the player needs this chunk at `clock + played`
        if t > clock + played:
            underruns += 1
            clock += t - (clock + played)
        played += n / SR
    return {"ttfa": arrivals[0][0], "audio_s": audio, "speed": audio / arrivals[-1][0], "underruns": underruns,
            "chunks": len(arrivals)}


async def level(url: str, n: int, voices: list[str], round_: int) -> list[dict]:
    reqs = [{"task": "tts", "text": TEXTS[i % len(TEXTS)], "voice": voices[i % len(voices)], "seed": 100 * round_ + i}
            for i in range(n)]
    return list(await asyncio.gather(*(one_stream(url, r) for r in reqs)))


def steps_per_second(base: str) -> float | None:
    import httpx

    for line in httpx.get(base + "/metrics", timeout=10).text.splitlines():
        if line.startswith('tokenwave_steps_per_second{task="tts"}'):
            return float(line.split()[-1])
    return None


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and of its descendants (the server's engine processes), MB."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as f:
                total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
        except (OSError, StopIteration):
            pass
    return total


async def soak(base: str, n: int, pid: int, voices: list[str], concurrency: int = 4) -> dict:
    """``n`` file requests, ``concurrency`` at a time; the server's RSS after a warm-up of n/10 and at the end."""
    import httpx

    warm = max(5, n // 10)
    done, failures, rss = 0, 0, {}
    sem = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        async def one(i: int) -> None:
            nonlocal done, failures
            async with sem:
                r = await client.post(base + "/v1/tts", json={"text": TEXTS[i % len(TEXTS)],
                                                               "voice": voices[i % len(voices)], "seed": i})
            failures += r.status_code != 200
            done += 1
            if done == warm:
                rss["after_warmup_mb"] = rss_mb(pid)

        await asyncio.gather(*(one(i) for i in range(n)))
    rss["end_mb"] = rss_mb(pid)
    growth = 100.0 * (rss["end_mb"] - rss["after_warmup_mb"]) / rss["after_warmup_mb"]
    return {"requests": n, "warmup_requests": warm, "concurrency": concurrency, "failures": failures,
            **{k: round(v, 1) for k, v in rss.items()}, "rss_growth_pct": round(growth, 2),
            "wall_s": round(time.perf_counter() - t0, 1)}


def abandoned(base: str, port: int, n: int = 16) -> dict:
    """``n`` TTS file requests whose clients leave once all are rendering: seconds until no stream is active."""
    import httpx

    text = " ".join(TEXTS)
    socks = []
    for i in range(n):
        body = json.dumps({"text": text, "seed": i}).encode()
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        socks.append(s)
    deadline, active = time.time() + 30, 0
    while time.time() < deadline:
        active = httpx.get(base + "/healthz", timeout=5).json()["active_streams"]
        if active >= n:
            break
        time.sleep(0.05)
    started = active
    t0 = time.perf_counter()
    for s in socks:
        s.close()
    while httpx.get(base + "/healthz", timeout=5).json()["active_streams"] > 0 and time.perf_counter() - t0 < 60:
        time.sleep(0.01)
    return {"requests": n, "rendering_when_abandoned": started, "seconds_to_free_all": round(time.perf_counter() - t0, 3)}


def main() -> None:
    import httpx

    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="the server's torch threads (tokenwave serve --threads; default: the server's own, "
                             "half the cores)")
    parser.add_argument("--levels", default=None, help="comma-separated stream counts (default 1,2,4,8,16)")
    parser.add_argument("--soak", type=int, default=None, help="soak requests (default 500; 40 with --quick)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"],
                        help="the TTS token LM's weights (tokenwave serve --precision); int8 results go to serve-int8.json")
    parser.add_argument("--engine", default="process", choices=["process", "thread"],
                        help="where the server runs its batch engine (tokenwave serve --engine); thread results go to "
                             "serve[-int8]-thread.json")
    args = parser.parse_args()
    levels, rounds = ([1, 2, 4, 8], 1) if args.quick else ([1, 2, 4, 8, 16], 2)
    levels = [int(x) for x in args.levels.split(",")] if args.levels else levels
    n_soak = args.soak or (40 if args.quick else 500)
    with tempfile.TemporaryDirectory() as tmp:
        folder, described = speech_model(Path(tmp))
        port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        server = subprocess.Popen([sys.executable, "-m", "tokenwave", "serve", "--tasks", "tts", "--tts", folder,
                                   "--port", str(port), "--max-streams", str(max(levels + [16])), "--threads",
                                   str(args.threads), "--precision", args.precision, "--engine", args.engine,
                                   "--log-level", "warning"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base, url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/stream"
        try:
            deadline = time.time() + 120
            while True:
                try:
                    voices = httpx.get(base + "/v1/models", timeout=2).json()["tasks"]["tts"]["voices"]
                    break
                except (httpx.HTTPError, KeyError):
                    if server.poll() is not None or time.time() > deadline:
                        raise SystemExit("the server did not start:\n" + (server.stdout.read() if server.stdout else ""))
                    time.sleep(0.5)
            asyncio.run(level(url, 2, voices, 99))  # warm-up (first phonemizer call, allocations)
            figures: dict = {"model": described, "precision": args.precision, "engine": args.engine,
                             "torch_threads": args.threads,
                             "cores": os.cpu_count(),
                             "load_average_before": os.getloadavg()[0], "prebuffer_s": PREBUFFER, "levels": {}}
            for n in levels:
                runs, t0 = [], time.perf_counter()
                steps_per_second(base)
                for r in range(rounds):
                    runs += asyncio.run(level(url, n, voices, r))
                sps = steps_per_second(base)
                ok = [s for s in runs if "error" not in s]
                ttfa = [s["ttfa"] for s in ok]
                figures["levels"][str(n)] = {
                    "streams": len(runs), "errors": len(runs) - len(ok),
                    "ttfa_p50_ms": 1000 * float(np.percentile(ttfa, 50)) if ttfa else None,
                    "ttfa_p95_ms": 1000 * float(np.percentile(ttfa, 95)) if ttfa else None,
                    "speed_min": min(s["speed"] for s in ok) if ok else None,
                    "speed_median": statistics.median(s["speed"] for s in ok) if ok else None,
                    "underruns": sum(s["underruns"] for s in ok), "streams_with_underruns": sum(s["underruns"] > 0 for s in ok),
                    "audio_s_per_stream": statistics.mean(s["audio_s"] for s in ok) if ok else None,
                    "decode_steps_per_s": sps, "wall_s": time.perf_counter() - t0}
                print(n, json.dumps(figures["levels"][str(n)]), file=sys.stderr)
            figures["abandoned"] = abandoned(base, port)
            print("abandoned", json.dumps(figures["abandoned"]), file=sys.stderr)
            figures["soak"] = asyncio.run(soak(base, n_soak, server.pid, voices))
            print("soak", json.dumps(figures["soak"]), file=sys.stderr)
        finally:
            server.terminate()
            server.wait(20)
    figures["load_average_after"] = os.getloadavg()[0]  # other work on the machine competes for the same cores
    busy = max(figures["load_average_before"], figures["load_average_after"])
    if busy > (os.cpu_count() or 1):
        figures["note"] = (f"measured on a shared machine: load average {busy:.1f} on {os.cpu_count()} cores while it "
                           "ran, so stream counts and speeds are lower bounds of what the machine sustains alone")
    lv = figures["levels"]
    realtime = [int(n) for n, f in lv.items() if f["errors"] == 0 and (f["speed_min"] or 0) >= 1.0]
    best = max((n for n in realtime if all(int(m) in realtime for m in lv if int(m) <= n)), default=0)
    figures["max_streams_all_realtime"] = best
    smooth = [int(n) for n, f in lv.items() if f["errors"] == 0 and f["streams_with_underruns"] == 0
              and (f["speed_min"] or 0) >= 1.0]
    no_underrun = max((n for n in smooth if all(int(m) in smooth for m in lv if int(m) <= n)), default=0)
    figures["max_streams_realtime_no_underrun"] = no_underrun
    if no_underrun and described.startswith("default"):  # this machine's capacity for the shipped model: what
        # `tokenwave serve` admits by default
        from tokenwave.serve.capacity import capacity_key, store

        figures["stored_capacity"] = {"key": capacity_key("tts", folder, args.threads, args.precision, args.engine),
                                      "streams": no_underrun}
        store(figures["stored_capacity"]["key"], {
            "streams": no_underrun, "source": "benchmarks/serve.py" + (" --quick" if args.quick else ""),
            "date": time.strftime("%Y-%m-%d"), "levels": {n: f["streams_with_underruns"] for n, f in lv.items()}})
    targets = [*([target("ttfa_p50_ms_1_stream", lv["1"]["ttfa_p50_ms"], "<=", 150)] if "1" in lv else []),
               target("streams_all_faster_than_realtime", best, ">=", 8),
               target("streams_realtime_no_underrun", no_underrun, ">=", 8),
               target("soak_rss_growth_pct_after_warmup", figures["soak"]["rss_growth_pct"], "<", 5.0),
               target("abandoned_16_seconds_to_free_slots", figures["abandoned"]["seconds_to_free_all"], "<=", 1.0)]
    name = ("serve" + ("" if args.precision == "fp32" else f"-{args.precision}")
            + ("" if args.engine == "process" else "-thread"))
    result = write_result(name, command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / f"{name}.png")
    print(json.dumps(result, indent=1))


def plot(figures: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from tokenwave.plots import save_figure

    lv = figures["levels"]
    ns = [int(n) for n in lv]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(ns, [lv[str(n)]["ttfa_p50_ms"] for n in ns], "o-", label="p50")
    a.plot(ns, [lv[str(n)]["ttfa_p95_ms"] for n in ns], "s--", label="p95")
    a.axhline(150, color="grey", lw=0.8, ls=":", label="150 ms target")
    a.set(xscale="log", xticks=ns, xticklabels=ns, xlabel="concurrent streams", ylabel="time to first audio (ms)")
    a.legend(fontsize=8)
    b.plot(ns, [lv[str(n)]["speed_min"] for n in ns], "o-", label="slowest stream")
    b.plot(ns, [lv[str(n)]["speed_median"] for n in ns], "s--", label="median stream")
    b.axhline(1.0, color="grey", lw=0.8, ls=":", label="real time")
    b.set(xscale="log", xticks=ns, xticklabels=ns, xlabel="concurrent streams", ylabel="audio s per wall s")
    b.legend(fontsize=8)
    fig.suptitle(f"tokenwave serve: TTS WebSocket streams, {figures['torch_threads']} torch thread(s) on "
                 f"{figures['cores']} cores")
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
