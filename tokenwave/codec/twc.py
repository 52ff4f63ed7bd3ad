"""``.twc``: a small versioned container for codec codes.

Layout (little-endian)::

    magic    4 bytes  b"TWC1"
    version  u16      1
    flags    u16      0
    sample_rate u32   24000
    hop      u32      320      samples per frame
    num_samples u64            original length, so decoding gives back exactly N samples
    K        u16               codebooks
    bits     u16               bits per code (ceil(log2(codebook_size)))
    T        u32               frames
    payload  ceil(K*T*bits/8) bytes: codes packed MSB-first, frame-major (t, then k)
    crc32    u32               of everything before it

A truncated, corrupt or foreign file raises :class:`TwcFormatError` naming the problem.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tokenwave.errors import TokenwaveError
from tokenwave.fileio import atomic_write_bytes

MAGIC = b"TWC1"
VERSION = 1
HEADER = struct.Struct("<4sHHIIQHHI")


class TwcFormatError(TokenwaveError):
    pass


@dataclass
class TwcFile:
    codes: torch.Tensor  # LongTensor[K, T]
    sample_rate: int
    hop: int
    num_samples: int
    bits: int


def _pack(codes: np.ndarray, bits: int) -> bytes:
    flat = codes.T.reshape(-1).astype(np.uint32)  # frame-major
    bitarr = ((flat[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint32)) & 1).astype(np.uint8)
    return np.packbits(bitarr.reshape(-1)).tobytes()


def _unpack(payload: bytes, K: int, T: int, bits: int) -> np.ndarray:
    bitarr = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))[: K * T * bits].reshape(-1, bits)
    flat = (bitarr.astype(np.int64) << np.arange(bits - 1, -1, -1)).sum(-1)
    return flat.reshape(T, K).T


def encode_twc(codes: torch.Tensor, sample_rate: int, hop: int, num_samples: int, codebook_size: int) -> bytes:
    """Serialise ``codes [K, T]`` (or ``[1, K, T]``)."""
    if codes.dim() == 3:
        if codes.shape[0] != 1:
            raise ValueError("a .twc file holds one item; got a batch of %d" % codes.shape[0])
        codes = codes[0]
    bits = max(1, int(np.ceil(np.log2(codebook_size))))
    arr = codes.cpu().numpy()
    if arr.size and (arr.min() < 0 or arr.max() >= 2**bits):
        raise ValueError(f"codes out of range for {bits}-bit packing")
    K, T = arr.shape
    body = HEADER.pack(MAGIC, VERSION, 0, sample_rate, hop, num_samples, K, bits, T) + _pack(arr, bits)
    return body + struct.pack("<I", zlib.crc32(body))


def decode_twc(data: bytes, source: str = "<bytes>") -> TwcFile:
    if len(data) < HEADER.size + 4:
        raise TwcFormatError(f"{source} is too short to be a .twc file ({len(data)} bytes)", "the file is truncated; re-encode it")
    magic, version, _flags, sr, hop, n, K, bits, T = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise TwcFormatError(f"{source} is not a .twc file (bad magic {magic!r})", "pass a file written by `tokenwave codec encode`")
    if version != VERSION:
        raise TwcFormatError(f"{source} is .twc version {version}; this tokenwave reads version {VERSION}", "upgrade tokenwave")
    need = HEADER.size + (K * T * bits + 7) // 8 + 4
    if len(data) != need:
        raise TwcFormatError(f"{source} has {len(data)} bytes but its header promises {need}",
                             "the file is truncated or has trailing data; re-encode it")
    (crc,) = struct.unpack_from("<I", data, need - 4)
    if zlib.crc32(data[: need - 4]) != crc:
        raise TwcFormatError(f"{source} fails its checksum (corrupt)", "re-encode it from the original audio")
    codes = _unpack(data[HEADER.size: need - 4], K, T, bits)
    return TwcFile(torch.from_numpy(codes).long(), sr, hop, n, bits)


def write_twc(path: str | os.PathLike, codes: torch.Tensor, sample_rate: int, hop: int, num_samples: int,
              codebook_size: int) -> Path:
    path = Path(path)
    atomic_write_bytes(path, encode_twc(codes, sample_rate, hop, num_samples, codebook_size))
    return path


def read_twc(path: str | os.PathLike) -> TwcFile:
    path = Path(path)
    if not path.exists():
        raise TwcFormatError(f"code file not found: {path}", "check the path")
    return decode_twc(path.read_bytes(), str(path))
