"""Tiny random task models (TTS, music, sfx) on a tiny codec, for tests that need whole pipelines (the same recipe
as tests/test_tasks.py's fixtures)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from tokenwave.codec import Codec
from tokenwave.conditioning import TagConditioner, TagVocab
from tokenwave.conditioning.melody import MelodyConditioner
from tokenwave.conditioning.text import DEFAULT_ENCODER, CaptionBank, TextConditioner, sentence_encoder
from tokenwave.flow.config import FlowConfig
from tokenwave.flow.model import FlowDiT
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.models.tagged import Generator, tag_cooccurrence
from tokenwave.models.tts import TTSFolder, TTSModel
from tokenwave.train.codec import PRESETS as CODEC_PRESETS

SR = 24000
ROWS = [
    {"tags": {"family": "rain", "intensity": "heavy", "reverb": "yes"}},
    {"tags": {"family": "rain", "intensity": "light", "reverb": "no"}},
    {"tags": {"family": "footsteps", "surface": "gravel", "pace": "slow", "reverb": "no"}},
    {"tags": {"family": "bell", "pitch": "high", "reverb": "yes"}},
]


def wait_until(cond, timeout: float = 10.0) -> bool:
    """Poll ``cond()`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def tiny_codec() -> Codec:
    import random

    torch.manual_seed(0)
    random.seed(0)  # the training pass draws its quantizer bypass from Python's RNG
    c = Codec(CODEC_PRESETS["tiny"]).train()
    with torch.no_grad():  # one training pass initialises the codebooks (k-means), so codes change the audio
        c(torch.randn(2, 1, SR) * 0.3)
    assert all(float(layer._codebook.initted) for layer in c.quantizer.rvq.layers[:1]), "codebooks not initialised"
    return c.eval()


PHONES = ["_", "a", "aɪ", "b", "d", "eɪ", "f", "h", "i", "iː", "k", "l", "m", "n", "oʊ", "p", "s", "t", "w", "z",
          "ð", "ŋ", "ɐ", "ɑː", "ɔ", "ə", "ɛ", "ɜː", "ɪ", "ɹ", "ʃ", "ʊ", "ʌ", "æ", "ɡ", "ɑːɹ", "ɔːɹ"]


def tts_model(folder, codec, preset: dict | None = None, K: int = 2, max_frames: int = 60, aligned: bool = False,
              voices: tuple[str, ...] = ("alice", "bob")) -> None:
    """A tiny random TTS model, written as `tokenwave train tts` writes one (trained on ``codec``'s codes);
    ``aligned``: one told each frame's phone (``tokenwave train tts --alignments``); ``voices``: its built-in
    voices' names."""
    preset = preset or dict(dim=32, depth=1, heads=2)
    cfg = LMConfig(K=K, codebook_size=codec.codebook_size, max_len=512 if max_frames <= 60 else 1280, **preset)
    symbols = sorted(set("abcdefghijklmnopqrstuvwxyzæðŋɐɑɔəɛɜɪɹʃʊʌʒθˈˌː "))
    model = TTSModel(cfg, len(symbols) + 2, len(PHONES) + 2 if aligned else 0)
    randomise(model, 0)
    if preset.get("dim", 32) > 32:  # realistic widths: small weights keep activations sane
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.1)
    g = torch.Generator().manual_seed(1)
    codes = {n: torch.randint(0, codec.codebook_size, (K, 225 if max_frames > 60 else 40), generator=g) for n in voices}
    extra = {"phonemes": symbols, "duration": [1.0, 4.0], "train": {"max_frames": max_frames},
             **({"phones": PHONES} if aligned else {})}
    TTSFolder(model, extra, codes).save(folder, codec.content_hash())


def _conditioners(vocab: TagVocab, melody: bool, dim: int = 32) -> tuple[TagConditioner, MelodyConditioner | None]:
    tags = TagConditioner(len(vocab), dim)
    randomise(tags, 3)
    mel = None
    if melody:
        mel = MelodyConditioner(dim)
        randomise(mel, 4)
    return tags, mel


def flow_model(folder, codec, melody: bool, domain: str = "sfx") -> None:
    """A tiny random flow model (patches of 2 frames) over the codec's latents, as `tokenwave train flow` saves it."""
    rows = [{**r, "domain": domain} for r in ROWS]
    vocab = TagVocab.from_rows(rows)
    cfg = FlowConfig(latent_dim=codec.encode_latents(torch.zeros(1, 1, codec.hop)).shape[1], dim=32, depth=1,
                     heads=2, max_frames=200, patch=2)
    flow = FlowDiT(cfg)
    randomise(flow, 5)
    extra = {"train": {"frames": 60}, "cooccur": tag_cooccurrence(rows)}
    Generator("flow", Path(folder), flow, extra, vocab, *_conditioners(vocab, melody)).save(folder, codec.content_hash())


CAPTIONS = ["heavy rain in a hall", "light rain, dry", "slow steps on gravel", "a high bell ringing in a hall"]


def _text_conditioner(dim: int = 32) -> tuple[TextConditioner, CaptionBank, dict]:
    """A random caption conditioner over the packaged MiniLM, the training captions of :data:`ROWS` and the config
    entry that names the encoder (what `train --text` writes)."""
    enc = sentence_encoder(DEFAULT_ENCODER)
    text = TextConditioner(enc.dim, dim)
    randomise(text, 6)
    return text, CaptionBank(CAPTIONS, enc.encode(CAPTIONS)), {"encoder": DEFAULT_ENCODER, "dim": enc.dim, "tokens": 4}


def tagged_model(folder, codec, melody: bool, domain: str = "sfx", flow: bool = False, text: bool = False) -> None:
    """A tiny random token LM for ``domain`` (and, with ``flow``, a flow model in ``flow/``); ``text``: conditioned
    on the prompt through the packaged sentence encoder as well (as `train lm --text` makes one)."""
    rows = [{**r, "domain": domain} for r in ROWS]
    vocab = TagVocab.from_rows(rows)
    cfg = LMConfig(K=2, codebook_size=codec.codebook_size, dim=32, depth=1, heads=2, max_len=80)
    lm = TokenLM(cfg)
    randomise(lm, 2)
    extra = {"train": {"frames": 40}, "cooccur": tag_cooccurrence(rows)}
    cond, bank = (*_conditioners(vocab, melody), None), None
    if text:
        tc, bank, extra["text"] = _text_conditioner()
        cond = (*cond[:2], tc)
    Generator("lm", Path(folder), lm, extra, vocab, *cond, bank).save(folder, codec.content_hash())
    if flow:
        flow_model(folder / "flow", codec, melody, domain)


def voice_file(path, seconds: float = 3.0, freq: float = 180.0):
    import soundfile as sf

    t = np.arange(int(seconds * SR)) / SR
    wav = (0.3 * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(path, wav, SR)
    return path
