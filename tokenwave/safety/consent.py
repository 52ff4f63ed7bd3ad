"""Voice-consent registry and opt-out list (SQLite), checked before any TTS with a voice prompt.

A *voice* is a consent record: name, the consent statement, its date, who recorded it, and the SHA-256 and
speaker embedding of the reference audio. An *opt-out* is a speaker who asked not to be cloned: a name, a
reason, and the embedding of their audio. A voice prompt is allowed when its embedding matches an active voice
(cosine >= ``threshold``) and matches no opted-out speaker; an opt-out wins over a consent record.

The registry takes any speaker encoder with ``.embed(wav, sr) -> unit-norm np.ndarray`` (the project's is
``tokenwave.eval.speaker.load_speaker_encoder()``); the encoder's name and embedding size are stored, and a
registry refuses embeddings of another size. Default location: ``$TOKENWAVE_VOICES`` or
``~/.local/share/tokenwave/voices.sqlite``.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from tokenwave.errors import InvalidArgumentError, TokenwaveError

MATCH_THRESHOLD = 0.75  # cosine; calibrate per encoder with equal_error_rate on held-out speakers
OPTOUT_THRESHOLD = 0.70  # a little stricter than a match: a borderline opted-out voice is blocked
# A refusal names no registered person and gives no score: a score would be a gradient to climb, a name a leak.
NO_CONSENT = "the voice prompt matches no consented voice"
OPTED_OUT = "the voice is on the opt-out list"


class ConsentError(TokenwaveError):
    """A voice prompt may not be used."""


class NoConsentError(ConsentError):
    pass


class OptedOutVoiceError(ConsentError):
    pass


class VoiceRegistryError(TokenwaveError):
    """The registry itself cannot be used as asked (unknown name, duplicate, other encoder)."""


class SpeakerEmbedder(Protocol):
    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray: ...


@dataclass(frozen=True)
class VoiceRecord:
    name: str
    consent: str
    date: str
    recorded_by: str
    audio_sha256: str
    status: str  # "active" or "revoked"
    revoked_reason: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ConsentCheck:
    """What the check found: ``allowed``; the best consented ``voice`` and its ``similarity``; the opted-out
    speaker matched, if any; ``checked`` is False when the operator disabled the check (recorded in metadata)."""

    allowed: bool
    voice: str | None
    similarity: float
    optout: str | None = None
    optout_similarity: float = -1.0
    checked: bool = True

    def as_metadata(self) -> dict:
        return {"consent_checked": self.checked, "consent_voice": self.voice,
                "consent_similarity": round(self.similarity, 4), "optout_match": self.optout}


def default_registry_path() -> Path:
    env = os.environ.get("TOKENWAVE_VOICES")
    return Path(env) if env else Path.home() / ".local" / "share" / "tokenwave" / "voices.sqlite"


def audio_sha256(wav: np.ndarray) -> str:
    """Hash of the reference samples (float32, as loaded), so the same recording is recognised at any path."""
    return hashlib.sha256(np.ascontiguousarray(wav, dtype=np.float32).tobytes()).hexdigest()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS voices (
  name TEXT PRIMARY KEY, consent TEXT NOT NULL, date TEXT NOT NULL, recorded_by TEXT NOT NULL,
  audio_sha256 TEXT NOT NULL, embedding BLOB NOT NULL, status TEXT NOT NULL DEFAULT 'active',
  revoked_reason TEXT, created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS optouts (
  name TEXT PRIMARY KEY, reason TEXT NOT NULL, date TEXT NOT NULL, audio_sha256 TEXT NOT NULL,
  embedding BLOB NOT NULL);
"""


def _unit(e: np.ndarray) -> np.ndarray:
    e = np.asarray(e, dtype=np.float32).reshape(-1)
    n = float(np.linalg.norm(e))
    if not np.isfinite(n) or n == 0:
        raise InvalidArgumentError("the speaker encoder returned a zero or invalid embedding",
                                   "check that the reference audio holds speech (not silence)")
    return e / n


class VoiceRegistry:
    """``VoiceRegistry(path, encoder)``: ``add``, ``revoke``, ``optout``, ``voices``, ``optouts``, ``check``."""

    def __init__(self, path: str | os.PathLike | None = None, encoder: SpeakerEmbedder | None = None,
                 encoder_name: str | None = None, threshold: float = MATCH_THRESHOLD) -> None:
        self.threshold = threshold
        self.optout_threshold = threshold - (MATCH_THRESHOLD - OPTOUT_THRESHOLD)
        self.path = Path(path) if path else default_registry_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._encoder = encoder
        self.encoder_name = encoder_name or (type(encoder).__name__ if encoder is not None else None)
        self.db = sqlite3.connect(self.path)
        self.db.executescript(_SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "VoiceRegistry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def encoder(self) -> SpeakerEmbedder:
        if self._encoder is None:
            # lazy: the speaker encoder (torch) loads when a voice is checked, which keeps --help free of torch
            from tokenwave.eval.speaker import load_speaker_encoder

            self._encoder = load_speaker_encoder()
            self.encoder_name = "tokenwave.eval.speaker (checkpoints/eval/speaker)"
        return self._encoder

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        e = _unit(self.encoder.embed(np.asarray(wav, dtype=np.float32), sr))
        row = self.db.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('dim', ?)", (str(len(e)),))
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('encoder', ?)", (str(self.encoder_name),))
            self.db.commit()
        elif int(row[0]) != len(e):
            raise VoiceRegistryError(f"{self.path} holds {row[0]}-d embeddings; this encoder gives {len(e)}-d",
                                     "use the speaker encoder the registry was built with, or a new registry")
        return e

    # --- consent records -------------------------------------------------------------------------------
    def add(self, name: str, wav: np.ndarray, sr: int, consent: str, recorded_by: str,
            date: str | None = None) -> VoiceRecord:
        """Register a consented voice from its reference audio. Refuses an empty consent statement, a taken
        name, and audio matching an opted-out speaker."""
        name, consent, recorded_by = name.strip(), consent.strip(), recorded_by.strip()
        if not name:
            raise InvalidArgumentError("a voice needs a name", "pass a short name such as `alice`")
        if len(consent) < 10:
            raise InvalidArgumentError(f"the consent statement for {name!r} is missing or too short",
                                       "quote the speaker's consent, e.g. 'I, Alice, agree that ... may clone my voice for ...'")
        if not recorded_by:
            raise InvalidArgumentError("who recorded the consent is missing", "pass --recorded-by NAME")
        date = _check_date(date or _dt.date.today().isoformat())
        if self._voice_row(name) is not None:
            raise VoiceRegistryError(f"a voice named {name!r} is already registered",
                                     "pick another name, or revoke the old record first")
        e = self.embed(wav, sr)
        optout, sim = self._best(e, "optouts")
        if optout is not None and sim >= self.optout_threshold:
            raise OptedOutVoiceError(OPTED_OUT, "this voice may not be registered or cloned")
        self.db.execute("INSERT INTO voices VALUES (?, ?, ?, ?, ?, ?, 'active', NULL, ?)",
                        (name, consent, date, recorded_by, audio_sha256(wav), e.tobytes(), _now()))
        self.db.commit()
        return self.voice(name)

    def revoke(self, name: str, reason: str = "consent withdrawn") -> VoiceRecord:
        if self._voice_row(name) is None:
            raise VoiceRegistryError(f"no voice named {name!r}", "see `tokenwave voices list`")
        self.db.execute("UPDATE voices SET status='revoked', revoked_reason=? WHERE name=?", (reason, name))
        self.db.commit()
        return self.voice(name)

    def voice(self, name: str) -> VoiceRecord:
        row = self._voice_row(name)
        if row is None:
            raise VoiceRegistryError(f"no voice named {name!r}", "see `tokenwave voices list`")
        return VoiceRecord(*row)

    def voices(self) -> list[VoiceRecord]:
        rows = self.db.execute("SELECT name, consent, date, recorded_by, audio_sha256, status, revoked_reason "
                               "FROM voices ORDER BY name").fetchall()
        return [VoiceRecord(*r) for r in rows]

    def _voice_row(self, name: str):
        return self.db.execute("SELECT name, consent, date, recorded_by, audio_sha256, status, revoked_reason "
                               "FROM voices WHERE name=?", (name,)).fetchone()

    # --- opt-outs --------------------------------------------------------------------------------------
    def optout(self, name: str, wav: np.ndarray, sr: int, reason: str, date: str | None = None) -> None:
        """Block a speaker: any prompt (or new consent record) matching their audio is refused. A consent record
        of the same speaker stays but no longer allows cloning."""
        if not name.strip():
            raise InvalidArgumentError("an opt-out needs a name", "pass the speaker's name")
        e = self.embed(wav, sr)
        self.db.execute("INSERT OR REPLACE INTO optouts VALUES (?, ?, ?, ?, ?)",
                        (name.strip(), reason.strip() or "opted out", _check_date(date or _dt.date.today().isoformat()),
                         audio_sha256(wav), e.tobytes()))
        self.db.commit()

    def optouts(self) -> list[dict]:
        rows = self.db.execute("SELECT name, reason, date, audio_sha256 FROM optouts ORDER BY name").fetchall()
        return [dict(zip(("name", "reason", "date", "audio_sha256"), r)) for r in rows]

    # --- the check -------------------------------------------------------------------------------------
    def _best(self, e: np.ndarray, table: str) -> tuple[str | None, float]:
        where = " WHERE status='active'" if table == "voices" else ""
        rows = self.db.execute(f"SELECT name, embedding FROM {table}{where}").fetchall()
        if not rows:
            return None, -1.0
        names = [r[0] for r in rows]
        mat = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
        if mat.shape[1] != len(e):
            raise VoiceRegistryError(f"{self.path} holds {mat.shape[1]}-d embeddings; this encoder gives {len(e)}-d",
                                     "use the speaker encoder the registry was built with, or a new registry")
        sims = mat @ e
        i = int(np.argmax(sims))
        return names[i], float(sims[i])

    def match(self, wav: np.ndarray, sr: int, threshold: float | None = None) -> ConsentCheck:
        """Compare a prompt with every active voice and every opt-out; never raises for a refusal."""
        threshold = self.threshold if threshold is None else threshold
        e = self.embed(wav, sr)
        voice, sim = self._best(e, "voices")
        optout, osim = self._best(e, "optouts")
        blocked = optout is not None and osim >= min(threshold, self.optout_threshold)
        allowed = voice is not None and sim >= threshold and not blocked
        return ConsentCheck(allowed, voice, sim, optout if blocked else None, osim)

    def check(self, wav: np.ndarray, sr: int, threshold: float | None = None) -> ConsentCheck:
        """Allow a voice prompt or raise :class:`OptedOutVoiceError` / :class:`NoConsentError`."""
        threshold = self.threshold if threshold is None else threshold
        result = self.match(wav, sr, threshold)
        if result.optout is not None:
            raise OptedOutVoiceError(OPTED_OUT, "use another voice; an opt-out overrides any consent record")
        if not result.allowed:
            raise NoConsentError(NO_CONSENT,
                                 "register the speaker with `tokenwave voices add NAME AUDIO --consent '...'`, "
                                 "or (operator only) disable the check with --no-consent-check")
        return result


def check_voice_prompt(wav: np.ndarray, sr: int, registry: VoiceRegistry | None = None, enabled: bool = True,
                       threshold: float | None = None) -> ConsentCheck:
    """What a TTS pipeline calls before using a voice prompt: the registry's verdict, or, when the operator
    disabled the check, an unchecked pass whose metadata says so."""
    if not enabled:
        return ConsentCheck(True, None, -1.0, checked=False)
    registry = registry or VoiceRegistry()
    return registry.check(wav, sr, threshold)


def _check_date(date: str) -> str:
    try:
        return _dt.date.fromisoformat(str(date)).isoformat()
    except ValueError:
        raise InvalidArgumentError(f"{date!r} is not a date", "use YYYY-MM-DD") from None


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
