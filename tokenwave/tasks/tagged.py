"""Music and sound effects from a text prompt: the prompt is read into the tags the generator was trained on
(``instrument=violin``, ``tempo=fast``, ``family=rain``…), then a generator renders the duration (sliding windows
past its context), optionally following a melody or continuing a clip, and the codec decodes: the token LM
samples codes, the flow model integrates continuous latents from noise (``--generator lm|flow``).

Reading the prompt: for each tag field, the values named in the prompt (whole words, case-insensitive) are found;
the one named first wins. Yes/no fields (``reverb``, ``thunder``…) are "yes" when the prompt names the field or a
synonym and "no" after "no"/"without". Keys need "in D" or "D major/minor" (the key A a capital: "in a hall" is no key). The tags read are returned in the
metadata, so a user sees how a prompt was understood; the model was trained with tags left out at random, so a
prompt naming only some of them is in its training distribution. Tags are also explicit controls (``tags=
["key=D", "tempo=fast"]``, ``--tag key=D``): each replaces what the prompt said of its field. A text-conditioned
generator also hears the whole prompt through its sentence encoder, and reports the training captions nearest it.
Where a prompt names no value of the model's main tag field (the sound's ``family`` for effects), such a generator
takes it from those nearest captions (:data:`CAPTION_TAGS`): "a downpour hammering on a shed" names no family, its
nearest captions are of rain. The tag is reported apart (``tags_from_captions``).
"""
from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from itertools import chain

import numpy as np
import torch

from tokenwave.audio import load_audio, resample
from tokenwave.codec import load_codec
from tokenwave.conditioning import Conditioning
from tokenwave.conditioning.melody import NO_PITCH, fit_length, load_melody, pitch_classes
from tokenwave.data.captions import GENRE_WORDS, INSTRUMENT_WORDS
from tokenwave.errors import AudioFileError, AudioNotFoundError, InvalidArgumentError
from tokenwave.flow.sample import decode_long, sample_long
from tokenwave.lm.generate import long_windows
from tokenwave.lm.sampling import SamplingParams
from tokenwave.models.folder import folder_decoder, read_generators
from tokenwave.models.tagged import Generator, tag_cooccurrence
from tokenwave.tasks.base import MAX_DURATION, GeneratedAudio, Sampling, check_duration, default_model_dir, finish
from tokenwave.tasks.sources import CodeSource, Decoding, LMSource, StepDecoder

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


def _with_paraphrase_words(synonyms: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """``synonyms`` with the words the text-conditioned models' training paraphrases use for instruments and genres
    (data.captions) added ("hymn": chorale, "harmonium": reed organ, "strings": string ensemble), but for a word
    prompts use in its everyday sense ("melody")."""
    out = dict(synonyms)
    for table in (INSTRUMENT_WORDS, GENRE_WORDS):
        for value, words in table.items():
            out[value] = tuple(dict.fromkeys((*out.get(value, ()), *(w for w in words if w not in (value, "melody")))))
    return out


VALUE_SYNONYMS = _with_paraphrase_words(VALUE_SYNONYMS)


def tag_fields(vocab_tags: list[str]) -> dict[str, list[str]]:
    """A generator's tag vocabulary -> the fields a request may set, each with its values (sorted); the domain and
    speaker fields are the model's own, not controls."""
    fields: dict[str, list[str]] = {}
    for t in vocab_tags:
        if "=" in t and not t.startswith(("domain=", "speaker=")):
            f, v = t.split("=", 1)
            if v:
                fields.setdefault(f, []).append(v)
    return {f: sorted(set(v)) for f, v in sorted(fields.items())}


def read_prompt(prompt: str, vocab_tags: list[str], domain: str, cooccur: dict[str, list[str]] | None = None
                ) -> list[str]:
    """The ``field=value`` tags of ``vocab_tags`` that ``prompt`` names (see the module docstring). ``cooccur``
    (tag -> the fields seen with it in training) keeps, once an anchor tag is read (the first one named whose field
    every clip has, e.g. ``family=rain``), only the fields the training data had beside it."""
    cased = " " + prompt + " "
    text = cased.lower()
    out = [f"domain={domain}"]
    for f, values in tag_fields(vocab_tags).items():
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
            if not v or v.lower() == domain:  # a value named like the domain ("album=music") is said by any prompt
                continue
            at = _mention(f, v, text, cased)
            if at is not None and (best is None or (*at, -len(v)) < best[0]):
                best = ((*at, -len(v)), v)
        if best:
            out.append(f"{f}={best[1]}")
    return keep_cooccurring(out, cooccur)


def _mention(field: str, value: str, text: str, cased: str) -> tuple[int, int] | None:
    """Where a prompt first names ``value`` of ``field``: (its position, 0 for the value's own name or 1 for another
    of its words: "violin" reads violin, not fiddle's other word), or None. ``text``: the prompt in lower case;
    ``cased``: as written."""
    if field == "key":  # the key A only as a capital: "in a room", "a minor key" say the article
        name = re.escape(value) if value[0] == "A" else "(?i:%s)" % re.escape(value)
        m = re.search(r"(?:\b(?i:in)\s+%s(?![\w#])|\b%s\s+(?i:major|minor)\b)" % (name, name), cased)
        return None if m is None else (m.start(), 0)
    best = None
    for rank, words in enumerate(((value.lower(),), VALUE_SYNONYMS.get(value.lower(), ()))):
        if words:
            m = re.search(r"(?<![\w-])(?:%s)(?:s|es)?(?![\w-])" % "|".join(map(re.escape, words)), text)
            if m and (best is None or m.start() < best[0]):
                best = (m.start(), rank)
    return best


def keep_cooccurring(tags: list[str], cooccur: dict[str, list[str]] | None) -> list[str]:
    """``tags`` (the domain first) -> those the training data had beside their anchor (:func:`read_prompt`)."""
    if cooccur:
        anchors = [t for t in tags[1:] if t in cooccur and cooccur.get("__required__") and t.split("=")[0] in cooccur["__required__"]]
        if anchors:  # the most specific anchor (fewest fields beside it)
            allowed = set(cooccur[min(anchors, key=lambda t: len(cooccur[t]))])
            tags = [tags[0]] + [t for t in tags[1:] if t.split("=")[0] in allowed]
    return tags


def main_field(vocab_tags: list[str], cooccur: dict[str, list[str]] | None) -> str | None:
    """The field every training clip has (``cooccur``'s required ones) with the most values, yes/no fields left out:
    what the sound is (``family`` for effects); None when there is none."""
    fields = tag_fields(vocab_tags)
    required = [f for f in (cooccur or {}).get("__required__", []) if f in fields and not set(fields[f]) <= {"yes", "no"}]
    return max(required, key=lambda f: (len(fields[f]), f)) if required else None


def vote_captions(nearest: list[tuple[str, float]], values: dict[str, str | None],
                  min_cosine: float) -> tuple[str, float] | None:
    """Training captions nearest a prompt ``[(caption, cosine)]`` and the main field's value each names (``values``)
    -> the value with the highest summed cosine over the captions at least ``min_cosine`` close, and that sum (None
    when none of them names one)."""
    votes: dict[str, float] = {}
    for caption, cos in nearest:
        v = values.get(caption)
        if v is not None and cos >= min_cosine:
            votes[v] = votes.get(v, 0.0) + cos
    return max(votes.items(), key=lambda kv: (kv[1], kv[0])) if votes else None


MAX_TAGS = 16


def set_tags(read: list[str], controls: list[str] | tuple[str, ...] | None, vocab_tags: list[str]) -> list[str]:
    """The tags read from a prompt, with explicit ``field=value`` controls set over them (each replaces the read tag
    of its field; ``field=`` drops it) -> the tags the generator is given, the domain first, then by field. A field
    or value the model was not trained on is refused, naming the ones it has."""
    if not controls:
        return read
    if len(controls) > MAX_TAGS:
        raise InvalidArgumentError(f"{len(controls)} tags given, over the {MAX_TAGS} limit", "give one per field")
    fields = tag_fields(vocab_tags)
    names = ", ".join(fields) or "(none: this model takes no tags)"
    out = list(read)
    for c in controls:
        f, sep, v = str(c).strip().partition("=")
        f, v = f.strip().lower(), v.strip()
        if not sep or not f:
            raise InvalidArgumentError(f"the tag {c!r} is not field=value",
                                       f"write e.g. {next(iter(fields), 'field')}=..., one of the fields {names}")
        if f not in fields:
            raise InvalidArgumentError(f"this model has no tag field {f!r}", f"use one of {names}")
        if v not in fields[f]:  # the value as the model spells it, whatever the case it was given in
            v = next((x for x in fields[f] if x.lower() == v.lower()), v)
        if v and v not in fields[f]:
            shown = fields[f][:40]
            raise InvalidArgumentError(f"{f}={v} is not a value this model was trained on",
                                       f"use one of {', '.join(shown)}{' ...' if len(fields[f]) > 40 else ''}")
        out = [t for t in out if t.split("=", 1)[0] != f] + ([f"{f}={v}"] if v else [])
    # in the order read_prompt gives (the domain, then by field), as the generator was trained on
    return sorted(out, key=tag_order)


def tag_order(tag: str) -> tuple[bool, str]:
    """Sort key of the order a generator is given its tags in: the domain, then by field."""
    return not tag.startswith("domain="), tag.split("=", 1)[0]


def check_prompt(prompt: str) -> str:
    prompt = (prompt or "").strip()
    if not prompt or not re.search(r"\w", prompt):
        raise InvalidArgumentError("the prompt is empty", 'describe the sound, e.g. "gentle rain on a tin roof"')
    if len(prompt) > 500:
        raise InvalidArgumentError(f"the prompt has {len(prompt)} characters, over the 500 limit", "shorten it")
    return prompt


GENERATORS = ("lm", "flow")
SILENT_DBFS = -40.0  # a carried context quieter than this (RMS) is not continued by the token LM's next window
SILENT_RETRIES = 3  # silent blocks a long piece drops in a row before its next window starts afresh (TaggedTask.codes)
HOLD_SILENCE = {"music": True, "sfx": False}  # tasks whose long pieces hold new frames back until heard (codes)
# Tasks whose prompts take the main tag (main_field) from the nearest training captions when they name none of its
# values (a text-conditioned generator). Chosen on development prompts, never on the test prompts of
# benchmarks/prompts.py (benchmarks/caption_tags.py, benchmarks/results/caption_tags.json): the sound-effect family
# of 36 prompts right for 9 by keywords alone (1 wrong), for 26 from the 10 nearest captions at cosine >= 0.4 (5
# wrong); the music instrument of 14 prompts right for 3 either way, 8 wrong from the captions (templated wording
# and game titles), so music keeps keywords alone.
CAPTION_TAGS = {"music": False, "sfx": True}
CAPTION_NEAREST, CAPTION_MIN_COSINE = 10, 0.4


@dataclass
class TaggedRequest:
    """A checked music/sfx request, ready to render (:meth:`TaggedTask.prepare`): the generator, the tags read from
    the prompt, the conditioning over all ``total`` frames (a continued clip's and the new ones; the melody per
    frame), the new ``frames``, the continued clip's codes ``[1, K, Tp]`` (token LM) or latents ``[1, D, Tp]``
    (flow) or None, and the resolved sampling controls."""

    generator: Generator
    tags: list[str]
    cond: Conditioning
    frames: int
    context: torch.Tensor | None
    sampling: Sampling
    nearest: list[tuple[str, float]] = field(default_factory=list)  # training captions closest to the prompt
    from_captions: list[str] = field(default_factory=list)  # tags taken from them (the prompt named none of the field)

    @property
    def total(self) -> int:
        """Frames the generator makes: the continued clip's and the new ones."""
        return self.frames + (0 if self.context is None else self.context.shape[-1])
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
        self.level_codecs = {}  # generator kind -> the copy of its codec that measures levels (context_silent)
        self._caption_cache: dict[tuple[str, str, str], dict[str, str | None]] = {}  # (bank, reader, field) -> values
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

    def read_prompt(self, prompt: str, generator: str | None = None, tags: list[str] | None = None) -> list[str]:
        """``prompt`` -> the tags the generator is given: those read from it (the main one from the nearest training
        captions where the prompt names none, :data:`CAPTION_TAGS`), with the explicit ``tags`` controls
        (``field=value``, see :func:`set_tags`) over them."""
        g = self.generators[self._pick(generator or self.generator)]
        return self._read(g, check_prompt(prompt), tags)[0]

    def _read(self, g: Generator, prompt: str, controls: list[str] | None
              ) -> tuple[list[str], list[str], torch.Tensor | None]:
        """-> (the tags ``g`` is given, those of them taken from the nearest captions, and the prompt's sentence
        embedding when reading them made ``g``'s own, else None). A generator without captions of its own (the task's
        flow model beside a text-conditioned token LM) reads its sibling's: the same training sounds, the same tag
        names."""
        cooccur = g.extra.get("cooccur")
        read = read_prompt(prompt, g.vocab.tags, self.domain)
        emb, taken = None, []
        bank = g if g.captions is not None else next((x for x in self.generators.values() if x.captions is not None),
                                                     None)
        field = main_field(g.vocab.tags, cooccur) if CAPTION_TAGS.get(self.task) and bank is not None else None
        named = {t.split("=", 1)[0] for t in read}
        if field and field not in named and not any(str(c).split("=", 1)[0].strip().lower() == field
                                                    for c in controls or ()):
            near_emb = bank.embed(prompt)
            emb = near_emb if bank is g else None
            won = vote_captions(bank.captions.nearest(near_emb, CAPTION_NEAREST), self.caption_values(bank, field, g),
                                CAPTION_MIN_COSINE)
            if won is not None:
                taken = [f"{field}={won[0]}"]
                read = read + taken
        read = keep_cooccurring(sorted(read, key=tag_order), cooccur)
        return set_tags(read, controls, g.vocab.tags), [t for t in taken if t in read], emb

    def caption_values(self, bank: Generator, field: str, reader: Generator | None = None) -> dict[str, str | None]:
        """``bank``'s training captions -> the value of ``field`` each names in ``reader``'s tags (default: its own;
        keywords, as a prompt is read), cached."""
        reader = reader or bank
        key = (bank.kind, reader.kind, field)
        if key not in self._caption_cache:
            values = {}
            for c in bank.captions.captions:
                got = [t.split("=", 1)[1] for t in read_prompt(c, reader.vocab.tags, self.domain)
                       if t.startswith(field + "=")]
                values[c] = got[0] if got else None
            self._caption_cache[key] = values
        return self._caption_cache[key]

    def tag_fields(self, generator: str | None = None) -> dict[str, list[str]]:
        """The tag controls a request may set on ``generator`` (default: this task's): field -> values."""
        return tag_fields(self.generators[self._pick(generator or self.generator)].vocab.tags)

    def _melody_ids(self, g: Generator, melody, frames: int) -> torch.Tensor | None:
        if melody is None:
            return None
        if g.melody is None:
            raise InvalidArgumentError(f"the {self.task} {g.kind} model at {g.folder} was not trained with melody "
                                       "conditioning",
                                       f"leave out --melody, or train one with `tokenwave train {g.kind} --melody`")
        if isinstance(melody, (str, os.PathLike)):
            try:
                ids = load_melody(melody, self.frame_rate)
            except AudioFileError as err:
                if isinstance(err, AudioNotFoundError):
                    raise
                raise InvalidArgumentError(f"the melody {melody} is neither a MIDI file nor audio that can be read "
                                           f"({err.message})", "pass a .mid/.midi file or a recording (wav, flac, "
                                           "ogg, mp3)") from None
        elif isinstance(melody, torch.Tensor):
            ids = melody.long()
        else:
            ids = pitch_classes(melody)  # MIDI pitches per frame
        return fit_length(ids, frames)

    @torch.no_grad()
    def prepare(self, prompt: str, duration: float = 5.0, sampling: Sampling | None = None, melody=None,
                continue_from=None, generator: str | None = None,
                max_duration: float = MAX_DURATION, tags: list[str] | None = None) -> TaggedRequest:
        """A request -> its :class:`TaggedRequest`, every check done (duration up to ``max_duration`` seconds,
        generator, sampling controls, prompt, clip, melody) before any audio. ``melody``: a MIDI/audio path, pitch
        classes or MIDI pitches per frame; ``continue_from``: an audio path or ``(wav, sr)`` whose last seconds the
        output continues; ``generator``: "lm" or "flow" (default: this task's, or the one measured better with a
        melody); ``tags``: explicit ``field=value`` controls set over the tags read from the prompt
        (:meth:`tag_fields` lists them). Unset sampling controls take the generator's measured defaults."""
        duration = check_duration(duration, max_duration)
        if generator is None and melody is not None and self.melody_generator in self.generators:
            generator = self.melody_generator
        g = self.generators[self._pick(generator or self.generator)]
        sampling = (sampling or Sampling()).resolved(self.defaults_for(g.kind, melody is not None))
        sampling.check()
        tags, taken, emb = self._read(g, check_prompt(prompt), tags)
        frames = int(round(duration * self.frame_rate))
        cond, nearest = g.condition(tags, prompt.strip(), emb=emb)
        clip = None if continue_from is None else self._continuation_audio(continue_from, g.window // 2)
        mel = self._melody_ids(g, melody, frames)
        ctx = None
        if clip is not None:
            wav = torch.from_numpy(clip)[None, None]
            ctx = self.codec.encode(wav, g.model.cfg.K) if g.kind == "lm" else self.codec.encode_latents(wav)
        total = frames + (0 if ctx is None else ctx.shape[-1])
        return TaggedRequest(g, tags, self._with_melody(g, cond, total, frames, mel), frames, ctx, sampling, nearest,
                             taken)

    def codes(self, req: TaggedRequest, source: CodeSource | None = None) -> Iterator[torch.Tensor]:
        """The token LM's generation loop, offline and on the server: a :class:`TaggedRequest` -> its new
        ``codes LongTensor[K, n]`` as they arrive, ``req.frames`` in all. Past the trained window it slides
        windows (:func:`~tokenwave.lm.generate.long_windows`, :meth:`window_overlap`): window ``i`` samples with
        seed ``seed + i`` from ``source`` (None: the token LM on this thread), continuing the last frames made
        before it (or the continued clip's), whose forced frames it returns first and this loop drops.

        Against drift into silence (the trained windows end in decays, and the token LM continues silence with
        silence: ``benchmarks/longform.py``), a silent carried context is replaced by the last sounding one (or
        none), and new frames are heard in blocks of ``overlap // 4`` (0.16 s at the music window) by
        :meth:`context_silent`:

        - music longer than one window (:data:`HOLD_SILENCE`) holds each block back until heard. A silent block is
          dropped, never sent: the window ends there and the next one continues the frames before it, with the next
          seed. After :data:`SILENT_RETRIES` silent blocks in a row the next window starts afresh, without context,
          and after twice that many a silent block is kept, so a piece always ends. Music of one window is the clip
          as the model makes it.
        - sound effects, where silence between events is real, send frames as they come; a window whose newest block
          is silent ends there, and the next continues the frames before the silence.

        Closing the iterator stops the source."""
        g = req.generator
        if g.kind != "lm":
            raise InvalidArgumentError(f"the {g.kind} generator makes no codes", "use generator 'lm'")
        source = source or LMSource(g.model)
        window, overlap = self.window_overlap(req.cond)
        params = req.sampling.lm_params()
        out = None if req.context is None else req.context[0]
        have, i = req.total - req.frames, 0  # frames made (the continued clip's first), windows begun
        sounding = None  # the last carried context that was not silent
        block = max(overlap // 4, 1)  # new frames heard at a time
        keep = overlap + block  # the frames made that this loop reads back: a context, the frames before a silence
        hold = HOLD_SILENCE.get(self.task, False)
        if hold and req.total <= window:
            block = None  # one window: nothing to hear

        def add(new: torch.Tensor) -> torch.Tensor:
            """Count ``new`` frames as made (their last ``keep`` kept in ``out``) -> ``new``."""
            nonlocal out, have
            out = (new if out is None else torch.cat([out, new], -1))[:, -keep:]
            have += new.shape[-1]
            return new

        dropped = 0  # silent blocks dropped in a row (held back)
        resume = None  # after a window cut for silence (sent as they come): the frames before the silence
        while have < req.total:
            start, n_ctx, n = next(long_windows(req.total, window, overlap, have))
            ctx = out[:, -n_ctx:] if n_ctx else None
            if resume is not None and resume.shape[-1] == n_ctx and not self.context_silent(g, resume):
                ctx = resume  # continue the sound from before the silence, not the silence
            if ctx is not None and (dropped >= SILENT_RETRIES or self.context_silent(g, ctx)):
                if dropped < SILENT_RETRIES and sounding is not None and sounding.shape[-1] == n_ctx:
                    ctx = sounding
                else:  # afresh: from the conditioning alone
                    start, n_ctx, n, ctx = have, 0, min(window, req.total - have), None
            elif ctx is not None:
                sounding = ctx
            step = SamplingParams(**{**params.__dict__, "seed": params.seed + i})
            i += 1
            seen, held, checked, resume = 0, None, 0, None
            with closing(source(req.cond.frame_slice(start, start + n), n, step, ctx)) as window_codes:
                for c in window_codes:
                    drop = min(max(n_ctx - seen, 0), c.shape[-1])  # the forced context frames come back first
                    seen += c.shape[-1]
                    if not hold or block is None:  # sent as they come
                        if c.shape[-1] > drop:
                            yield add(c[:, drop:])
                        made = seen - n_ctx
                        if block is not None and made - checked >= block and have < req.total:
                            checked = made
                            if self.context_silent(g, out[:, -block:]):
                                resume = out[:, -(block + overlap): -block] if out.shape[-1] >= block + overlap else None
                                break  # gone silent: the next window starts here (closing the source stops this one)
                        continue
                    if c.shape[-1] > drop:
                        held = c[:, drop:] if held is None else torch.cat([held, c[:, drop:]], -1)
                    while held is not None and held.shape[-1] >= block:
                        new, held = held[:, :block], (held[:, block:] if held.shape[-1] > block else None)
                        silent = self.context_silent(g, new)
                        if silent and dropped < 2 * SILENT_RETRIES:
                            dropped += 1
                            held = None
                            break
                        dropped = dropped if silent else 0
                        yield add(new)
                    else:
                        continue
                    break  # a silent block: the next window starts here (closing the source stops this one)
            if held is not None:  # the window's last held frames, fewer than a block
                yield add(held)

    @torch.no_grad()
    def context_silent(self, g: Generator, codes: torch.Tensor) -> bool:
        """``codes LongTensor[K, n]`` -> whether their audio is quieter than :data:`SILENT_DBFS` (RMS). Decoded by a
        copy of ``g``'s codec that never streams: the codec itself may be streaming this request (its state lives
        on its modules), or, on the server, other requests."""
        if g.kind not in self.level_codecs:
            self.level_codecs[g.kind] = copy.deepcopy(self.decoder_for(g))
        wav = self.level_codecs[g.kind].decode(codes[None])[0, 0]
        return 20 * torch.log10(wav.pow(2).mean().sqrt() + 1e-10).item() < SILENT_DBFS

    def render(self, req: TaggedRequest, source: CodeSource | None = None,
               decode: Decoding = StepDecoder) -> Iterator[np.ndarray]:
        """A :class:`TaggedRequest` -> float32 audio chunks of the new audio: the token LM's :meth:`codes` (from
        ``source``) decoded as they arrive by ``decode``, a continued clip's frames first so the decoder's state
        runs across the seam (their audio is left out). Equal to :meth:`generate`'s audio to float rounding (it
        decodes the whole sequence at once). The flow generator renders whole windows: one chunk, no ``source``."""
        g = req.generator
        if g.kind != "lm":
            if source is not None:
                raise InvalidArgumentError("the flow generator takes no code source", "use generator 'lm'")
            with torch.no_grad():
                wav = self._render_flow(req)
            yield wav
            return
        skip = (req.total - req.frames) * self.codec.hop  # the continued clip's samples, decoded but left out
        dec = decode(self.decoder_for(g))
        try:
            with closing(self.codes(req, source)) as new:
                for c in chain([] if req.context is None else [req.context[0]], new):
                    wav = dec.push(c)
                    cut = min(skip, len(wav))
                    skip -= cut
                    yield wav[cut:]
            yield dec.flush()[skip:]
        finally:
            dec.close()

    def stream(self, prompt: str, duration: float = 5.0, sampling: Sampling | None = None, melody=None,
               continue_from=None, generator: str | None = None, source: CodeSource | None = None,
               decode: Decoding = StepDecoder, info: dict | None = None, tags: list[str] | None = None
               ) -> Iterator[np.ndarray]:
        """A request (as :meth:`prepare` takes it, checked now) -> float32 audio chunks as they are made
        (:meth:`render`); ``info`` (a dict), if given, receives the tags read from the prompt."""
        req = self.prepare(prompt, duration, sampling, melody, continue_from, generator, tags=tags)
        if info is not None:
            info["tags"] = req.tags
            if req.nearest:
                info["nearest_captions"] = req.nearest
            if req.from_captions:
                info["tags_from_captions"] = req.from_captions
        return self.render(req, source, decode)

    @torch.no_grad()
    def generate(self, prompt: str, duration: float = 5.0, sampling: Sampling | None = None, melody=None,
                 continue_from=None, watermark: bool = True, generator: str | None = None,
                 progress: Callable[[int, int], None] | None = None, tags: list[str] | None = None) -> GeneratedAudio:
        """Render ``duration`` seconds for ``prompt`` (see :meth:`prepare`; with ``continue_from`` the output holds
        the new audio only). The token LM's codes come from :meth:`codes`, as a stream's do, and are decoded in one
        piece. ``progress(done, total)``, if given, is told the new frames made so far (per LM step, per flow
        window); ``tags``: explicit ``field=value`` controls over the tags read from the prompt."""
        req = self.prepare(prompt, duration, sampling, melody, continue_from, generator, tags=tags)
        g = req.generator
        if g.kind == "lm":
            new, done = [], 0
            for c in self.codes(req):
                new.append(c)
                done += c.shape[-1]
                if progress is not None:
                    progress(done, req.frames)
            codes = torch.cat([*([] if req.context is None else [req.context[0]]), *new], -1)
            # the continued clip's context frames are decoded with the new ones (the decoder's state runs across the
            # seam), then cut: the output holds the new audio only
            wav = self.decoder_for(g).decode(codes[None])[0, 0].numpy()[(req.total - req.frames) * self.codec.hop:]
        else:
            wav = self._render_flow(req, progress)
        meta = {"task": self.task, "prompt": prompt, "tags": req.tags, **({"tag_controls": list(tags)} if tags else {}),
                **({"nearest_captions": req.nearest} if req.nearest else {}),
                **({"tags_from_captions": req.from_captions} if req.from_captions else {}), "duration": float(duration),
                "model": str(g.folder), "generator": g.kind,
                "melody": melody if isinstance(melody, str) else (None if melody is None else "<array>"),
                "continued": continue_from is not None, **req.sampling.__dict__}
        return finish(wav, self.sample_rate, meta, watermark)

    def _with_melody(self, g: Generator, cond, total: int, frames: int, mel: torch.Tensor | None):
        """Per-frame melody conditioning over ``total`` frames: the new ``frames`` follow ``mel``, the rest none."""
        if g.melody is not None:
            full = torch.full((total,), NO_PITCH, dtype=torch.long)
            if mel is not None:
                full[total - frames:] = mel
            cond.frames = g.melody(full[None])
        return cond

    def _render_flow(self, req: TaggedRequest, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        g = req.generator
        window, overlap = self.flow_window_overlap(g)
        have = req.total - req.frames  # the continued clip's frames
        told = None if progress is None else (lambda done: progress(max(done - have, 0), req.frames))
        z = sample_long(g.model, req.total, window, overlap, req.cond, req.sampling.flow_params(), prompt=req.context,
                        progress=told)
        wav = decode_long(self.decoder_for(g), z, window, overlap)[0, 0].numpy()
        return wav[(req.total - req.frames) * self.codec.hop:]

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


__all__ = ["CAPTION_TAGS", "GENERATORS", "Generator", "TaggedTask", "keep_cooccurring", "main_field", "read_prompt",
           "tag_cooccurrence", "tag_order", "vote_captions"]
