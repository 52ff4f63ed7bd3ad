"""Bitrate arithmetic shared by every codec backend (needs ``n_q``, ``codebook_size`` and ``frame_rate``)."""
from __future__ import annotations

import math

from tokenwave.errors import InvalidArgumentError


class CodecRates:
    n_q: int
    codebook_size: int
    frame_rate: float

    def bitrate(self, n_q: int | None = None) -> float:
        """Bits per second with ``n_q`` codebooks (default all): ``n_q * log2(codebook_size) * frame_rate``."""
        return (n_q or self.n_q) * math.log2(self.codebook_size) * self.frame_rate

    def n_q_for_kbps(self, kbps: float) -> int:
        """The number of codebooks giving ``kbps`` exactly (1.5 / 3 / 6 kbps -> 2 / 4 / 8 with the default codec)."""
        per = self.bitrate(1) / 1000
        n = round(kbps / per)
        if n < 1 or n > self.n_q or abs(n * per - kbps) > 1e-6:
            ok = ", ".join(f"{k * per:g}" for k in range(1, self.n_q + 1))
            raise InvalidArgumentError(f"this codec has no {kbps:g} kbps operating point", f"use one of {ok} kbps")
        return n
