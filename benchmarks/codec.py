"""Codec benchmark: fidelity against Opus, speed against EnCodec, streaming latency and equality (DESIGN targets).

    python benchmarks/codec.py [--quick] [--model DIR] [--data ROOT] [--only all|synthetic|real]

Fidelity: held-out test clips (first 5 s of each) of ROOT/speech, ROOT/music and ROOT/sfx, coded by our codec at
1.5 / 3 / 6 kbps (``codec.reconstruct``) and by Opus at 6 / 12 kbps (ffmpeg libopus, see tokenwave.eval.opus);
mel distance, STFT distance and SI-SDR everywhere, PESQ-wb and STOI on speech; means per domain x system.
Speed (2 threads, batch 1, a 10 s clip, median of a few runs): encode and decode x real time of our codec at
6 kbps and of ``transformers``' EnCodec (24 kHz default config, random weights) at 6 kbps, in the same run.
Streaming: algorithmic latency, wall time per 320-sample chunk through encoder + decoder, and streamed == offline.
Real recordings: the same fidelity on the test splits of ROOT/real-speech, ROOT/real-music and ROOT/real-sfx
(`tokenwave data build real-*`: held-out speakers, tracks and packages), plus the Whisper tiny.en CER/WER of the
English test utterances (whole clips) as recorded and after each system. ``--only real`` (or ``synthetic``) measures
one part and keeps the other's targets (each with its own command) and figures from the previous results file.
Writes benchmarks/results/NAME.json (``--name``, default codec), NAME.png (synthetic clips) and NAME-real.png
(spectrograms of real held-out clips); prints the JSON.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    arg_parser,
    command_line,
    kept_targets,
    machine_info,
    ratio,
    repo_path,
    target,
    write_result,
)

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.codec import load_codec  # noqa: E402
from tokenwave.codec.streaming import StreamingDecoder, StreamingEncoder  # noqa: E402
from tokenwave.data.manifest import audio_path, read_manifest  # noqa: E402
from tokenwave.errors import DatasetError, TokenwaveError  # noqa: E402
from tokenwave.eval.asr import normalize_text  # noqa: E402
from tokenwave.eval.judges import load_whisper  # noqa: E402
from tokenwave.eval.fidelity import fidelity  # noqa: E402
from tokenwave.eval.opus import APPLICATION, VBR, opus_roundtrip  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402

SR = 24000
DOMAINS = ("speech", "music", "sfx")
OURS_KBPS = (1.5, 3.0, 6.0)
OPUS_KBPS = (6, 12)
CLIP_SECONDS = 5.0
SPEED_SECONDS = 10.0
STREAM_SECONDS = 3.0
CHUNK = 320
THREADS = 2  # for the speed and streaming measurements (the DESIGN's "2 CPU cores")
FIDELITY_THREADS = 1  # quality only; one thread avoids stalls when the cores are shared with other work


def system_names() -> list[str]:
    return [f"ours_{k:g}kbps" for k in OURS_KBPS] + [f"opus_{k:g}kbps" for k in OPUS_KBPS]


def default_model() -> Path:
    shipped = REPO_ROOT / "checkpoints" / "codec"
    return shipped if shipped.is_dir() else REPO_ROOT / "runs" / "codec" / "model"


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (so results do not name this machine's folders)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def test_rows(root: Path, name: str, n: int, keep=lambda row: True) -> tuple[Path, list[dict]]:
    """The dataset ROOT/name and up to ``n`` of its test rows that ``keep`` accepts, spread evenly over them by id."""
    folder = root / name
    if not (folder / "manifest.jsonl").exists():
        raise DatasetError(f"no {name} dataset at {folder}",
                           f"build it with `tokenwave data build {name} --out {folder}` or pass --data ROOT")
    rows = sorted((r for r in read_manifest(folder, "test") if keep(r)), key=lambda r: r["id"])
    if not rows:
        raise DatasetError(f"{folder} has no test clips to measure", f"rebuild it with `tokenwave data build {name} --out {folder}`")
    idx = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    return folder, [rows[i] for i in idx]


def pick_clips(root: Path, name: str, n: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``n`` test clips of dataset ROOT/name, spread evenly over the sorted test split; first 5 s of each."""
    folder, rows = test_rows(root, name, n)
    return [(r["id"], load_audio(audio_path(folder, r), SR)[0][: int(CLIP_SECONDS * SR)]) for r in rows]


def code_all(codec, wav: np.ndarray, opus_kbps: dict[str, list[float]]) -> dict[str, np.ndarray]:
    """Every system's reconstruction of ``wav`` (float32 [N] at 24 kHz), each exactly N samples long; the bitrate
    Opus actually spent is appended to ``opus_kbps[kbps]``."""
    x = torch.from_numpy(wav)[None, None]
    out = {f"ours_{k:g}kbps": codec.reconstruct(x, codec.n_q_for_kbps(k))[0, 0].numpy() for k in OURS_KBPS}
    for kbps in OPUS_KBPS:
        stats: dict = {}
        out[f"opus_{kbps:g}kbps"] = opus_roundtrip(wav, SR, kbps, stats)
        opus_kbps.setdefault(f"{kbps:g}", []).append(stats["payload_kbps"])
    return out


def aggregate(rows: list[dict[str, dict]]) -> dict[str, dict]:
    """Means per system over clips; a metric some system lacks on a clip (PESQ refused) is left out for all."""
    systems = list(rows[0])
    metrics = [k for k in rows[0][systems[0]] if not k.endswith("_error")]
    out: dict[str, dict] = {s: {} for s in systems}
    for m in metrics:
        keep = [r for r in rows if all(r[s].get(m) is not None for s in systems)]
        for s in systems:
            out[s][m] = float(np.mean([r[s][m] for r in keep])) if keep else None
        if len(keep) < len(rows):
            for s in systems:
                out[s][f"{m}_clips"] = len(keep)
    return out


def run_fidelity(codec, clips: dict[str, list], opus_kbps: dict, label: str = "codec fidelity") -> tuple[dict, dict]:
    """Per-domain means per system, and each domain's first clip with every system's version of it (figures)."""
    total = sum(len(c) for c in clips.values())
    result, example = {}, {}
    with progress_bar(label, total, "clips") as bar:
        for domain, items in clips.items():
            rows = []
            for i, (_, wav) in enumerate(items):
                coded = code_all(codec, wav, opus_kbps)
                rows.append({s: fidelity(wav, y, SR, speech=domain == "speech") for s, y in coded.items()})
                if i == 0:
                    example[domain] = {"original": wav, **coded}
                bar.advance()
            result[domain] = aggregate(rows)
    return result, example


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_speed(codec, wav: np.ndarray, runs: int) -> dict:
    """Encode / decode x real time at 6 kbps, ours and EnCodec's, batch 1. The four measurements are interleaved
    run by run (after one warm-up), so a burst of load on shared cores hits both systems alike; medians."""
    from transformers import EncodecConfig, EncodecModel

    x = torch.from_numpy(wav)[None, None]
    seconds = x.shape[-1] / SR
    n_q = codec.n_q_for_kbps(6.0)
    encodec = EncodecModel(EncodecConfig()).eval()
    with torch.inference_mode():
        codes = codec.encode(x, n_q)
        enc_codes = encodec.encode(x, bandwidth=6.0).audio_codes
        steps = {"ours_6kbps": (lambda: codec.encode(x, n_q), lambda: codec.decode(codes)),
                 "encodec_6kbps": (lambda: encodec.encode(x, bandwidth=6.0), lambda: encodec.decode(enc_codes, [None]))}
        for enc, dec in steps.values():  # warm-up
            enc(), dec()
        times: dict[str, tuple[list, list]] = {k: ([], []) for k in steps}
        for _ in range(runs):
            for name, (enc, dec) in steps.items():
                times[name][0].append(_timed(enc))
                times[name][1].append(_timed(dec))
    out = {"audio_seconds": seconds, "threads": torch.get_num_threads(), "runs": runs, "batch": 1,
           "load_average_1min": os.getloadavg()[0], "cpu_count": os.cpu_count()}  # shared cores slow both systems
    for name, (enc_t, dec_t) in times.items():
        enc, dec = float(np.median(enc_t)), float(np.median(dec_t))
        out[name] = {"encode_seconds": enc, "decode_seconds": dec, "encode_x_realtime": seconds / enc,
                     "decode_x_realtime": seconds / dec, "encode_decode_x_realtime": seconds / (enc + dec)}
    out["encodec_config"] = {"sampling_rate": encodec.config.sampling_rate, "bandwidth_kbps": 6.0,
                             "codebooks": int(enc_codes.shape[-2]), "weights": "random (speed only)"}
    return out


def _stream(codec, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """``(codes, wav, per-chunk wall ms)`` of ``x`` pushed in CHUNK-sample pieces through encoder + decoder."""
    times, codes_out, wav_out = [], [], []
    with StreamingEncoder(codec, codec.n_q) as enc, StreamingDecoder(codec) as dec:
        for i in range(0, x.shape[-1], CHUNK):
            t0 = time.perf_counter()
            c = enc.push(x[..., i: i + CHUNK])
            y = dec.push(c)
            times.append(time.perf_counter() - t0)
            codes_out.append(c)
            wav_out.append(y)
        c = enc.flush()
        codes_out.append(c)
        wav_out += [dec.push(c), dec.flush()]
    return torch.cat(codes_out, -1), torch.cat(wav_out, -1), np.array(times[1:] or times) * 1000  # 1st: setup


def run_streaming(codec, wav: np.ndarray) -> dict:
    """Chunk-by-chunk encode + decode: wall time per chunk (at THREADS and at 1 thread), streamed vs offline."""
    x = torch.from_numpy(wav)[None, None]
    threads = torch.get_num_threads()
    streamed_codes, streamed, ms = _stream(codec, x)
    torch.set_num_threads(1)
    _, _, ms1 = _stream(codec, x)
    torch.set_num_threads(threads)
    with torch.inference_mode():
        offline_codes = codec.encode(x, codec.n_q)
        offline = codec.decode(offline_codes)
    n = min(streamed.shape[-1], offline.shape[-1])
    chunk_ms = CHUNK / SR * 1000
    return {"algorithmic_latency_ms": codec.latency_samples / SR * 1000, "latency_samples": codec.latency_samples,
            "chunk_samples": CHUNK, "chunk_audio_ms": chunk_ms, "chunks": len(ms) + 1, "threads": threads,
            "chunk_wall_ms_mean": float(ms.mean()), "chunk_wall_ms_p95": float(np.percentile(ms, 95)),
            "chunk_x_realtime": chunk_ms / float(ms.mean()),
            "one_thread": {"chunk_wall_ms_mean": float(ms1.mean()), "chunk_wall_ms_p95": float(np.percentile(ms1, 95)),
                           "chunk_x_realtime": chunk_ms / float(ms1.mean())},
            "clip_seconds": x.shape[-1] / SR, "codes_equal_offline": bool(torch.equal(streamed_codes, offline_codes)),
            "samples_streamed": int(streamed.shape[-1]), "samples_offline": int(offline.shape[-1]),
            "max_abs_diff_vs_offline": float((streamed[..., :n] - offline[..., :n]).abs().max())}


def make_targets(fid: dict, speed: dict, stream: dict) -> list[dict]:
    targets = []
    for d in DOMAINS:
        ours, opus = fid[d]["ours_6kbps"], fid[d]["opus_6kbps"]
        targets.append(target(f"{d}_mel_distance_6kbps_over_opus6k", ratio(ours["mel_distance"], opus["mel_distance"]), "<=", 1.0))
        targets.append(target(f"{d}_stft_distance_6kbps_over_opus6k", ratio(ours["stft_distance"], opus["stft_distance"]), "<=", 1.0))
        targets.append(target(f"{d}_si_sdr_gain_db_6kbps_vs_opus6k", ours["si_sdr"] - opus["si_sdr"], ">=", 0.0))
    sp = fid["speech"]
    for kbps in ("6", "3"):
        ours, opus = sp[f"ours_{kbps}kbps"], sp["opus_6kbps"]
        if kbps == "3":
            targets.append(target("speech_mel_distance_3kbps_over_opus6k", ratio(ours["mel_distance"], opus["mel_distance"]), "<=", 1.0))
        targets.append(target(f"speech_pesq_wb_{kbps}kbps_over_opus6k", ratio(ours["pesq_wb"], opus["pesq_wb"]), ">=", 1.0))
        targets.append(target(f"speech_stoi_{kbps}kbps_over_opus6k", ratio(ours["stoi"], opus["stoi"]), ">=", 1.0))
    ours, enc = speed["ours_6kbps"], speed["encodec_6kbps"]
    targets.append(target("encode_decode_x_realtime", ours["encode_decode_x_realtime"], ">=", 100))
    targets.append(target("encode_decode_speed_over_encodec", ratio(ours["encode_decode_x_realtime"], enc["encode_decode_x_realtime"]), ">=", 3.0))
    targets.append(target("streaming_max_abs_diff_vs_offline", stream["max_abs_diff_vs_offline"], "<=", 1e-4))
    return targets


REAL_DOMAINS = {d: f"real-{d}" for d in DOMAINS}  # domain -> dataset folder under --data


def run_whisper(codec, folder: Path, rows: list[dict]) -> dict:
    """Whisper tiny.en CER/WER of English test utterances (whole clips) as recorded and after every system: corpus
    rates (all edits over all reference characters / words), per-clip CERs and their mean, and each system's corpus
    CER over the recording's."""
    judge = load_whisper(THREADS)
    scores: dict[str, list[dict]] = {}
    with progress_bar("whisper on real speech", len(rows), "clips") as bar:
        for r in rows:
            wav, _ = load_audio(audio_path(folder, r), SR)
            versions = {"original": wav, **code_all(codec, wav, {})}
            for name, y in versions.items():
                scores.setdefault(name, []).append(judge.score(y, SR, r["text"]))
            bar.advance()
    chars = np.array([len(normalize_text(r["text"])) for r in rows], dtype=float)
    words = np.array([len(normalize_text(r["text"]).split()) for r in rows], dtype=float)
    out = {"judge": judge.name, "clips": len(rows), "clip_ids": [r["id"] for r in rows],
           "seconds": float(sum(r["duration"] for r in rows)),
           # corpus rates: every clip's edits over all reference characters (words), as ASR results are reported
           "cer": {k: float(np.dot([v["cer"] for v in vs], chars) / chars.sum()) for k, vs in scores.items()},
           "wer": {k: float(np.dot([v["wer"] for v in vs], words) / words.sum()) for k, vs in scores.items()},
           "cer_mean_per_clip": {k: float(np.mean([v["cer"] for v in vs])) for k, vs in scores.items()},
           "cer_per_clip": {k: [v["cer"] for v in vs] for k, vs in scores.items()}}
    out["cer_over_original"] = {k: ratio(v, out["cer"]["original"]) for k, v in out["cer"].items() if k != "original"}
    return out


def run_real(codec, root: Path, quick: bool) -> dict:
    """Fidelity of every system on the real test splits, and Whisper on their English speech -> the figures to merge:
    ``fidelity``, ``clips`` and ``clip_ids`` keyed ``real_DOMAIN``, and ``real`` (data, packages, bandwidths, Whisper)."""
    clips = {d: pick_clips(root, name, 6 if quick else 40) for d, name in REAL_DOMAINS.items()}
    speech_folder, english = test_rows(root, REAL_DOMAINS["speech"], 6 if quick else 40,
                                       keep=lambda r: r.get("language") == "en" and bool(r.get("text")))
    opus_kbps: dict[str, list[float]] = {}
    torch.set_num_threads(FIDELITY_THREADS)
    fid, examples = run_fidelity(codec, clips, opus_kbps, "codec fidelity, real recordings")
    whisper = run_whisper(codec, speech_folder, english)
    manifests = {d: {r["id"]: r for r in read_manifest(root / name, "test")} for d, name in REAL_DOMAINS.items()}
    described = {d: [manifests[d][i] for i, _ in c] for d, c in clips.items()}
    fidelity = {f"real_{d}": v for d, v in fid.items()}
    for system, cer in whisper["cer"].items():  # Whisper beside the other metrics of each system
        fidelity["real_speech"].setdefault(system, {}).update(whisper_cer=cer, whisper_wer=whisper["wer"][system])
    return {"fidelity": fidelity,
            "clips": {f"real_{d}": len(c) for d, c in clips.items()},
            "clip_ids": {f"real_{d}": [i for i, _ in c] for d, c in clips.items()},
            "real": {"data": {d: repo_path(root / name) for d, name in REAL_DOMAINS.items()},
                     "packages": {d: sorted({r["package"] for r in rows}) for d, rows in described.items()},
                     "bandwidth_hz_median": {d: float(np.median([r["bandwidth_hz"] for r in rows]))
                                             for d, rows in described.items()},
                     "whisper": whisper, "opus_payload_kbps_mean": {k: float(np.mean(v)) for k, v in opus_kbps.items()}},
            "examples": {d: (clips[d][0][0], ex) for d, ex in examples.items()}}


def make_real_targets(real: dict) -> list[dict]:
    """At 6 kbps: mel distance below Opus 6 kbps in every domain; on speech PESQ-wb and STOI above it and Whisper's
    CER at most 1.1x the recording's. Stretch (marked): 3 kbps mel distance below Opus 6 kbps."""
    fid = {d: real["fidelity"][f"real_{d}"] for d in DOMAINS}
    targets = []
    for d in DOMAINS:
        ours, opus = fid[d]["ours_6kbps"], fid[d]["opus_6kbps"]
        targets.append(target(f"real_{d}_mel_distance_6kbps_over_opus6k", ratio(ours["mel_distance"], opus["mel_distance"]), "<=", 1.0))
    sp = fid["speech"]
    targets.append(target("real_speech_pesq_wb_6kbps_over_opus6k", ratio(sp["ours_6kbps"]["pesq_wb"], sp["opus_6kbps"]["pesq_wb"]), ">=", 1.0))
    targets.append(target("real_speech_stoi_6kbps_over_opus6k", ratio(sp["ours_6kbps"]["stoi"], sp["opus_6kbps"]["stoi"]), ">=", 1.0))
    targets.append(target("real_speech_whisper_cer_6kbps_over_original",
                          real["real"]["whisper"]["cer_over_original"]["ours_6kbps"], "<=", 1.1))
    for d in DOMAINS:
        ours, opus = fid[d]["ours_3kbps"], fid[d]["opus_6kbps"]
        targets.append({**target(f"real_{d}_mel_distance_3kbps_over_opus6k", ratio(ours["mel_distance"], opus["mel_distance"]), "<=", 1.0),
                        "stretch": True})
    return targets


def make_figure(fid: dict, example: dict, path: Path) -> Path:
    """Bars of mel distance and SI-SDR per domain x system above a spectrogram grid of one speech clip."""
    import tempfile

    import matplotlib.pyplot as plt

    from tokenwave.plots import save_figure, spectrogram_grid

    systems = system_names()
    with tempfile.TemporaryDirectory() as tmp:
        grid = spectrogram_grid([(name, example["speech"][key], SR) for name, key in (
            ("original", "original"), ("ours 6 kbps", "ours_6kbps"), ("ours 1.5 kbps", "ours_1.5kbps"),
            ("Opus 6 kbps", "opus_6kbps"))], Path(tmp) / "grid.png")
        image = plt.imread(grid)
    fig = plt.figure(figsize=(12, 11))
    sub = fig.add_gridspec(2, 2, height_ratios=[1, 1.6])
    width = 0.8 / len(systems)
    for col, (metric, label) in enumerate((("mel_distance", "mel distance (lower is better)"),
                                           ("si_sdr", "SI-SDR dB (higher is better)"))):
        ax = fig.add_subplot(sub[0, col])
        for j, s in enumerate(systems):
            vals = [fid[d][s][metric] for d in DOMAINS]
            ax.bar(np.arange(len(DOMAINS)) + (j - (len(systems) - 1) / 2) * width, vals, width, label=s.replace("_", " "))
        ax.set_xticks(range(len(DOMAINS)), DOMAINS)
        ax.set_title(label, fontsize=9)
        ax.axhline(0, color="black", lw=0.5)
        if col == 0:
            ax.legend(fontsize=7)
    ax = fig.add_subplot(sub[1, :])
    ax.imshow(image)
    ax.axis("off")
    ax.set_title("one held-out speech clip", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def make_real_figure(examples: dict, path: Path) -> Path:
    """Spectrograms of one held-out real clip per domain: as recorded, ours at 6 and 3 kbps, Opus at 6 kbps."""
    import tempfile

    import matplotlib.pyplot as plt

    from tokenwave.plots import save_figure, spectrogram_grid

    fig, axes = plt.subplots(len(examples), 1, figsize=(12, 4.2 * len(examples)))
    with tempfile.TemporaryDirectory() as tmp:
        for ax, (domain, (clip_id, ex)) in zip(np.atleast_1d(axes), examples.items()):
            grid = spectrogram_grid([(name, ex[key], SR) for name, key in (
                ("as recorded", "original"), ("ours 6 kbps", "ours_6kbps"), ("ours 3 kbps", "ours_3kbps"),
                ("Opus 6 kbps", "opus_6kbps"))], Path(tmp) / f"{domain}.png")
            ax.imshow(plt.imread(grid))
            ax.axis("off")
            ax.set_title(f"real {domain}, held-out clip {clip_id}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="codec checkpoint folder (default: checkpoints/codec, "
                        "else runs/codec/model)")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data", help="folder holding speech/, music/, sfx/ "
                        "and real-speech/, real-music/, real-sfx/")
    parser.add_argument("--name", default="codec", help="results name: benchmarks/results/NAME.json (and .png); "
                        "e.g. codec-v2 for a second codec measured beside the default")
    parser.add_argument("--only", choices=("all", "synthetic", "real"), default="all",
                        help="measure one part; the other's targets and figures are kept from the previous results")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = args.model or default_model()
    previous = RESULTS_DIR / f"{args.name}.json"
    previous = json.loads(previous.read_text()) if args.only != "all" and previous.exists() else {}
    try:
        codec = load_codec(model)
        clips = {d: pick_clips(args.data, d, 6 if args.quick else 40) for d in DOMAINS} if args.only != "real" else {}
        real = run_real(codec, args.data, args.quick) if args.only != "synthetic" else None
    except TokenwaveError as err:
        sys.exit(f"error: {err.one_line()}")
    targets: list[dict] = []
    figures: dict = {}
    example: dict = {}
    if clips:
        opus_kbps: dict[str, list[float]] = {}
        torch.set_num_threads(FIDELITY_THREADS)
        fid, example = run_fidelity(codec, clips, opus_kbps)
        torch.set_num_threads(THREADS)
        pool = np.concatenate([w for items in clips.values() for _, w in items])
        speed_clip = np.resize(pool, int(SPEED_SECONDS * SR)).astype(np.float32)
        speed = run_speed(codec, speed_clip, 3 if args.quick else 7)
        stream = run_streaming(codec, np.resize(clips["speech"][0][1], int(STREAM_SECONDS * SR)).astype(np.float32))
        figures = {
            "model": _shown(model), "sample_rate": SR, "clip_seconds_max": CLIP_SECONDS, "fidelity_threads": FIDELITY_THREADS,
            "clips": {d: len(c) for d, c in clips.items()}, "clip_ids": {d: [i for i, _ in c] for d, c in clips.items()},
            "fidelity": fid,
            "opus": {"application": APPLICATION, "vbr": VBR, "encoder": "ffmpeg libopus, 20 ms frames, complexity 10",
                     "payload_kbps_mean": {k: float(np.mean(v)) for k, v in opus_kbps.items()}},
            "speed": speed, "streaming": stream,
        }
        targets = make_targets(fid, speed, stream)
    else:  # --only real: the synthetic part as the previous run measured it
        figures = previous.get("figures", {})
        targets = kept_targets(previous, lambda t: not t["name"].startswith("real_"))
    if real is None:  # --only synthetic: the real part as the previous run measured it
        old = previous.get("figures", {})
        real = {k: {n: x for n, x in old.get(k, {}).items() if n.startswith("real_")} for k in ("fidelity", "clips", "clip_ids")}
        if "real" in old:
            real["real"] = old["real"]
        targets += kept_targets(previous, lambda t: t["name"].startswith("real_"))
    else:
        targets += make_real_targets(real)
    for key in ("fidelity", "clips", "clip_ids"):
        figures[key] = {**{n: x for n, x in figures.get(key, {}).items() if not n.startswith("real_")}, **real.get(key, {})}
    if "real" in real:
        figures["real"] = real["real"]
    result = write_result(args.name, command_line(__file__, argv), targets, figures, args.quick, machine_info())
    if example:
        make_figure(figures["fidelity"], example, RESULTS_DIR / f"{args.name}.png")
    if real.get("examples"):
        make_real_figure(real["examples"], RESULTS_DIR / f"{args.name}-real.png")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
