"""Text-to-speech with a voice prompt: text -> sentences -> phonemes (espeak-ng via phonemizer) -> the TTS token
LM (conditioned on phonemes, 3 s of the voice's codes and the length; an aligned model also on each frame's phone,
timed by espeak-ng in the voice's accent: one asked for, a built-in voice's own, a recording's detected from its
transcript (:mod:`tokenwave.speech.accent`), else the reference ``en-us``) -> codec decode.

Offline output is the concatenation of the streamed chunks, so a stream and a file of the same request and seed
are the same audio.
"""
from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tokenwave.audio import load_audio, resample
from tokenwave.codec import load_codec
from tokenwave.codec.decoders import decoder_phones, decoder_voice, load_decoder, voice_vector
from tokenwave.conditioning.speech import PROMPT_SECONDS, alignment_inputs, frame_inputs
from tokenwave.data.manifest import audio_path, read_manifest
from tokenwave.errors import AudioFileError, InvalidArgumentError, TokenwaveError
from tokenwave.models.folder import folder_decoder, read_generators
from tokenwave.models.tts import TTSFolder
from tokenwave.nn import REDUCED_KV, check_precision, set_precision
from tokenwave.safety.consent import check_voice_prompt
from tokenwave.speech import check_accent, detect_accent, frame_phones, phonemize, text_timings, timing_of_voice
from tokenwave.tasks.base import MAX_TEXT_CHARS, GeneratedAudio, Sampling, default_model_dir, finish
from tokenwave.tasks.sources import CodeSource, Decoding, LMSource, StepDecoder

MIN_PROMPT_SECONDS = 1.5
PAUSE_SECONDS = 0.15   # silence between sentences
EDGE_SECONDS = 0.01    # fade at each sentence's edges
DEFAULT_PRECISION = "fp32"  # the token LM's linear layers (TTS precision)
# the token LM's KV cache at inference, in both precisions: bfloat16 where the CPU computes in it, else float32 (None;
# tokenwave.nn.linear.reduced_kv_dtype). Decoding at batch > 1 (the server's engine, guidance) reads every cached key
# and value each step, and on an Intel Xeon with AMX half the bytes made an 8-stream engine step about 0.87x as long;
# on AVX2 alone a bfloat16 cache is the slower one. Its teacher-forced sequence KL to an fp32 cache is about 0.02 nats
# a sentence, int8 weights' about 13 (benchmarks/results/kv_cache.json)
KV_CACHE = REDUCED_KV


class UnknownVoiceError(TokenwaveError):
    pass


@dataclass
class SentencePlan:
    """One sentence ready to generate: phoneme ids, its length in frames and (aligned models) the per-frame phones
    ``LongTensor [3, frames]``, for the model and (a phone-informed decoder) for the decoder, each in its own
    phone vocabulary."""

    phonemes: torch.Tensor
    frames: int
    aligned: torch.Tensor | None = None
    decoder_frames: torch.Tensor | None = None


@dataclass
class Utterance:
    """A checked request, ready to render (:meth:`TTS.prepare`): its sentences' plans, the voice's prompt codes
    ``[K, Tp]``, the resolved sampling controls and the voice's metadata (consent, accent)."""

    plans: list[SentencePlan]
    prompt: torch.Tensor
    sampling: Sampling
    info: dict


def split_sentences(text: str, max_chars: int = 160) -> list[str]:
    """Sentences (ending at . ! ? ; or a line break); a sentence longer than ``max_chars`` is split at commas,
    then at spaces. A piece with nothing to say (an ellipsis written ". . .", a lone dash) joins the sentence
    before it, so every sentence has words."""
    parts: list[str] = []
    lead = ""  # wordless pieces before the first sentence with words join it
    for p in (p.strip() for p in re.split(r"(?<=[.!?;])\s+|\n+", text)):
        if p and not re.search(r"\w", p):
            if parts:
                parts[-1] = f"{parts[-1]} {p}"
            else:
                lead = f"{lead} {p}".strip()
        elif p:
            parts.append(f"{lead} {p}".strip())
            lead = ""
    if lead:
        parts.append(lead)
    out: list[str] = []
    for p in parts:
        while len(p) > max_chars:
            cut = p.rfind(",", 0, max_chars)
            cut = cut if cut > max_chars // 3 else p.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            out.append(p[: cut + 1].strip())
            p = p[cut + 1:].strip()
        if p:
            out.append(p)
    return out


def check_text(text: str) -> str:
    text = (text or "").strip()
    if not text or not re.search(r"\w", text):
        raise InvalidArgumentError("the text is empty", 'give the words to speak, e.g. tokenwave tts "Hello there."')
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidArgumentError(f"the text has {len(text)} characters, over the {MAX_TEXT_CHARS} limit",
                                   "split it into several requests")
    return text


class TTS:
    """A trained TTS model (``tokenwave train tts``) with its codec and built-in voices."""

    task = "tts"

    def __init__(self, folder: str | os.PathLike | None = None, codec=None,
                 decoder: str | os.PathLike | bool | None = None, precision: str = DEFAULT_PRECISION) -> None:
        """``decoder``: None decodes with the folder's own ``decoder/`` when it has one; a decoder folder (``tokenwave
        train decoder``) decodes with that one instead; False with the codec's own decoder. ``precision``: the token
        LM's linear layers at inference, "fp32" (as trained) or "int8" (per-channel int8 weights:
        :func:`tokenwave.nn.set_precision`; speed and Whisper CER of each in benchmarks/results/tts_precision.json).
        Its KV cache is :data:`KV_CACHE` (bfloat16 where the CPU computes in it) in both."""
        self.precision = check_precision(precision)  # before the seconds of loading
        self.folder = default_model_dir("tts", folder)
        self.codec = codec if codec is not None else load_codec(None)
        saved = TTSFolder.load(self.folder, self.codec)  # refuses a codec other than the one it was trained on
        self.model, self.extra = saved.model, saved.extra
        self.lm = set_precision(self.model.lm, precision)
        self.lm.kv_dtype = KV_CACHE
        self.vocab = saved.phonemes
        self.phones = saved.phones  # aligned models
        if decoder is None:
            speech = folder_decoder(self.folder, self.codec, self.lm.cfg.K)  # a decoder fine-tuned on speech, if any
        else:
            speech = load_decoder(decoder, self.codec, n_q=self.lm.cfg.K) if decoder is not False else None
        if speech is not None:
            self.codec = speech
        # a phone-informed decoder is told each frame's phone: only an aligned model's frames have known phones
        self.decoder_phones = decoder_phones(self.codec) if self.phones is not None else None
        self.decoder_voice = self.decoder_phones is not None and decoder_voice(self.codec)  # and the prompt's voice
        self.sample_rate = self.codec.sample_rate
        self.frame_rate = self.codec.frame_rate
        self.K = self.lm.cfg.K
        self.builtin = saved.voices
        self.max_frames = int(self.extra.get("train", {}).get("max_frames", 450))
        # the sampling controls measured best for this model (benchmarks/sampling.py --task tts --apply)
        self.sampling_defaults = read_generators(self.folder).get("sampling", {}).get("lm", {})
        self._accents: dict = {}  # detected accents of recent prompts
        self._accents_lock = threading.Lock()

    def defaults_for(self, generator: str = "lm", melody: bool = False) -> dict:
        """The sampling controls measured best for this model's token LM (its one generator): what a request's unset
        controls take. Another generator, or a melody, is refused: speech has neither."""
        if generator != "lm":
            raise InvalidArgumentError(f"the TTS model has no {generator!r} generator", "use the token LM (lm)")
        if melody:
            raise InvalidArgumentError("text-to-speech takes no melody", "leave out the melody")
        return dict(self.sampling_defaults)

    @property
    def voices(self) -> list[str]:
        return sorted(self.builtin)

    # --- inputs ------------------------------------------------------------------------------------------------
    def prompt_codes(self, voice, consent_check: bool = True, registry=None, prompt_text: str | None = None,
                     accent: str | None = None) -> tuple[torch.Tensor, dict]:
        """A voice -> (codes ``[K, <=225]``, metadata: consent and the accent the speech will be timed in): a
        built-in voice name (the project's own engine voices; its name carries its accent), or a recording (an audio
        file or ``(wav, sample_rate)``), which must match a consented voice of the registry
        (:mod:`tokenwave.safety.consent`) unless the operator disables the check. A recording's accent is detected
        from it and ``prompt_text``, the words it says (:mod:`tokenwave.speech.accent`); ``accent`` given overrides
        both; with neither, the reference accent (``en-us``) times the speech."""
        if accent is not None:
            check_accent(accent)
        if voice is None:
            voice = self.voices[0] if self.voices else None
            if voice is None:
                raise UnknownVoiceError("this model has no built-in voices", "pass --voice with a 3-second recording")
        if isinstance(voice, str) and voice in self.builtin:
            named, variant = timing_of_voice(voice)
            return self.builtin[voice], {"voice_kind": "built-in",
                                         **_accent_info(accent, named, "voice name", variant)}
        if isinstance(voice, tuple):
            wav, sr = voice
        else:
            path = Path(voice)
            if not path.exists():
                near = ", ".join(self.voices[:8])
                raise UnknownVoiceError(f"unknown voice {voice!r}: neither a built-in voice nor an audio file",
                                        f"use one of the built-in voices ({near}, … see `tokenwave tts --list-voices`)"
                                        " or the path of a 3-second recording")

            wav, sr = load_audio(path)

        wav = np.asarray(wav, dtype=np.float32)
        if sr != self.sample_rate:
            wav = resample(wav, sr, self.sample_rate)
        wav = trim_silence(wav, self.sample_rate)
        seconds = len(wav) / self.sample_rate
        if seconds < MIN_PROMPT_SECONDS:
            raise AudioFileError(f"the voice prompt holds {seconds:.2f} s of sound, under {MIN_PROMPT_SECONDS} s",
                                 f"record at least {PROMPT_SECONDS:g} s of the voice speaking")
        whole, wav = wav, wav[: int(PROMPT_SECONDS * self.sample_rate)]

        consent = check_voice_prompt(wav, self.sample_rate, registry, enabled=consent_check)
        detected, variant, fit = None, None, None
        if accent is None and prompt_text is not None and self.phones is not None:  # only an aligned model is timed
            match = self._detect_accent(whole, prompt_text)
            detected, variant, fit = match.accent, match.variant, match.score
        info = {"voice_kind": "recording", "consent": consent.as_metadata(),
                **_accent_info(accent, detected, "prompt", variant)}
        if fit is not None:
            info["accent_fit"] = fit
        with torch.no_grad():
            return self.codec.encode(torch.from_numpy(wav)[None, None], self.K)[0], info

    def _detect_accent(self, wav: np.ndarray, text: str):
        """:func:`tokenwave.speech.accent.detect_accent` of a trimmed prompt, remembered for the last few prompts
        (about 2 s of espeak-ng work each)."""
        key = (hashlib.sha1(np.ascontiguousarray(wav).tobytes()).hexdigest(), text.strip())
        with self._accents_lock:  # a server's requests share the cache (espeak-ng calls take turns anyway)
            if key not in self._accents:
                if len(self._accents) >= 64:
                    self._accents.pop(next(iter(self._accents)))
                self._accents[key] = detect_accent(wav, self.sample_rate, text)
            return self._accents[key]

    def phoneme_ids(self, sentences: list[str]) -> list[torch.Tensor]:
        return [torch.tensor(self.vocab.encode(p) or [1]) for p in phonemize(sentences)]

    def frames_for(self, phonemes: torch.Tensor, speed: float) -> int:
        a, b = self.extra["duration"]
        return int(np.clip(round((a * len(phonemes) + b) / speed), 8, self.max_frames))

    def plan(self, sentences: list[str], speed: float = 1.0, accent: str | None = None,
             variant: str | None = None) -> list[SentencePlan]:
        """Each sentence's phonemes and length; an aligned model's frames follow espeak-ng's timing of the sentence
        in ``accent`` (None: its reference voice; ``variant``: an espeak-ng variant's stress timing) at ``speed``
        times the reference rate, others the length fitted on the phoneme count."""
        out = []
        for text, ph in zip(sentences, self.phoneme_ids(sentences), strict=True):
            if self.phones is None:
                out.append(SentencePlan(ph, self.frames_for(ph, speed)))
                continue
            timing = text_timings(text, speed, self.sample_rate, accent=accent, variant=variant)
            frames = int(np.clip(round(timing["end"] * self.frame_rate), 8, 2 * self.max_frames))
            timed = frame_phones(timing, frames, self.frame_rate)
            out.append(SentencePlan(ph, frames, frame_inputs(self.phones, *timed),
                                    None if self.decoder_phones is None else frame_inputs(self.decoder_phones, *timed)))
        return out

    def resynthesize(self, wav: np.ndarray, alignment: dict | None = None) -> np.ndarray:
        """``wav`` (at :attr:`sample_rate`) through this model's codes and decoder: what any speech this model makes
        can at best sound like. A phone-informed decoder is given the clip's phones when ``alignment`` (a row of a
        dataset's ``alignments.jsonl``) is known, else decodes the codes alone; one told the voice gets the voice of
        the clip's first 3 s."""
        with torch.no_grad():
            codes = self.codec.encode(torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))[None, None], self.K)
            if self.decoder_phones is None:  # any codec's decode(codes)
                return self.codec.decode(codes)[0, 0].numpy()[: len(wav)]
            frames = None if alignment is None else \
                alignment_inputs(self.decoder_phones, alignment, codes.shape[-1], self.frame_rate)[None]
            voice = self._voice(codes[0, :, : int(PROMPT_SECONDS * self.frame_rate)])
            return self.codec.decode(codes, frames, voice)[0, 0].numpy()[: len(wav)]

    def _voice(self, prompt: torch.Tensor) -> torch.Tensor | None:
        """What a decoder told the voice is given: the voice vector of the prompt's codes ``[K, T]`` (else None)."""
        return voice_vector(self.codec, prompt[None]) if self.decoder_voice else None

    def condition(self, plan: SentencePlan, prompt: torch.Tensor):
        """The :class:`Conditioning` of one sentence in the voice of ``prompt`` (codes ``[K, Tp]``)."""
        return self.model.cond([plan.phonemes], [prompt], [plan.frames], None if plan.aligned is None else [plan.aligned])

    # --- generation --------------------------------------------------------------------------------------------
    def prepare(self, text: str, voice=None, sampling: Sampling | None = None, speed: float = 1.0,
                consent_check: bool = True, registry=None, prompt_text: str | None = None,
                accent: str | None = None) -> Utterance:
        """A request -> its :class:`Utterance`: the sampling controls (unset ones take the model's measured
        defaults), the speed, the text (split into sentences, phonemized and timed) and the voice
        (:meth:`prompt_codes`, consent included) checked, so every error a request can have is raised here, before
        any audio. ``prompt_text``: the words a recorded voice says, from which its accent is detected;
        ``accent``: the accent to time the speech in, whatever the voice."""
        sampling = (sampling or Sampling()).resolved(self.sampling_defaults)
        sampling.check()
        if not 0.5 <= speed <= 2.0:
            raise InvalidArgumentError(f"speed must be within 0.5..2, got {speed}", "use 1.0 for the natural pace")
        sentences = split_sentences(check_text(text))
        prompt, voice_info = self.prompt_codes(voice, consent_check, registry, prompt_text, accent)
        plans = self.plan(sentences, speed, voice_info.get("accent"), voice_info.get("accent_variant"))
        return Utterance(plans, prompt, sampling, voice_info)

    def render(self, utt: Utterance, source: CodeSource | None = None,
               decode: Decoding = StepDecoder) -> Iterator[np.ndarray]:
        """The generation loop, offline and on the server: an :class:`Utterance` -> float32 audio chunks as the
        codes arrive, sentence after sentence. Sentence ``i`` samples with seed ``seed + i``; its codes come from
        ``source`` (None: this model's token LM on this thread, :class:`~tokenwave.tasks.sources.LMSource`), are
        decoded by ``decode`` (given the sentence's phones and the voice's vector for a phone-informed decoder),
        fade in and out over :data:`EDGE_SECONDS`, and :data:`PAUSE_SECONDS` of silence follows all but the last.
        A later sentence's decoder is told the frames sent before it, so its chunks stay settled (16 frames) once
        the utterance sent 1.6 s. Closing the iterator stops the source."""
        source = source or LMSource(self.lm)
        voice_vec = self._voice(utt.prompt)
        pause = np.zeros(int(PAUSE_SECONDS * self.sample_rate), dtype=np.float32)
        sent = 0  # frames of the utterance before this sentence, the pauses' included
        for i, plan in enumerate(utt.plans):
            params = utt.sampling.lm_params(seed=utt.sampling.seed + i)
            edge = _Edges(int(EDGE_SECONDS * self.sample_rate), plan.frames * self.codec.hop)
            with torch.no_grad():
                cond = self.condition(plan, utt.prompt)
            dec = decode(self.codec, None if plan.decoder_frames is None else plan.decoder_frames[None], voice_vec,
                         sent=sent)
            sent += plan.frames + len(pause) // self.codec.hop
            try:
                with closing(source(cond, plan.frames, params)) as codes:
                    for c in codes:
                        yield edge(dec.push(c))
                yield edge(dec.flush())
            finally:
                dec.close()
            if i + 1 < len(utt.plans):
                yield pause

    def stream(self, text: str, voice=None, sampling: Sampling | None = None, speed: float = 1.0,
               consent_check: bool = True, registry=None, info: dict | None = None, prompt_text: str | None = None,
               accent: str | None = None, source: CodeSource | None = None,
               decode: Decoding = StepDecoder) -> Iterator[np.ndarray]:
        """A request -> float32 audio chunks as the model makes them (one per few frames), sentence after sentence:
        :meth:`prepare` (the request checked now), then :meth:`render` with ``source`` and ``decode``. ``info`` (a
        dict), if given, receives the voice's consent metadata and accent."""
        utt = self.prepare(text, voice, sampling, speed, consent_check, registry, prompt_text, accent)
        if info is not None:
            info.update(utt.info)
        return self.render(utt, source, decode)

    def synthesize(self, text: str, voice=None, sampling: Sampling | None = None, speed: float = 1.0,
                   watermark: bool = True, consent_check: bool = True, registry=None, prompt_text: str | None = None,
                   accent: str | None = None) -> GeneratedAudio:
        sampling = (sampling or Sampling()).resolved(self.sampling_defaults)
        info: dict = {}
        wav = np.concatenate(list(self.stream(text, voice, sampling, speed, consent_check, registry, info,
                                              prompt_text, accent)))
        meta = {"task": "tts", "text": text, "voice": voice if isinstance(voice, str) or voice is None else "<audio>",
                **info, "model": str(self.folder), "generator": "lm", "precision": self.precision, "speed": speed,
                **sampling.__dict__}
        return finish(wav, self.sample_rate, meta, watermark)

    def generate_row(self, row: dict, dataset: str | os.PathLike, seed: int = 0) -> np.ndarray:
        """Evaluation: speak ``row["text"]`` in the voice of another clip of ``row["speaker"]`` in ``dataset``, given
        that clip's transcript (:func:`voice_prompt_for`), so its accent is detected."""
        # the evaluation data's own speakers: the operator's data, so no consent lookup
        return self.synthesize(row["text"], sampling=Sampling(seed=seed), watermark=False, consent_check=False,
                               **voice_prompt_for(row, dataset)).wav


def voice_prompt_for(row: dict, dataset: str | os.PathLike) -> dict:
    """The voice prompt evaluations give for ``row``: another clip of the same speaker (the next one by id of at
    least the prompt's length, deterministic) and its transcript, as VALL-E is prompted, as :meth:`TTS.synthesize`'s
    ``voice`` (``(wav, sample_rate)``) and ``prompt_text``."""
    rows = [r for r in read_manifest(dataset) if r.get("speaker") == row.get("speaker") and r["id"] != row["id"]]
    if not rows:
        raise InvalidArgumentError(f"speaker {row.get('speaker')!r} has no other clip in {dataset}",
                                   "evaluate on a dataset with several clips per speaker")
    rows.sort(key=lambda r: (r["duration"] < PROMPT_SECONDS, r["id"] <= row["id"], r["id"]))
    return {"voice": load_audio(audio_path(dataset, rows[0])), "prompt_text": rows[0].get("text")}


def _accent_info(given: str | None, found: str | None, source: str, variant: str | None = None) -> dict:
    """What a request's speech is timed in: the ``accent`` given, else the one ``found`` (from the voice's ``source``),
    else the reference voice (``accent`` None); with the voice's own stress timing (``accent_variant``, an espeak-ng
    variant) where it is known."""
    if given is not None:
        return {"accent": given, "accent_from": "given", "accent_variant": variant}
    if found is not None:
        return {"accent": found, "accent_from": source, "accent_variant": variant}
    return {"accent": None, "accent_from": "reference", "accent_variant": None}


def trim_silence(wav: np.ndarray, sample_rate: int, threshold_db: float = -40.0) -> np.ndarray:
    """Cut leading and trailing stretches quieter than ``threshold_db`` below the peak (20 ms frames)."""
    n = max(1, int(0.02 * sample_rate))
    frames = len(wav) // n
    if frames == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: frames * n].reshape(frames, n) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / (rms.max() + 1e-12)) > threshold_db)[0]
    if loud.size == 0:
        return wav[:0]
    return wav[loud[0] * n: (loud[-1] + 1) * n]


class _Edges:
    """Short fades at a sentence's first and last samples (``total`` samples long), applied chunk by chunk."""

    def __init__(self, n: int, total: int) -> None:
        self.n, self.total, self.pos = n, total, 0
        self.ramp = np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n).astype(np.float32) ** 2

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        chunk = chunk.astype(np.float32, copy=True)
        idx = self.pos + np.arange(len(chunk))
        head = idx < self.n
        chunk[head] *= self.ramp[idx[head]]
        tail = idx >= self.total - self.n
        chunk[tail] *= self.ramp[np.clip(self.total - 1 - idx[tail], 0, self.n - 1)]
        self.pos += len(chunk)
        return chunk
