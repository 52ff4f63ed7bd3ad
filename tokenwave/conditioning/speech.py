"""Speech conditioning for TTS: phonemes, a voice prompt's codes and the target length, as one prefix.

The prefix of one item is ``[voice prompt (codes pooled by 4 frames) | phonemes | length]``, each segment tagged by
a learned segment embedding; items of a batch are left-padded as a whole so every item's prefix ends right before
its first audio step (the relative positions the model learns are the same for every item). The target length is
given (predicted from the phoneme count at inference), so the model paces the sentence and no stop token is needed.

Aligned models (``n_phones > 0``) are also told, frame by frame, which phone sounds (``Conditioning.frames``: the
phone's embedding plus the frame's place in it, counted from its start and from its end, up to ``MAX_POS``); the
timings come from the engines' own phone timings in training and from espeak-ng's at inference
(:mod:`tokenwave.data.align`, :mod:`tokenwave.speech.timing`), so the model need not learn where each phone goes.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from tokenwave.conditioning.base import Conditioning
from tokenwave.speech.timing import frame_phones

PAD = 0  # phoneme id 0 is padding; id 1 is an unknown character
UNK = 1
POOL = 4  # voice-prompt frames per prefix position
LENGTH_BUCKET = 4  # frames per length bucket
N_LENGTHS = 256
PROMPT_SECONDS = 3.0  # a voice prompt: what TTS takes of a recording, and what a decoder told the voice hears
MAX_POS = 16  # frames counted within a phone (from its start and to its end), clipped


class PhonemeVocab:
    """IPA characters -> ids (``0`` padding, ``1`` unknown)."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = ["<pad>", "<unk>"] + sorted(set(symbols) - {"<pad>", "<unk>"})
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_texts(cls, texts: list[str]) -> PhonemeVocab:
        return cls(sorted({c for t in texts for c in t}))

    def __len__(self) -> int:
        return len(self.symbols)

    def encode(self, phonemes: str | list[str]) -> list[int]:
        """Characters of a string, or the units of a list (phones such as ``"aɪ"``), to ids."""
        return [self.index.get(c, UNK) for c in phonemes]


def frame_inputs(vocab: PhonemeVocab, phones: list[str], pos: list[int], left: list[int]) -> torch.Tensor:
    """``LongTensor [3, T]``: phone ids, frames from the phone's start and frames to its end (clipped)."""
    return torch.stack([torch.tensor(vocab.encode(phones), dtype=torch.long),
                        torch.tensor(pos, dtype=torch.long).clamp_max(MAX_POS - 1),
                        torch.tensor(left, dtype=torch.long).clamp_max(MAX_POS - 1)])


def alignment_inputs(vocab: PhonemeVocab, alignment: dict, frames: int, frame_rate: float) -> torch.Tensor:
    """:func:`frame_inputs` of ``frames`` codec frames timed by ``alignment`` (a row of ``alignments.jsonl``, or
    :func:`tokenwave.speech.timing.text_timings`)."""
    return frame_inputs(vocab, *frame_phones(alignment, frames, frame_rate))


class SpeechConditioner(nn.Module):
    """``(phoneme ids, voice-prompt codes, target frames) -> Conditioning(prefix, prefix_mask)``."""

    def __init__(self, dim: int, n_phonemes: int, K: int, codebook_size: int, n_phones: int = 0) -> None:
        super().__init__()
        self.K, self.V = K, codebook_size
        self.phonemes = nn.Embedding(n_phonemes, dim)
        self.codes = nn.Embedding(K * codebook_size, dim)
        self.prompt_proj = nn.Linear(dim * POOL, dim)
        self.segments = nn.Embedding(3, dim)  # prompt, phonemes, length
        self.lengths = nn.Embedding(N_LENGTHS, dim)
        for m in (self.phonemes, self.codes, self.segments, self.lengths):
            nn.init.normal_(m.weight, std=0.02)
        self.aligned = n_phones > 0
        if self.aligned:
            self.frame_phones = nn.Embedding(n_phones, dim)
            self.frame_pos = nn.Embedding(MAX_POS, dim)
            self.frame_left = nn.Embedding(MAX_POS, dim)
            for m in (self.frame_phones, self.frame_pos, self.frame_left):
                nn.init.normal_(m.weight, std=0.02)

    def prompt_tokens(self, prompt: torch.Tensor) -> torch.Tensor:
        """Voice prompt ``codes [K, Tp]`` -> ``[ceil(Tp / POOL), D]`` (frame embeddings, POOL frames per position)."""
        K, Tp = prompt.shape
        e = self.codes(prompt + torch.arange(K, device=prompt.device)[:, None] * self.V).sum(0)  # [Tp, D]
        pad = (-Tp) % POOL
        if pad:
            e = F.pad(e, (0, 0, 0, pad))
        return self.prompt_proj(e.reshape(-1, POOL * e.shape[-1]))

    def forward(self, phonemes: list[torch.Tensor], prompts: list[torch.Tensor], frames: list[int],
                aligned: list[torch.Tensor] | None = None) -> Conditioning:
        """One item per list entry: ``phonemes LongTensor[n]``, ``prompts LongTensor[K, Tp]`` (Tp may be 0), target
        ``frames``; ``aligned``: per item ``LongTensor[3, frames]`` from :func:`frame_inputs` (aligned models only)."""
        device = self.segments.weight.device
        seg = self.segments.weight
        items, voiced = [], 0
        for ph, pr, T in zip(phonemes, prompts, frames):
            parts = []
            if pr.shape[-1]:
                parts.append(self.prompt_tokens(pr.to(device)) + seg[0])
                voiced = parts[0].shape[0]
            parts.append(self.phonemes(ph.to(device)) + seg[1])
            bucket = min(N_LENGTHS - 1, int(T) // LENGTH_BUCKET)
            parts.append(self.lengths.weight[bucket][None] + seg[2])
            items.append(torch.cat(parts, 0))
        P = max(x.shape[0] for x in items)
        prefix = torch.zeros(len(items), P, seg.shape[-1], device=device, dtype=seg.dtype)
        mask = torch.zeros(len(items), P, dtype=torch.bool, device=device)
        for b, x in enumerate(items):
            prefix[b, P - x.shape[0]:] = x
            mask[b, P - x.shape[0]:] = True
        # one item: its voice prompt's positions lead the prefix, the same for every sentence in that voice
        cond = Conditioning(prefix=prefix, prefix_mask=mask, shared=voiced if len(items) == 1 else 0)
        if self.aligned:
            if aligned is None:
                raise ValueError("this speech conditioner is aligned: pass the per-frame phones (frame_inputs)")
            T = max(int(a.shape[-1]) for a in aligned)
            cond.frames = torch.zeros(len(aligned), T, seg.shape[-1], device=device, dtype=seg.dtype)
            for b, a in enumerate(aligned):
                a = a.to(device)
                cond.frames[b, : a.shape[-1]] = self.frame_phones(a[0]) + self.frame_pos(a[1]) + self.frame_left(a[2])
        return cond


def prefix_positions(n_phonemes: int, prompt_frames: int) -> int:
    """Prefix length of one item (for sizing the model's context)."""
    return math.ceil(prompt_frames / POOL) + n_phonemes + 1
