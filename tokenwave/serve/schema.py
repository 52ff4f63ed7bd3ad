"""Request bodies of the server, with a limit on every field (they also make the OpenAPI schema)."""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from tokenwave.tasks.base import MAX_DURATION, MAX_TEXT_CHARS

VOICE_NAME = r"^[A-Za-z0-9_.+\-]{1,64}$"
MAX_PROMPT_AUDIO_B64 = 2_000_000  # characters of base64 (about 1.5 MB of audio file)
ACCENT_NAME = r"^[a-z0-9\-]{2,40}$"
MAX_VOICE_TEXT = 1000
#: a tag control, field=value (the values a model takes: GET /v1/models)
TagControl = Annotated[str, Field(min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_\-]+=[A-Za-z0-9 #_.\-]*$")]
_TAGS = Field(None, max_length=16, description='Tag controls over what the prompt says, e.g. ["key=D", '
              '"tempo=fast"] (each replaces its field; "field=" drops it). Values: GET /v1/models.')


_MEASURED = " Unset: the model's measured default (its generators.json), else {}."


class SamplingFields(BaseModel):
    """The sampling controls of every request; one left out takes the model's measured default, as on the CLI."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, ge=0, le=2**31 - 1, description="The same seed and inputs give the same audio.")
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0, description="0 = greedy." + _MEASURED.format(0.9))
    top_k: Optional[int] = Field(None, ge=0, le=4096,
                                 description="Sample from the k most likely tokens (0 = all)." + _MEASURED.format(100))
    top_p: Optional[float] = Field(None, ge=0.0, le=1.0, description="Nucleus mass (0 = off)." + _MEASURED.format(0))
    cfg_scale: Optional[float] = Field(None, ge=0.0, le=10.0,
                                       description="Classifier-free guidance (1 = off)." + _MEASURED.format(2))


class TTSRequest(SamplingFields):
    text: str = Field(..., min_length=1, max_length=MAX_TEXT_CHARS, description="The words to speak.")
    voice: Optional[str] = Field(None, pattern=VOICE_NAME, description="A built-in voice (GET /v1/models).")
    voice_audio: Optional[str] = Field(
        None, max_length=MAX_PROMPT_AUDIO_B64,
        description="Instead of `voice`: base64 of a WAV/FLAC/OGG recording (1.5-30 s) of a consented voice.")
    voice_text: Optional[str] = Field(
        None, min_length=1, max_length=MAX_VOICE_TEXT,
        description="With voice_audio: the words the recording says; the speech is then timed in its accent.")
    accent: Optional[str] = Field(None, pattern=ACCENT_NAME,
                                  description="The English accent to time the speech in (e.g. en-gb-x-rp), whatever "
                                              "the voice; unset: the built-in voice's own, or the recording's.")
    speed: float = Field(1.0, ge=0.5, le=2.0, description="Speaking rate.")


class TaggedRequest(SamplingFields):
    prompt: str = Field(..., min_length=1, max_length=500, description='e.g. "heavy rain on a tin roof".')
    duration: float = Field(5.0, gt=0.0, le=MAX_DURATION, description="Seconds (the server may allow fewer).")
    tags: Optional[list[TagControl]] = _TAGS


class FileFormat(BaseModel):
    format: Literal["wav", "ogg"] = Field("wav", description="wav (PCM16) or ogg (Opus).")


class TTSFileRequest(TTSRequest, FileFormat):
    pass


class TaggedFileRequest(TaggedRequest, FileFormat):
    pass


class StreamRequest(SamplingFields):
    """The first (and only) text message of a WebSocket ``/v1/stream`` session."""

    task: Literal["tts", "music", "sfx"]
    format: Literal["pcm16", "opus"] = Field("pcm16", description="Binary frames: PCM16 LE mono, or Ogg/Opus pages.")
    text: Optional[str] = Field(None, min_length=1, max_length=MAX_TEXT_CHARS)
    voice: Optional[str] = Field(None, pattern=VOICE_NAME)
    voice_audio: Optional[str] = Field(None, max_length=MAX_PROMPT_AUDIO_B64)
    voice_text: Optional[str] = Field(None, min_length=1, max_length=MAX_VOICE_TEXT)
    accent: Optional[str] = Field(None, pattern=ACCENT_NAME)
    speed: float = Field(1.0, ge=0.5, le=2.0)
    prompt: Optional[str] = Field(None, min_length=1, max_length=500)
    duration: float = Field(5.0, gt=0.0, le=MAX_DURATION)
    tags: Optional[list[TagControl]] = _TAGS


class ErrorBody(BaseModel):
    error: str
    status: int
