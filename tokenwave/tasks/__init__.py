"""The three tasks users come for, on the embedded default models (``checkpoints/{tts,music,sfx}``):

>>> from tokenwave.tasks import Pipeline
>>> pipe = Pipeline.load()
>>> pipe.tts("Hello there.", voice="en-us+m3").save("hello.wav")
>>> pipe.music("lively irish fiddle reel in D major", duration=10).save("reel.wav")
>>> pipe.sfx("heavy rain on a tin roof", duration=5).save("rain.wav")

Every output carries a watermark (``watermark=False`` to leave it out; recorded in ``metadata``).
"""
from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from tokenwave.errors import InvalidArgumentError

if TYPE_CHECKING:
    from tokenwave.tasks.base import GeneratedAudio

_LAZY = {"MAX_DURATION": "base", "GeneratedAudio": "base", "MissingModelError": "base", "Sampling": "base",
         "check_duration": "base", "TaggedTask": "tagged", "read_prompt": "tagged", "TTS": "tts",
         "UnknownVoiceError": "tts", "split_sentences": "tts"}


def __getattr__(name: str):
    """The pieces load on first use, so ``tokenwave --help`` does not import torch."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"tokenwave.tasks.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'tokenwave.tasks' has no attribute {name!r}")


TASKS = ("tts", "music", "sfx")


def load_task(task: str, model: str | os.PathLike | None = None, codec=None, generator: str | None = None,
              precision: str | None = None):
    """One task's model: ``TTS`` for "tts", ``TaggedTask`` for "music" / "sfx" (``model``: its checkpoint folder,
    default ``checkpoints/<task>``; ``generator``: "lm" or "flow", default the task's own choice). Each has
    ``.sample_rate`` and ``.generate_row(row, dataset, seed)``. ``precision``: the TTS token LM's ("fp32" or "int8";
    None: the TTS default)."""
    if task == "tts":
        if generator not in (None, "lm"):
            raise InvalidArgumentError(f"text-to-speech has no {generator!r} generator",
                                       "use --generator lm (the TTS model is a token LM)")
        from tokenwave.tasks.tts import TTS  # lazy: keeps --help free of torch

        return TTS(model, codec) if precision is None else TTS(model, codec, precision=precision)
    if task in ("music", "sfx") and precision not in (None, "fp32"):
        raise InvalidArgumentError(f"precision {precision!r} is for text-to-speech only", "leave it out for music and sfx")
    if task in ("music", "sfx"):
        from tokenwave.tasks.tagged import TaggedTask  # lazy: keeps --help free of torch

        return TaggedTask(task, model, codec, generator)
    raise InvalidArgumentError(f"unknown task {task!r}", f"use one of {', '.join(TASKS)}")


class Pipeline:
    """All tasks on one codec; each task's model loads on first use."""

    def __init__(self, models: dict[str, str | os.PathLike | None] | None = None, codec=None) -> None:
        from tokenwave.codec import load_codec  # lazy: keeps --help free of torch

        self.models = dict(models or {})  # task -> checkpoint folder (None: the default)
        self.codec = codec if codec is not None else load_codec(None)
        self._loaded: dict[str, object] = {}

    @classmethod
    def load(cls, tts: str | os.PathLike | None = None, music: str | os.PathLike | None = None,
             sfx: str | os.PathLike | None = None, codec: str | os.PathLike | None = None) -> Pipeline:
        from tokenwave.codec import load_codec  # lazy: keeps --help free of torch

        return cls({"tts": tts, "music": music, "sfx": sfx}, load_codec(codec))

    def task(self, name: str):
        if name not in self._loaded:
            self._loaded[name] = load_task(name, self.models.get(name), self.codec)
        return self._loaded[name]

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    def tts(self, text: str, voice=None, seed: int = 0, speed: float = 1.0, watermark: bool = True,
            consent_check: bool = True, prompt_text: str | None = None, accent: str | None = None,
            **sampling) -> GeneratedAudio:
        """``voice``: a built-in voice name or a recording (path or ``(wav, sample_rate)``); ``prompt_text``: the
        words the recording says (its accent then times the speech); ``accent``: an accent to time it in instead."""
        from tokenwave.tasks.base import Sampling  # lazy: keeps --help free of torch

        return self.task("tts").synthesize(text, voice, Sampling(seed=seed, **sampling), speed, watermark, consent_check,
                                           prompt_text=prompt_text, accent=accent)

    def music(self, prompt: str, duration: float = 10.0, seed: int = 0, melody=None, continue_from=None,
              watermark: bool = True, generator: str | None = None, progress=None, tags: list[str] | None = None,
              **sampling) -> GeneratedAudio:
        """``duration``: seconds, up to ``MAX_DURATION`` (300; past the trained window, windows continue each
        other); ``generator``: "lm" or "flow" (default: the model folder's own choice); ``progress(done, total)``:
        told the frames made so far; ``tags``: explicit ``field=value`` controls over what the prompt says
        (``self.task("music").tag_fields()`` lists them); ``sampling``: the fields of :class:`Sampling`
        (temperature, top_k, top_p, cfg_scale, steps, solver, cfg_until)."""
        from tokenwave.tasks.base import Sampling  # lazy: keeps --help free of torch

        return self.task("music").generate(prompt, duration, Sampling(seed=seed, **sampling), melody, continue_from,
                                           watermark, generator, progress, tags=tags)

    def sfx(self, prompt: str, duration: float = 5.0, seed: int = 0, watermark: bool = True,
            generator: str | None = None, progress=None, tags: list[str] | None = None, **sampling) -> GeneratedAudio:
        """As :meth:`music`, without a melody or a clip to continue."""
        from tokenwave.tasks.base import Sampling  # lazy: keeps --help free of torch

        return self.task("sfx").generate(prompt, duration, Sampling(seed=seed, **sampling), None, None, watermark,
                                         generator, progress, tags=tags)


__all__ = ["TASKS", "Pipeline", "load_task", *sorted(_LAZY)]
