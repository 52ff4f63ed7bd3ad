"""Music and sound effects from a text prompt: the prompt is read into the tags the generator was trained on
(``instrument=violin``, ``tempo=fast``, ``family=rain``…), then a generator renders the duration (sliding windows
past its context), optionally following a melody or continuing a clip, and the codec decodes: the token LM
samples codes, the flow model integrates continuous latents from noise (``--generator lm|flow``).

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

from tokenwave.codec import load_codec
from tokenwave.conditioning.melody import NO_PITCH, fit_length, load_melody, pitch_classes
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.generate import generate_long
from tokenwave.models.folder import folder_decoder, read_generators
from tokenwave.models.tagged import Generator, tag_cooccurrence
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


def check_prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt or not re.search(r"\w", prompt):
        raise InvalidArgumentError("the prompt is empty", 'describe the sound, e.g. "gentle rain on a tin roof"')
    if len(prompt) > 500:
        raise InvalidArgumentError(f"the prompt has {len(prompt)} characters, over the 500 limit", "shorten it")
    return prompt


GENERATORS = ("lm", "flow")
class TaggedTask:
    """A domain's ("music" or "sfx") tag-conditioned generators and their codec.

    ``folder`` holds a token LM (``tokenwave train lm``) or a flow model (``tokenwave train flow``); a shipped task
    folder holds the token LM with the flow model in ``flow/``, and ``generators.json`` names the default one (the
    better by measurement, see its ``why``). ``generator`` picks one ("lm" or "flow"; None: the default)."""

    def __init__(self, task: str, folder: str | os.PathLike | None = None, codec=None,
                 generator: str | None = None) -> None:
        self.task = task
        self.folder = default_model_dir(task, folder)
        self.codec = codec if codec is not None else load_codec(None)
        main = Generator.load(self.folder, self.codec)  # each refuses a codec other than the one it was trained on
        self.generators = {main.kind: main}
        if main.kind == "lm" and (self.folder / "flow" / "config.json").exists():
            self.generators["flow"] = Generator.load(self.folder / "flow", self.codec)
        choice = read_generators(self.folder)
        self.default_generator = choice.get("default", main.kind)
        # a request with a melody goes to the generator measured better at following one, unless it names one
        self.melody_generator = choice.get("default_with_melody") if generator is None else None
        self.sampling_defaults = choice.get("sampling", {})  # per generator, measured (benchmarks/sampling.py)
        self.melody_sampling = choice.get("sampling_with_melody", {})  # per generator, for requests with a melody
        self.generator = self._pick(generator)
        lm = self.generators.get("lm")  # the token LM streams (the server's continuous batching runs it)
        self.lm = lm.model if lm else None
        g = self.generators[self.generator]
        self.extra, self.vocab, self.tags, self.melody = g.extra, g.vocab, g.tags, g.melody
        self.window = (lm or g).window
        self.decoders = {}  # generator kind -> the codec with a decoder fine-tuned for that generator's output
        for kind, gen in self.generators.items():
            tuned = folder_decoder(gen.folder, self.codec, 0 if kind == "flow" else gen.model.cfg.K)
            if tuned is not None:
                self.decoders[kind] = tuned
        self.sample_rate = self.codec.sample_rate
        self.frame_rate = self.codec.frame_rate
        self.domain = next((t.split("=", 1)[1] for t in self.vocab.tags if t.startswith("domain=")), task)

    def _pick(self, generator: str | None) -> str:
        name = generator or self.default_generator
        if name not in GENERATORS:
            raise InvalidArgumentError(f"unknown generator {name!r}", f"use one of {', '.join(GENERATORS)}")
        if name not in self.generators:
            have = ", ".join(sorted(self.generators))
            raise InvalidArgumentError(f"the {self.task} model at {self.folder} has no {name} generator (it has: {have})",
                                       f"use --generator {have.split(',')[0]}, or train one with `tokenwave train "
                                       f"{'flow --latents' if name == 'flow' else 'lm --tokens'} ...`")
        return name

    def defaults_for(self, generator: str, melody: bool = False) -> dict:
        """The sampling controls measured best for ``generator`` (``generators.json``), with a melody's on top for
        requests with one: what a request's unset controls take."""
        defaults = dict(self.sampling_defaults.get(generator, {}))
        if melody:
            defaults.update(self.melody_sampling.get(generator, {}))
        return defaults

    @property
    def supports_melody(self) -> bool:
        return self.melody is not None

    def read_prompt(self, prompt: str, generator: str | None = None) -> list[str]:
        g = self.generators[self._pick(generator or self.generator)]
        return read_prompt(check_prompt(prompt), g.vocab.tags, self.domain, g.extra.get("cooccur"))

    def _melody_ids(self, g: Generator, melody, frames: int) -> torch.Tensor | None:
        if melody is None:
            return None
        if g.melody is None:
            raise InvalidArgumentError(f"the {self.task} {g.kind} model at {g.folder} was not trained with melody "
                                       "conditioning",
                                       f"leave out --melody, or train one with `tokenwave train {g.kind} --melody`")
        if isinstance(melody, (str, os.PathLike)):
            ids = load_melody(melody, self.frame_rate)
        elif isinstance(melody, torch.Tensor):
            ids = melody.long()
        else:
            ids = pitch_classes(melody)  # MIDI pitches per frame
        return fit_length(ids, frames)

    @torch.no_grad()
    def generate(self, prompt: str, duration: float = 5.0, sampling: Sampling | None = None, melody=None,
                 continue_from=None, watermark: bool = True, generator: str | None = None) -> GeneratedAudio:
        """Render ``duration`` seconds for ``prompt``; ``melody``: a MIDI/audio path, pitch classes or MIDI pitches
        per frame; ``continue_from``: an audio path or ``(wav, sr)`` whose last seconds the output continues (the
        output then holds the new audio only); ``generator``: "lm" or "flow" (default: this task's)."""
        duration = check_duration(duration)
        if generator is None and melody is not None and self.melody_generator in self.generators:
            generator = self.melody_generator
        g = self.generators[self._pick(generator or self.generator)]
        sampling = (sampling or Sampling()).resolved(self.defaults_for(g.kind, melody is not None))
        sampling.check()
        tags = self.read_prompt(prompt, g.kind)
        frames = int(round(duration * self.frame_rate))
        ids, mask = g.vocab.encode([tags])
        cond = g.tags(ids, mask)
        clip = None if continue_from is None else self._continuation_audio(continue_from, g.window // 2)
        mel = self._melody_ids(g, melody, frames)
        if g.kind == "lm":
            wav = self._render_lm(g, cond, frames, mel, clip, sampling)
        else:
            wav = self._render_flow(g, cond, frames, mel, clip, sampling)
        meta = {"task": self.task, "prompt": prompt, "tags": tags, "duration": duration, "model": str(g.folder),
                "generator": g.kind, "melody": melody if isinstance(melody, str) else (None if melody is None else "<array>"),
                "continued": continue_from is not None, **sampling.__dict__}
        return finish(wav, self.sample_rate, meta, watermark)

    def _with_melody(self, g: Generator, cond, total: int, frames: int, mel: torch.Tensor | None):
        """Per-frame melody conditioning over ``total`` frames: the new ``frames`` follow ``mel``, the rest none."""
        if g.melody is not None:
            full = torch.full((total,), NO_PITCH, dtype=torch.long)
            if mel is not None:
                full[total - frames:] = mel
            cond.frames = g.melody(full[None])
        return cond

    def _render_lm(self, g: Generator, cond, frames: int, mel, clip, sampling: Sampling) -> np.ndarray:
        ctx = None if clip is None else self.codec.encode(torch.from_numpy(clip)[None, None], g.model.cfg.K)
        total = frames + (0 if ctx is None else ctx.shape[-1])
        cond = self._with_melody(g, cond, total, frames, mel)
        window, overlap = self.window_overlap(cond)
        codes = generate_long(g.model, total, cond, sampling.lm_params(), window=window, overlap=overlap, prompt=ctx)
        # the continued clip's context frames are decoded with the new ones (the decoder's state runs across the
        # seam), then cut: the output holds the new audio only
        return self.decoder_for(g).decode(codes)[0, 0].numpy()[(total - frames) * self.codec.hop:]

    def _render_flow(self, g: Generator, cond, frames: int, mel, clip, sampling: Sampling) -> np.ndarray:
        from tokenwave.flow.sample import decode_long, sample_long

        ctx = None if clip is None else self.codec.encode_latents(torch.from_numpy(clip)[None, None])
        total = frames + (0 if ctx is None else ctx.shape[-1])
        cond = self._with_melody(g, cond, total, frames, mel)
        window, overlap = self.flow_window_overlap(g)
        z = sample_long(g.model, total, window, overlap, cond, sampling.flow_params(), prompt=ctx)
        return decode_long(self.decoder_for(g), z, window, overlap)[0, 0].numpy()[(total - frames) * self.codec.hop:]

    def decoder_for(self, g: Generator):
        """The codec that decodes ``g``'s output: with the decoder fine-tuned for it when its folder has one
        (``decoder/``, from ``tokenwave train decoder``), else the shared codec."""
        return self.decoders.get(g.kind, self.codec)

    def window_overlap(self, cond) -> tuple[int, int]:
        """The token LM's sliding windows for long renders: the trained window (or what the context holds), a third
        of it carried over as context (0.67 s at the default 150-frame window)."""
        window = min(self.window, self.lm.cfg.max_len - cond.prefix_len - self.lm.cfg.K - 1)
        return window, window // 3

    @staticmethod
    def flow_window_overlap(g: Generator) -> tuple[int, int]:
        """The flow model's sliding windows: the trained window, a fifth of it given to the next window as its
        prompt (0.8 s at 300 frames); the audio seams are crossfaded inside those overlaps."""
        window = min(g.window, g.model.cfg.max_frames)
        return window, window // 5

    def _continuation_audio(self, clip, frames: int) -> np.ndarray:
        """The last ``frames`` codec frames of ``clip`` (a path or ``(wav, sr)``) at the codec's rate."""
        from tokenwave.audio import load_audio, resample

        if isinstance(clip, tuple):
            wav, sr = clip
        else:
            wav, sr = load_audio(clip)
        wav = np.asarray(wav, dtype=np.float32)
        if sr != self.sample_rate:
            wav = resample(wav, sr, self.sample_rate)
        if len(wav) < self.codec.hop * 8:
            raise InvalidArgumentError("the clip to continue is shorter than 0.1 s", "pass a longer clip")
        keep = int(frames * self.codec.hop)
        return np.ascontiguousarray(wav[-keep:])

    def generate_row(self, row: dict, dataset: str | os.PathLike, seed: int = 0, melody: bool = False,
                     generator: str | None = None) -> np.ndarray:
        """Evaluation: render ``row["caption"]`` for the row's duration (capped at 10 s), with its melody if asked."""
        mel = row.get("melody") if melody else None
        return self.generate(row["caption"], min(float(row["duration"]), 10.0), Sampling(seed=seed), melody=mel,
                             watermark=False, generator=generator).wav


__all__ = ["GENERATORS", "Generator", "TaggedTask", "read_prompt", "tag_cooccurrence"]
