"""Music and sound effects from a text prompt: the prompt is read into the tags the generator was trained on
(``instrument=violin``, ``tempo=fast``, ``family=rain``…), then the token LM renders codes for the duration
(sliding windows past its context), optionally following a melody or continuing a clip, and the codec decodes.

Reading the prompt: for each tag field, the values named in the prompt (whole words, case-insensitive) are found;
the one named first wins. Yes/no fields (``reverb``, ``thunder``…) are "yes" when the prompt names the field or a
synonym and "no" after "no"/"without". Keys need "in D" or "D major/minor". The tags read are returned in the
metadata, so a user sees how a prompt was understood; the model was trained with tags left out at random, so a
prompt naming only some of them is in its training distribution.
"""
from __future__ import annotations

import os
import re

import numpy as np
import torch
from safetensors.torch import load_file

from tokenwave.checkpoint import load_checkpoint
from tokenwave.conditioning import TagConditioner, TagVocab
from tokenwave.conditioning.melody import NO_PITCH, MelodyConditioner, fit_length, load_melody, pitch_classes
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.config import LMConfig
from tokenwave.lm.generate import generate_long
from tokenwave.lm.model import KIND as LM_KIND
from tokenwave.lm.model import TokenLM
from tokenwave.tasks.base import GeneratedAudio, Sampling, check_duration, default_model_dir, finish

SYNONYMS = {"reverb": ("reverb", "echo", "echoing", "reverberant", "hall"),
            "thunder": ("thunder", "thunderclap"), "rain": ("rain", "rainy"), "whistle": ("whistle", "whistling"),
            "cave": ("cave", "cavern")}
#: other words for values (the value itself always counts, with a plural s/es)
VALUE_SYNONYMS = {"footsteps": ("steps", "walking"), "applause": ("clapping", "claps"), "knock": ("knocking",),
                  "typing": ("keyboard", "typewriter"), "birds": ("bird", "birdsong", "chirping"),
                  "phone": ("ringtone", "ringing phone"), "drip": ("dripping",), "fire": ("crackling fire", "campfire"),
                  "engine": ("motor",), "siren": ("sirens",), "bell": ("bells", "chime"), "clock": ("ticking",),
                  "whoosh": ("swoosh", "swish"), "violin": ("fiddle",), "choir": ("voices", "singers")}
NEGATIONS = r"(?:no|without|dry,? no)\s+(?:\w+\s+)?"


def read_prompt(prompt: str, vocab_tags: list[str], domain: str, cooccur: dict[str, list[str]] | None = None
                ) -> list[str]:
    """The ``field=value`` tags of ``vocab_tags`` that ``prompt`` names (see the module docstring). ``cooccur``
    (tag -> the fields seen with it in training) keeps, once an anchor tag is read (the first one named whose field
    every clip has, e.g. ``family=rain``), only the fields the training data had beside it."""
    text = " " + prompt.lower() + " "
    fields: dict[str, list[str]] = {}
    for t in vocab_tags:
        if "=" in t and not t.startswith(("domain=", "speaker=")):
            f, v = t.split("=", 1)
            fields.setdefault(f, []).append(v)
    out = [f"domain={domain}"]
    for f, values in sorted(fields.items()):
        if set(values) <= {"yes", "no"}:
            words = SYNONYMS.get(f, (f,))
            pat = r"\b(?:%s)\b" % "|".join(map(re.escape, words))
            if re.search(NEGATIONS + pat, text):
                out.append(f"{f}=no") if "no" in values else None
            elif re.search(pat, text):
                out.append(f"{f}=yes") if "yes" in values else None
            continue
        best = None
        for v in values:
            if not v:
                continue
            if f == "key":
                pat = r"(?:\bin\s+%s(?![\w#])|\b%s\s+(?:major|minor)\b)" % (re.escape(v.lower()), re.escape(v.lower()))
            else:
                words = (v.lower(), *VALUE_SYNONYMS.get(v.lower(), ()))
                pat = r"(?<![\w-])(?:%s)(?:s|es)?(?![\w-])" % "|".join(map(re.escape, words))
            m = re.search(pat, text)
            if m and (best is None or (m.start(), -len(v)) < (best[0], -len(best[1]))):
                best = (m.start(), v)
        if best:
            out.append(f"{f}={best[1]}")
    if cooccur:
        anchors = [t for t in out[1:] if t in cooccur and cooccur.get("__required__") and t.split("=")[0] in cooccur["__required__"]]
        if anchors:  # the most specific anchor (fewest fields beside it)
            allowed = set(cooccur[min(anchors, key=lambda t: len(cooccur[t]))])
            out = [out[0]] + [t for t in out[1:] if t.split("=")[0] in allowed]
    return out


def tag_cooccurrence(rows: list[dict]) -> dict[str, list[str]]:
    """For each ``field=value`` tag of ``rows``, the tag fields that appear beside it; ``__required__``: the fields
    every row has."""
    seen: dict[str, set[str]] = {}
    fields_per_row = []
    for r in rows:
        tags = r.get("tags") if isinstance(r.get("tags"), dict) else {}
        fields_per_row.append(set(tags))
        for f, v in tags.items():
            seen.setdefault(f"{f}={v}", set()).update(tags)
    required = set.intersection(*fields_per_row) if fields_per_row else set()
    return {"__required__": sorted(required), **{k: sorted(v) for k, v in sorted(seen.items())}}


def check_prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt or not re.search(r"\w", prompt):
        raise InvalidArgumentError("the prompt is empty", 'describe the sound, e.g. "gentle rain on a tin roof"')
    if len(prompt) > 500:
        raise InvalidArgumentError(f"the prompt has {len(prompt)} characters, over the 500 limit", "shorten it")
    return prompt


class TaggedTask:
    """A tag-conditioned token LM (``tokenwave train lm``) for one domain ("music" or "sfx") and its codec."""

    def __init__(self, task: str, folder: str | os.PathLike | None = None, codec=None) -> None:
        from tokenwave.codec import load_codec

        self.task = task
        self.folder = default_model_dir(task, folder)
        state, cfg, extra = load_checkpoint(self.folder, LMConfig, LM_KIND)
        self.lm = TokenLM(cfg)
        self.lm.load_state_dict(state)
        self.lm.eval()
        self.extra = extra
        self.vocab = TagVocab(extra["tags"])
        self.tags = TagConditioner(len(self.vocab), cfg.dim)
        self.tags.load_state_dict(load_file(str(self.folder / "tags.safetensors")))
        self.melody = None
        if (self.folder / "melody.safetensors").exists():
            self.melody = MelodyConditioner(cfg.dim)
            self.melody.load_state_dict(load_file(str(self.folder / "melody.safetensors")))
        self.codec = codec if codec is not None else load_codec(None)
        self.sample_rate = self.codec.sample_rate
        self.frame_rate = self.codec.frame_rate
        self.window = int(extra.get("train", {}).get("frames", 150))
        self.domain = next((t.split("=", 1)[1] for t in self.vocab.tags if t.startswith("domain=")), task)

    @property
    def supports_melody(self) -> bool:
        return self.melody is not None

    def read_prompt(self, prompt: str) -> list[str]:
        return read_prompt(check_prompt(prompt), self.vocab.tags, self.domain, self.extra.get("cooccur"))

    def _melody_ids(self, melody, frames: int) -> torch.Tensor | None:
        if melody is None:
            return None
        if not self.supports_melody:
            raise InvalidArgumentError(f"the {self.task} model at {self.folder} was not trained with melody conditioning",
                                       "leave out --melody, or train one with `tokenwave train lm --melody`")
        if isinstance(melody, (str, os.PathLike)):
            ids = load_melody(melody, self.frame_rate)
        elif isinstance(melody, torch.Tensor):
            ids = melody.long()
        else:
            ids = pitch_classes(melody)  # MIDI pitches per frame
        return fit_length(ids, frames)

    @torch.no_grad()
    def generate(self, prompt: str, duration: float = 5.0, sampling: Sampling | None = None, melody=None,
                 continue_from=None, watermark: bool = True) -> GeneratedAudio:
        """Render ``duration`` seconds for ``prompt``; ``melody``: a MIDI/audio path, pitch classes or MIDI pitches
        per frame; ``continue_from``: an audio path or ``(wav, sr)`` whose last seconds the output continues (the
        output then holds the new audio only)."""
        sampling = sampling or Sampling()
        sampling.check()
        duration = check_duration(duration)
        tags = self.read_prompt(prompt)
        frames = int(round(duration * self.frame_rate))
        ids, mask = self.vocab.encode([tags])
        cond = self.tags(ids, mask)
        ctx = None
        if continue_from is not None:
            ctx = self._continuation_codes(continue_from)
        total = frames + (0 if ctx is None else ctx.shape[-1])
        mel = self._melody_ids(melody, frames)
        if self.melody is not None:
            full = torch.full((total,), NO_PITCH, dtype=torch.long)
            if mel is not None:
                full[total - frames:] = mel
            cond.frames = self.melody(full[None])
        window, overlap = self.window_overlap(cond)
        codes = generate_long(self.lm, total, cond, sampling.lm_params(), window=window, overlap=overlap, prompt=ctx)
        # the continued clip's context frames are decoded with the new ones (the decoder's state runs across the
        # seam), then cut: the output holds the new audio only
        wav = self.codec.decode(codes)[0, 0].numpy()[(total - frames) * self.codec.hop:]
        meta = {"task": self.task, "prompt": prompt, "tags": tags, "duration": duration, "model": str(self.folder),
                "generator": "lm", "melody": melody if isinstance(melody, str) else (None if melody is None else "<array>"),
                "continued": continue_from is not None, **sampling.__dict__}
        return finish(wav, self.sample_rate, meta, watermark)

    def window_overlap(self, cond) -> tuple[int, int]:
        """Sliding windows for long renders: the trained window (or what the context holds), a third of it carried
        over as context (0.67 s at the default 150-frame window)."""
        window = min(self.window, self.lm.cfg.max_len - cond.prefix_len - self.lm.cfg.K - 1)
        return window, window // 3

    def _continuation_codes(self, clip) -> torch.Tensor:
        from tokenwave.audio import load_audio, resample

        if isinstance(clip, tuple):
            wav, sr = clip
        else:
            wav, sr = load_audio(clip)
        wav = np.asarray(wav, dtype=np.float32)
        if sr != self.sample_rate:
            wav = resample(wav, sr, self.sample_rate)
        keep = int(self.window // 2 * self.codec.hop)
        if len(wav) < self.codec.hop * 8:
            raise InvalidArgumentError("the clip to continue is shorter than 0.1 s", "pass a longer clip")
        return self.codec.encode(torch.from_numpy(wav[-keep:])[None, None], self.lm.cfg.K)

    def generate_row(self, row: dict, dataset: str | os.PathLike, seed: int = 0, melody: bool = False) -> np.ndarray:
        """Evaluation: render ``row["caption"]`` for the row's duration (capped at 10 s), with its melody if asked."""
        mel = row.get("melody") if melody else None
        return self.generate(row["caption"], min(float(row["duration"]), 10.0), Sampling(seed=seed), melody=mel,
                             watermark=False).wav


__all__ = ["TaggedTask", "read_prompt", "tag_cooccurrence"]
