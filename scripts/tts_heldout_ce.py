"""Held-out cross-entropy of TTS model folders on the same batches of valid utterances and prompts (the figure the
TTS model cards compare models by):

    python scripts/tts_heldout_ce.py checkpoints/tts runs/other-tts/model [--tokens runs/tokens-speech-large]

Each model reads the batches through its own phoneme and phone vocabularies; 20 batches of 8 aligned utterances of
at most 6 s with 1.5-3 s prompts, drawn with seed 123, so every model sees the same ones.
"""
from __future__ import annotations

import argparse

import torch

from tokenwave.conditioning.speech import PhonemeVocab
from tokenwave.data.align import read_alignments
from tokenwave.models.tts import TTSFolder
from tokenwave.train.tts import UtteranceDataset


def heldout_ce(folder: str, tokens: str, alignments: dict, batches: int = 20, batch: int = 8) -> float:
    saved = TTSFolder.load(folder)
    model, phones = saved.model, saved.phones
    data = UtteranceDataset(tokens, "valid", saved.phonemes, 450, seed=123, alignments=alignments,
                            phones=phones or PhonemeVocab([]))
    losses = []
    with torch.no_grad():
        for _ in range(batches):
            codes, lengths, phonemes, prompts, aligned = data.sample(batch, 112)
            losses.append(float(model(codes, lengths, phonemes, prompts, aligned if phones else None)))
    return sum(losses) / len(losses)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--tokens", default="runs/tokens-speech-large")
    ap.add_argument("--alignments", default="data/speech-large/alignments.jsonl")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    al = read_alignments(a.alignments)
    for m in a.models:
        print(f"{m}: {heldout_ce(m, a.tokens, al):.4f} nats")
