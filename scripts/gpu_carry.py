"""Pack training inputs small enough to travel to a lent GPU machine (64 MiB per call), and unpack them there.

``pack``: a latents folder's float16 splits become int8 with one scale per channel (quantisation noise about 1.5%
of a latent's spread, far under what the flow model learns to) and its index is gzipped; a tokens folder's codes
travel bit-packed (10 bits a code for codebooks of 1024, exactly), index gzipped; ``--max-frames N`` leaves out
the clips longer than a recipe trains on. ``unpack`` restores folders the training commands read unchanged.

    python scripts/gpu_carry.py pack runs/latents-music-large runs/gpu/latents-music --splits train valid
    python scripts/gpu_carry.py pack runs/tokens-speech-wide runs/gpu/tokens-speech --splits train valid --max-frames 450
    python scripts/gpu_carry.py unpack runs/gpu/latents-music runs/latents-music-large
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


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


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--splits", nargs="*", help="pack only these splits")
    ap.add_argument("--max-frames", type=int, help="tokens: pack only clips of at most this many frames")
    a = ap.parse_args()
    pack(a.src, a.dst, a.splits, a.max_frames) if a.action == "pack" else unpack(a.src, a.dst)
