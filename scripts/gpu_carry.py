"""Pack training inputs small enough to travel to a lent GPU machine (64 MiB per call), and unpack them there.

``pack``: a latents folder's float16 splits become int8 with one scale per channel (quantisation noise about 1.5%
of a latent's spread, far under what the flow model learns to) and its index is gzipped; a tokens folder's codes
travel bit-packed (10 bits a code for codebooks of 1024, exactly), index gzipped; ``--max-frames N`` leaves out
the clips longer than a recipe trains on. ``unpack`` restores folders the training commands read unchanged.

``pack-audio``: a dataset folder becomes the same dataset (manifest rows and dataset.json kept, every field included)
with each clip as Ogg Opus at ``--kbps`` (libsndfile's Opus encoder through soundfile, in process: no encoder
started per clip; at the clip's 24 kHz, so Opus spends its bits below 12 kHz). ``load_audio`` reads it back through
soundfile at 24 kHz with no resampling and to the sample, so the codec recipe takes the folder as it is: nothing to
unpack. 48 kbps is about 21 MiB an hour; what it leaves out (log-mel distance to the original, 0.05 on music and 0.12
on speech, 0.04 and 0.06 at 64 kbps) is a tenth to a fifth of a 6 kbps codec's. ``--part i/n`` writes the i-th of n parts of about equal hours (each train clip to the lightest part,
in manifest order), so a corpus larger than one call's 64 MiB travels in several calls to the same machine and is
merged there by naming every part with ``--data``; the valid clips (the first ``--valid-clips`` per domain, which
are the ones validation uses) travel with part 1. The test split never travels: test figures are measured at home.

    python scripts/gpu_carry.py pack runs/latents-music-large runs/gpu/latents-music --splits train valid
    python scripts/gpu_carry.py pack runs/tokens-speech-wide runs/gpu/tokens-speech --splits train valid --max-frames 450
    python scripts/gpu_carry.py unpack runs/gpu/latents-music runs/latents-music-large
    python scripts/gpu_carry.py pack-audio data/real-speech runs/gpu-audio/c1/real-speech-1 --part 1/2
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout: tokenwave beside scripts/
from tokenwave import SAMPLE_RATE
from tokenwave.data.manifest import INFO, audio_path, read_manifest, write_manifest
from tokenwave.errors import InvalidArgumentError, TokenwaveError
from tokenwave.fileio import atomic_dir
from tokenwave.progress import progress_bar


def pack_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """Non-negative integers below ``2**bits`` -> their low ``bits`` bits, packed (little-endian bit order)."""
    flat = x.astype(np.uint32).reshape(-1)
    return np.packbits(((flat[:, None] >> np.arange(bits, dtype=np.uint32)) & 1).astype(np.uint8), bitorder="little")


def unpack_bits(packed: np.ndarray, bits: int, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape))
    b = np.unpackbits(packed, count=n * bits, bitorder="little").reshape(n, bits).astype(np.uint32)
    return (b << np.arange(bits, dtype=np.uint32)).sum(1).astype(np.int16).reshape(shape)


def _select_codes(rows: list[dict], codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each split's codes cut down to ``rows`` (whose ``offset`` is rewritten to the new place, in order)."""
    out: dict[str, list[np.ndarray]] = {}
    ends: dict[str, int] = {}
    for r in rows:
        s = r["split"]
        out.setdefault(s, []).append(codes[s][:, r["offset"]: r["offset"] + r["frames"]])
        r["offset"] = ends.get(s, 0)
        ends[s] = r["offset"] + r["frames"]
    return {s: np.concatenate(v, axis=1) for s, v in out.items()}


def pack(src: Path, dst: Path, splits: list[str] | None, max_frames: int | None = None) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(line) for line in (src / "index.jsonl").read_text().splitlines()]
    if splits:
        rows = [r for r in rows if r["split"] in splits]
    if max_frames:
        rows = [r for r in rows if r["frames"] <= max_frames]
    latents = (src / "latents.safetensors").exists()
    if latents and max_frames:
        raise SystemExit("--max-frames is for tokens folders")
    if not latents:
        codes = {k: v for k, v in load_file(str(src / "codes.safetensors")).items() if k in {r["split"] for r in rows}}
        if max_frames:
            codes = _select_codes(rows, codes)  # rewrites the rows' offsets, so before the index is written
    with gzip.open(dst / "index.jsonl.gz", "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    if latents:
        shutil.copy(src / "latents.json", dst / "latents.json")
        out = {}
        for name, x in load_file(str(src / "latents.safetensors")).items():
            if splits and name not in splits:
                continue
            x = x.astype(np.float32)
            scale = np.abs(x).max(axis=1, keepdims=True) / 127.0 + 1e-8
            out[name] = np.round(x / scale).astype(np.int8)
            out[name + ".scale"] = scale.astype(np.float32)
        save_file(out, str(dst / "latents.q8.safetensors"))
    else:
        info = json.loads((src / "tokens.json").read_text())
        bits = max(1, int(np.ceil(np.log2(info.get("codebook_size", 1 << 15)))))
        info.update(packed_bits=bits, clips=len(rows), frames={k: int(v.shape[1]) for k, v in sorted(codes.items())})
        (dst / "tokens.json").write_text(json.dumps(info))
        packed = {}
        for k, v in codes.items():
            packed[k] = pack_bits(v, bits)
            packed[k + ".shape"] = np.array(v.shape, dtype=np.int64)
        save_file(packed, str(dst / "codes.bits.safetensors"))


def unpack(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    with gzip.open(src / "index.jsonl.gz", "rt") as f:
        (dst / "index.jsonl").write_text(f.read())
    if (src / "latents.q8.safetensors").exists():
        shutil.copy(src / "latents.json", dst / "latents.json")
        q = load_file(str(src / "latents.q8.safetensors"))
        save_file({k: (q[k].astype(np.float32) * q[k + ".scale"]).astype(np.float16)
                   for k in q if not k.endswith(".scale")}, str(dst / "latents.safetensors"))
    else:
        info = json.loads((src / "tokens.json").read_text())
        bits = info.pop("packed_bits")
        q = load_file(str(src / "codes.bits.safetensors"))
        codes = {k: unpack_bits(q[k], bits, tuple(int(n) for n in q[k + ".shape"])) for k in q if not k.endswith(".shape")}
        save_file(codes, str(dst / "codes.safetensors"))
        (dst / "tokens.json").write_text(json.dumps(info, indent=2))


CARRIED_SPLITS = ("train", "valid")


def split_parts(rows: list[dict], n: int) -> list[list[dict]]:
    """Train rows -> ``n`` lists of about equal hours: each row, in manifest order, to the part holding the fewest
    seconds so far (the lowest-numbered on a tie), so every part samples the whole corpus."""
    parts: list[list[dict]] = [[] for _ in range(n)]
    seconds = np.zeros(n)
    for r in rows:
        k = int(np.argmin(seconds))
        parts[k].append(r)
        seconds[k] += r["duration"]
    return parts


def select_rows(rows: list[dict], splits: list[str], max_hours: float | None, part: tuple[int, int],
                valid_clips: int, seed: int = 0) -> list[dict]:
    """The manifest rows one part carries, in manifest order: train rows (at most ``max_hours``, a seeded draw of
    whole clips) split into ``part = (i, n)``; with part 1 the first ``valid_clips`` valid rows of each domain."""
    bad = sorted(set(splits) - set(CARRIED_SPLITS))
    if bad:
        raise InvalidArgumentError(f"--splits {' '.join(bad)}: only {' and '.join(CARRIED_SPLITS)} travel",
                                   "leave the test split at home: its figures are measured on this machine")
    i, n = part
    if not 1 <= i <= n:
        raise InvalidArgumentError(f"--part {i}/{n} names no part", "give i/n with 1 <= i <= n, e.g. --part 1/3")
    train = [r for r in rows if r["split"] == "train"] if "train" in splits else []
    if max_hours is not None:
        keep, total = set(), 0.0
        for j in np.random.default_rng(seed).permutation(len(train)):
            if total + train[j]["duration"] > max_hours * 3600:
                break
            keep.add(int(j))
            total += train[j]["duration"]
        train = [r for j, r in enumerate(train) if j in keep]
    chosen = {id(r) for r in split_parts(train, n)[i - 1]}
    if i == 1 and "valid" in splits:
        per_domain: dict[str, int] = {}
        for r in rows:
            if r["split"] == "valid" and per_domain.get(r["domain"], 0) < valid_clips:
                per_domain[r["domain"]] = per_domain.get(r["domain"], 0) + 1
                chosen.add(id(r))
    return [r for r in rows if id(r) in chosen]


OPUS_KBPS = (6.0, 256.0)  # libsndfile's Opus encoder: compression level 1 -> 6 kbps, 0 -> 256 kbps, linear between


def encode_opus(wav: np.ndarray, sr: int, kbps: float, path: Path) -> None:
    """Mono float32 ``wav [N]`` at ``sr`` Hz (an Opus rate: 8/12/16/24/48 kHz) -> ``path``, Ogg Opus at ``kbps``."""
    import soundfile as sf  # lazy: unpack runs on GPU hosts that may lack soundfile

    lo, hi = OPUS_KBPS
    if not lo <= kbps <= hi:
        raise InvalidArgumentError(f"--kbps {kbps:g} is outside what the Opus writer takes", f"use {lo:g}..{hi:g}")
    sf.write(str(path), np.clip(wav, -1, 1), sr, format="OGG", subtype="OPUS", compression_level=(hi - kbps) / (hi - lo))


def pack_audio(src: Path, dst: Path, kbps: float = 48.0, splits: list[str] | None = None, max_hours: float | None = None,
               part: tuple[int, int] = (1, 1), valid_clips: int = 16, workers: int = 2, seed: int = 0) -> dict:
    """A dataset folder -> the same dataset at ``dst`` with its clips as Ogg Opus (``audio/<split>/<id>.ogg``), the
    rows :func:`select_rows` picks, each unchanged but for its ``path``. Written beside ``dst`` and renamed into
    place at the end. Returns the part's summary: clips per split, hours, MiB."""
    from tokenwave.audio import load_audio  # lazy: unpack runs on GPU hosts that may lack soundfile/soxr

    rows = select_rows(read_manifest(src), list(splits or CARRIED_SPLITS), max_hours, part, valid_clips, seed)
    with atomic_dir(dst) as tmp:

        def one(r: dict) -> dict:
            wav, _ = load_audio(audio_path(src, r), SAMPLE_RATE)
            rel = Path("audio") / r["split"] / f"{r['id']}.ogg"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            encode_opus(wav, SAMPLE_RATE, kbps, tmp / rel)
            return {**r, "path": rel.as_posix()}

        out = []
        with progress_bar(f"Opus {kbps:g} kbps {src.name} {part[0]}/{part[1]}", total=len(rows), unit="clips") as bar, \
                ThreadPoolExecutor(max(1, workers)) as pool:
            for row in pool.map(one, rows):
                out.append(row)
                bar.advance()
        write_manifest(out, tmp / "manifest.jsonl")
        info = json.loads((src / INFO).read_text()) if (src / INFO).exists() else {}
        size = sum(f.stat().st_size for f in tmp.rglob("*") if f.is_file())
        summary = {"source": str(src), "part": f"{part[0]}/{part[1]}", "kbps": kbps, "codec": "opus",
                   "clips": {s: sum(r["split"] == s for r in out) for s in CARRIED_SPLITS},
                   "hours": {s: round(sum(r["duration"] for r in out if r["split"] == s) / 3600, 4)
                             for s in CARRIED_SPLITS}, "mib": round(size / 2**20, 2)}
        (tmp / INFO).write_text(json.dumps({**info, "carried": summary}, indent=2) + "\n")
    return summary


def parse_part(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--part {text!r}: give i/n, e.g. 2/3") from None
    return i, n


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["pack", "unpack", "pack-audio"])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--splits", nargs="*", help="pack only these splits (pack-audio: train and valid at most)")
    ap.add_argument("--max-frames", type=int, help="tokens: pack only clips of at most this many frames")
    ap.add_argument("--kbps", type=float, default=48.0, help="pack-audio: Opus bitrate (48 kbps: about 21 MiB an hour)")
    ap.add_argument("--max-hours", type=float, help="pack-audio: at most this many hours of train clips (a seeded draw)")
    ap.add_argument("--part", type=parse_part, default=(1, 1), help="pack-audio: the i-th of n parts of equal hours, i/n")
    ap.add_argument("--valid-clips", type=int, default=16, help="pack-audio: valid clips per domain (with part 1)")
    ap.add_argument("--workers", type=int, default=2, help="pack-audio: clips encoded at once")
    ap.add_argument("--seed", type=int, default=0, help="pack-audio: the --max-hours draw")
    a = ap.parse_args()
    if a.action == "pack-audio":
        try:
            print(json.dumps(pack_audio(a.src, a.dst, a.kbps, a.splits, a.max_hours, a.part, a.valid_clips, a.workers,
                                        a.seed)))
        except TokenwaveError as err:
            raise SystemExit(f"error: {err}") from None
    else:
        pack(a.src, a.dst, a.splits, a.max_frames) if a.action == "pack" else unpack(a.src, a.dst)
