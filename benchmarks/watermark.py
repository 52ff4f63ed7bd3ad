"""Watermark benchmark: detection after re-encoding and edits, false positives, audibility, speed.

    python benchmarks/watermark.py [--quick] [--data ROOT]

Items: held-out test clips of ROOT/speech, ROOT/music and ROOT/sfx at 24 kHz; clips shorter than 6 s are joined
with the next clips of the same split (up to 10 s), so every item outlasts the 3 s crop. Each item is marked with
the default key (``tokenwave.safety.watermark.embed_watermark``) and attacked: Opus 32 kbps and MP3 64 kbps
(ffmpeg libopus / libmp3lame), resampling to 16 kHz and back (soxr), +6 dB and -6 dB gain (float, not clipped),
a 3 s crop at a random offset, a 2 % speed change (sox speed, pitch moves too) and a 5 % tempo change (sox tempo,
pitch kept; faster for odd items, slower for even ones), white noise at 20 dB SNR, and all the edits but the crop,
speed and tempo together ("chain":
gain -6 dB, noise 20 dB SNR, 16 kHz, MP3 64 kbps). Detection rate, z-score and p-value per attack and domain.
False positives: unmarked items of the test and valid splits, as they are and after every attack, plus marked
items checked with a wrong key. Audibility of marked vs unmarked: log-mel distance, SI-SDR, PESQ-wb on speech.
Speed: embed and detect x real time on a 10 s item, 1 thread; streaming embedding equals offline.
Writes benchmarks/results/watermark.json and watermark.png; prints the JSON.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, RESULTS_DIR, arg_parser, command_line, machine_info, target, write_result  # noqa: E402

from tokenwave.audio import load_audio, resample  # noqa: E402
from tokenwave.data.manifest import audio_path, read_manifest  # noqa: E402
from tokenwave.errors import DatasetError, MissingSystemPackageError, TokenwaveError  # noqa: E402
from tokenwave.eval.fidelity import mel_distance, pesq_wb, si_sdr  # noqa: E402
from tokenwave.eval.opus import opus_roundtrip  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402
from tokenwave.safety import watermark as wm  # noqa: E402

SR = 24000
DOMAINS = ("speech", "music", "sfx")
MIN_ITEM, MAX_ITEM, CROP = 6.0, 10.0, 3.0
WRONG_KEY = "not-the-key"


def mp3_roundtrip(x: np.ndarray, sr: int, kbps: int = 64) -> np.ndarray:
    """MP3 (libmp3lame, CBR) encode + decode through ffmpeg; trimmed / padded to the input length."""
    with tempfile.TemporaryDirectory(prefix="tokenwave-mp3-") as tmp:
        path = Path(tmp) / "a.mp3"
        enc = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "f32le", "-ar", str(sr), "-ac", "1", "-i", "pipe:0",
                              "-c:a", "libmp3lame", "-b:a", f"{kbps}k", "-y", str(path)],
                             input=np.clip(x, -1, 1).astype(np.float32).tobytes(), capture_output=True)
        if enc.returncode != 0:
            raise MissingSystemPackageError("an ffmpeg with libmp3lame (needed for the MP3 attack)", "ffmpeg")
        raw = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar",
                              str(sr), "pipe:1"], capture_output=True, check=True).stdout
    y = np.frombuffer(raw, dtype=np.float32)
    return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)].copy()


def add_noise(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x)).astype(np.float32)
    return x + noise * np.sqrt(np.mean(x ** 2) / 10 ** (snr_db / 10))


def sox_effect(x: np.ndarray, *effect: str) -> np.ndarray:
    """``x`` at 24 kHz through a sox effect: ``speed 1.02`` (resampled: pitch and tempo move together) or
    ``tempo 1.05`` (WSOLA time-stretch, pitch kept); the output is as long as the effect makes it."""
    fmt = ["-t", "f32", "-r", str(SR), "-c", "1"]
    run = subprocess.run(["sox", *fmt, "-", *fmt, "-", *effect, "rate", str(SR)],
                         input=np.clip(x, -1, 1).astype(np.float32).tobytes(), capture_output=True)
    if run.returncode != 0:
        raise MissingSystemPackageError("sox (needed for the speed and tempo attacks)", "sox")
    return np.frombuffer(run.stdout, dtype=np.float32).copy()


def crop(x: np.ndarray, seconds: float, seed: int) -> np.ndarray:
    n = int(seconds * SR)
    start = int(np.random.default_rng(seed).integers(0, max(1, len(x) - n)))
    return x[start: start + n]


def attacks(seed: int) -> dict:
    """name -> function of a 24 kHz waveform."""
    def resample16(x):
        return resample(resample(x, SR, 16000), 16000, SR)[: len(x)]

    return {
        "none": lambda x: x,
        "opus_32kbps": lambda x: opus_roundtrip(x, SR, 32),
        "mp3_64kbps": lambda x: mp3_roundtrip(x, SR, 64),
        "resample_16k": resample16,
        "gain_plus_6db": lambda x: x * 10 ** (6 / 20),
        "gain_minus_6db": lambda x: x * 10 ** (-6 / 20),
        "crop_3s": lambda x: crop(x, CROP, seed),
        "speed_2pct": lambda x: sox_effect(x, "speed", "1.02" if seed % 2 else "0.98"),
        "tempo_5pct": lambda x: sox_effect(x, "tempo", "1.05" if seed % 2 else "0.95"),
        "noise_20db_snr": lambda x: add_noise(x, 20.0, seed),
        "chain": lambda x: mp3_roundtrip(resample16(add_noise(x * 10 ** (-6 / 20), 20.0, seed)), SR, 64),
    }


def load_items(root: Path, domain: str, split: str, n: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``n`` items of 6..10 s from a split: consecutive clips (sorted by id) joined until 6 s."""
    folder = root / domain
    if not (folder / "manifest.jsonl").exists():
        raise DatasetError(f"no {domain} dataset at {folder}",
                           f"build it with `tokenwave data build {domain} --out {folder}` or pass --data ROOT")
    rows = sorted(read_manifest(folder, split), key=lambda r: r["id"])
    items, parts, ids = [], [], []
    for row in rows:
        parts.append(load_audio(audio_path(folder, row), SR)[0])
        ids.append(row["id"])
        if sum(len(p) for p in parts) >= MIN_ITEM * SR:
            items.append(("+".join(ids), np.concatenate(parts)[: int(MAX_ITEM * SR)]))
            parts, ids = [], []
            if len(items) == n:
                break
    return items


def audibility(x: np.ndarray, y: np.ndarray, speech: bool) -> dict:
    out = {"mel_distance": mel_distance(x, y, SR), "si_sdr": si_sdr(x, y)}
    if speech:
        out["pesq_wb"] = pesq_wb(x, y, SR).value
    return out


def run(items: dict, null_items: dict) -> tuple[dict, dict, dict]:
    """Detection results per attack and domain, false-positive checks, and audibility per domain."""
    names = list(attacks(0))
    det: dict = {a: {d: [] for d in DOMAINS} for a in names}
    fp: dict = {"unmarked": [], "wrong_key": []}
    aud: dict = {d: [] for d in DOMAINS}
    total = sum(len(v) for v in items.values()) + sum(len(v) for v in null_items.values())
    with progress_bar("watermark", total, "items") as bar:
        for domain, its in items.items():
            for i, (_, x) in enumerate(its):
                y = wm.embed_watermark(x, SR)
                aud[domain].append(audibility(x, y, domain == "speech"))
                for a, f in attacks(i).items():
                    r = wm.detect_watermark(f(y), SR)
                    det[a][domain].append({"present": r.present, "p_value": r.p_value, "score": r.score})
                r = wm.detect_watermark(y, SR, key=WRONG_KEY)
                fp["wrong_key"].append({"present": r.present, "p_value": r.p_value, "score": r.score, "domain": domain})
                bar.advance()
        for domain, its in null_items.items():
            for i, (_, x) in enumerate(its):
                for a, f in attacks(1000 + i).items():
                    r = wm.detect_watermark(f(x), SR)
                    fp["unmarked"].append({"present": r.present, "p_value": r.p_value, "score": r.score,
                                           "domain": domain, "attack": a})
                bar.advance()
    return det, fp, aud


def summarise(det: dict, fp: dict, aud: dict) -> dict:
    table = {}
    for a, per in det.items():
        row = {}
        for d, rs in per.items():
            row[d] = {"detection_rate": float(np.mean([r["present"] for r in rs])),
                      "score_mean": float(np.mean([r["score"] for r in rs])),
                      "score_min": float(np.min([r["score"] for r in rs])),
                      "p_value_median": float(np.median([r["p_value"] for r in rs])),
                      "p_value_max": float(np.max([r["p_value"] for r in rs])), "items": len(rs)}
        allr = [r for rs in per.values() for r in rs]
        row["all"] = {"detection_rate": float(np.mean([r["present"] for r in allr])),
                      "score_mean": float(np.mean([r["score"] for r in allr])),
                      "score_min": float(np.min([r["score"] for r in allr])), "items": len(allr)}
        table[a] = row
    fpr = {k: {"false_positive_rate": float(np.mean([r["present"] for r in v])), "checks": len(v),
               "score_max": float(np.max([r["score"] for r in v])), "p_value_min": float(np.min([r["p_value"] for r in v])),
               "score_mean": float(np.mean([r["score"] for r in v]))} for k, v in fp.items()}
    audible = {}
    for d, rows in aud.items():
        audible[d] = {m: float(np.mean([r[m] for r in rows if r.get(m) is not None]))
                      for m in rows[0] if any(r.get(m) is not None for r in rows)}
    return {"detection": table, "false_positives": fpr, "audibility_marked_vs_unmarked": audible}


def speed_and_streaming(x: np.ndarray) -> dict:
    x = np.resize(x, 10 * SR).astype(np.float32)
    t0 = time.perf_counter()
    for _ in range(5):
        y = wm.embed_watermark(x, SR)
    t_embed = (time.perf_counter() - t0) / 5
    t0 = time.perf_counter()
    for _ in range(5):
        wm.detect_watermark(y, SR)
    t_detect = (time.perf_counter() - t0) / 5
    stream = wm.WatermarkStream(SR)
    chunk = SR // 50
    parts = [stream.push(x[i: i + chunk]) for i in range(0, len(x), chunk)] + [stream.flush()]
    ys = np.concatenate(parts)
    return {"audio_seconds": 10.0, "embed_x_realtime": 10.0 / t_embed, "detect_x_realtime": 10.0 / t_detect,
            "stream_chunk_samples": chunk, "stream_latency_ms": wm.HOP_SECONDS * 1000,
            "stream_max_abs_diff_vs_offline": float(np.abs(ys - y).max()) if len(ys) == len(y) else None}


def make_targets(s: dict, speed: dict) -> list[dict]:
    det, fpr, aud = s["detection"], s["false_positives"], s["audibility_marked_vs_unmarked"]
    targets = [target(f"detection_rate_{a}", det[a]["all"]["detection_rate"], ">=", 0.95) for a in det]
    targets += [target("false_positive_rate_unmarked", fpr["unmarked"]["false_positive_rate"], "<=", 0.01),
                target("false_positive_rate_wrong_key", fpr["wrong_key"]["false_positive_rate"], "<=", 0.01)]
    targets += [target(f"{d}_si_sdr_marked_vs_unmarked_db", aud[d]["si_sdr"], ">=", 20.0) for d in DOMAINS]
    targets.append(target("speech_pesq_wb_marked_vs_unmarked", aud["speech"].get("pesq_wb"), ">=", 4.0))
    targets.append(target("embed_x_realtime", speed["embed_x_realtime"], ">=", 100))
    targets.append(target("stream_max_abs_diff_vs_offline", speed["stream_max_abs_diff_vs_offline"], "<=", 1e-5))
    return targets


def make_figure(s: dict, det: dict, fp: dict, path: Path) -> Path:
    """Detection rate per attack x domain, and the score distributions of marked (attacked) vs unmarked audio."""
    import matplotlib.pyplot as plt

    from tokenwave.plots import save_figure

    names = list(s["detection"])
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [1.6, 1]})
    ax = axes[0]
    width = 0.8 / len(DOMAINS)
    for j, d in enumerate(DOMAINS):
        ax.bar(np.arange(len(names)) + (j - 1) * width, [s["detection"][a][d]["detection_rate"] for a in names],
               width, label=d)
    ax.set_xticks(range(len(names)), [a.replace("_", " ") for a in names], rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"detection rate (p < {wm.P_THRESHOLD:g})", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    marked = [r["score"] for per in det.values() for rs in per.values() for r in rs]
    unmarked = [r["score"] for r in fp["unmarked"]] + [r["score"] for r in fp["wrong_key"]]
    bins = np.linspace(0, max(max(marked), 6) + 1, 50)
    ax.hist(unmarked, bins, alpha=0.6, label="unmarked / wrong key")
    ax.hist(marked, bins, alpha=0.6, label="marked, all attacks")
    ax.axvline(_threshold_z(), color="black", ls="--", lw=1, label="decision threshold")
    ax.set_xlabel("score z (best candidate)")
    ax.set_title("score distributions", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _threshold_z() -> float:
    """The z at which ``detect_watermark`` says present (Šidák over PHASES * PERIOD candidates)."""
    from statistics import NormalDist

    trials = wm.PHASES * wm.PERIOD
    p_single = -np.expm1(np.log1p(-wm.P_THRESHOLD / 2) / trials)  # half the budget: the as-is search
    return float(NormalDist().inv_cdf(1 - p_single))


def main(argv: list[str] | None = None) -> dict:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data", help="folder holding speech/, music/, sfx/")
    args = parser.parse_args(argv)
    n, n_null = (4, 4) if args.quick else (12, 30)
    try:
        items = {d: load_items(args.data, d, "test", n) for d in DOMAINS}
        null_items = {d: load_items(args.data, d, "test", n_null) + load_items(args.data, d, "valid", n_null)
                      for d in DOMAINS}
    except TokenwaveError as err:
        sys.exit(f"error: {err.one_line()}")
    det, fp, aud = run(items, null_items)
    summary = summarise(det, fp, aud)
    speed = speed_and_streaming(items["speech"][0][1])
    figures = {
        "method": {"kind": "spread-spectrum band-energy modulation", "alpha_db": wm.ALPHA_DB, "bands": wm.BANDS,
                   "band_hz": [wm.F_LOW, wm.F_HIGH], "hop_ms": wm.HOP_SECONDS * 1000, "period_frames": wm.PERIOD,
                   "p_threshold": wm.P_THRESHOLD, "threshold_z": _threshold_z(), "search_candidates": wm.PHASES * wm.PERIOD,
                   "time_scales_searched_10s": len(wm.time_scales(500)), "max_stretch": wm.MAX_STRETCH},
        "sample_rate": SR, "items": {d: len(v) for d, v in items.items()},
        "item_ids": {d: [i for i, _ in v] for d, v in items.items()},
        "null_items": {d: len(v) for d, v in null_items.items()}, "attacks": list(attacks(0)),
        **summary, "speed": speed,
    }
    result = write_result("watermark", command_line(__file__, argv), make_targets(summary, speed), figures, args.quick,
                          machine_info())
    make_figure(summary, det, fp, RESULTS_DIR / "watermark.png")
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
