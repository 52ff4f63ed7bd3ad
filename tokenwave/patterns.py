"""Codebook interleaving patterns: how ``codes [B, K, T]`` become the token sequence a language model reads.

A pattern lays the K codebooks of T frames out as ``seq [B, S, L]``: S parallel streams of L steps, predicted
one step at a time. Slots with no code hold the special token ``SPECIAL = codebook_size`` (MusicGen's
convention: the same id pads, starts and fills empty slots); ``mask [S, L]`` is True where a real code sits.

- ``flat``:     S = 1, L = K * T. Frame-major: ``c[t, 0], c[t, 1], ..., c[t, K-1], c[t+1, 0], ...``.
- ``delay``:    S = K, L = T + K - 1. Stream k is shifted right by k steps (MusicGen's delayed parallel).
- ``parallel``: S = K, L = T. All codebooks of a frame at one step.
- ``vall-e``:   S = K, L = 2T. Steps 0..T-1 hold codebook 0 alone (autoregressive); steps T..2T-1 hold
                codebooks 1..K-1 of frame (step - T) together, the part VALL-E predicts non-autoregressively.

``codebook[s, l]`` tells which codebook the slot of stream s at step l holds (for embeddings and heads), and
``frames_done(l)`` how many frames are complete once steps 0..l are known (for streaming).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from tokenwave.errors import InvalidArgumentError

PATTERNS = ("flat", "delay", "parallel", "vall-e")


@dataclass(frozen=True)
class Pattern:
    name: str
    K: int

    def __post_init__(self) -> None:
        if self.name not in PATTERNS:
            raise InvalidArgumentError(f"unknown pattern {self.name!r}", f"use one of {', '.join(PATTERNS)}")
        if self.K < 1:
            raise InvalidArgumentError(f"a pattern needs K >= 1 codebooks, got {self.K}", "pass K >= 1")

    @property
    def streams(self) -> int:
        return 1 if self.name == "flat" else self.K

    def length(self, T: int) -> int:
        """Sequence length L for T frames."""
        return {"flat": self.K * T, "delay": T + self.K - 1, "parallel": T, "vall-e": 2 * T}[self.name]

    def frames(self, L: int) -> int:
        """Number of frames T a sequence of L steps encodes (inverse of :meth:`length`)."""
        T = {"flat": L // self.K, "delay": L - self.K + 1, "parallel": L, "vall-e": L // 2}[self.name]
        if T < 0 or self.length(T) != L:
            raise InvalidArgumentError(f"{L} steps is not a whole {self.name} sequence for K={self.K}", "check the length")
        return T

    def layout(self, T: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(frame [S, L], codebook [S, L], mask [S, L])``: which frame and codebook each slot holds."""
        L, K = self.length(T), self.K
        steps = torch.arange(L)
        if self.name == "flat":
            frame, book = (steps // K)[None], (steps % K)[None]
            mask = torch.ones(1, L, dtype=torch.bool)
        elif self.name == "parallel":
            frame = steps[None].expand(K, L)
            book = torch.arange(K)[:, None].expand(K, L)
            mask = torch.ones(K, L, dtype=torch.bool)
        elif self.name == "delay":
            frame = steps[None] - torch.arange(K)[:, None]
            book = torch.arange(K)[:, None].expand(K, L)
            mask = (frame >= 0) & (frame < T)
        else:  # vall-e
            book = torch.arange(K)[:, None].expand(K, L)
            first = steps < T
            frame = torch.where(first[None], steps[None], steps[None] - T).expand(K, L)
            mask = torch.where(torch.arange(K)[:, None] == 0, first[None], ~first[None])
        return frame.clone(), book.clone(), mask.clone()

    def build(self, codes: torch.Tensor, special: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``codes [B, K, T] -> (seq [B, S, L], mask [S, L])``; empty slots hold ``special``."""
        if codes.dim() != 3 or codes.shape[1] != self.K:
            raise InvalidArgumentError(f"codes must be [B, {self.K}, T], got {tuple(codes.shape)}", "check K")
        B, K, T = codes.shape
        frame, book, mask = self.layout(T)
        seq = torch.full((B, self.streams, self.length(T)), special, dtype=codes.dtype, device=codes.device)
        seq[:, mask] = codes[:, book[mask], frame[mask]]
        return seq, mask

    def revert(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq [B, S, L] -> codes [B, K, T]``: the exact inverse of :meth:`build`."""
        B, S, L = seq.shape
        if S != self.streams:
            raise InvalidArgumentError(f"{self.name} sequences have {self.streams} streams, got {S}", "check the pattern")
        T = self.frames(L)
        frame, book, mask = self.layout(T)
        codes = seq.new_zeros(B, self.K, T)
        codes[:, book[mask], frame[mask]] = seq[:, mask]
        return codes

    def frames_done(self, steps_known: int, T: int) -> int:
        """Frames whose K codes are all among the first ``steps_known`` steps of a T-frame sequence."""
        if steps_known <= 0:
            return 0
        n = {"flat": steps_known // self.K, "delay": steps_known - self.K + 1, "parallel": steps_known,
             "vall-e": steps_known - T}[self.name]
        return max(0, min(T, n))
