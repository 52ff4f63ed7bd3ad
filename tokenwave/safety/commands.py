"""`tokenwave voices add|list|revoke|optout` and `tokenwave detect`, registered on the main CLI app."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

voices_app = typer.Typer(help="Voice-consent registry: who agreed to be cloned, and who opted out.", no_args_is_help=True)
console = Console()
REGISTRY_HELP = "Registry file (default: $TOKENWAVE_VOICES or ~/.local/share/tokenwave/voices.sqlite)."
ENCODER_HELP = "Speaker encoder checkpoint folder (default: checkpoints/eval/speaker)."
EMBED_RATE = 16000


def _registry(registry: Optional[Path], encoder: Optional[Path]):
    """The registry file (default: the user's) with the speaker encoder at ``encoder`` (default: the shipped one)."""
    from tokenwave.safety.consent import VoiceRegistry  # lazy: keeps --help fast (numpy)

    enc = None
    if encoder is not None:
        from tokenwave.eval.speaker import load_speaker_encoder  # lazy: keeps --help free of torch

        enc = load_speaker_encoder(encoder)
    return VoiceRegistry(registry, enc)


def _audio(path: Path):
    """Audio file -> float32 [N] mono at 16 kHz, the speaker encoder's rate."""
    from tokenwave.audio import load_audio  # lazy: keeps --help fast (scipy, soundfile)

    return load_audio(path, EMBED_RATE)[0]


@voices_app.command("add")
def voices_add(
    name: str = typer.Argument(..., help="Name of the voice (used as `voice: NAME` in TTS)."),
    audio: Path = typer.Argument(..., help="Reference recording of the speaker."),
    consent: str = typer.Option(..., help="The speaker's consent statement, quoted."),
    recorded_by: str = typer.Option(..., help="Who recorded the consent."),
    date: Optional[str] = typer.Option(None, help="Date of the consent, YYYY-MM-DD (default: today)."),
    registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP),
    encoder: Optional[Path] = typer.Option(None, help=ENCODER_HELP),
) -> None:
    """Register a consented voice (refused when the audio matches an opted-out speaker)."""
    with _registry(registry, encoder) as reg:
        rec = reg.add(name, _audio(audio), EMBED_RATE, consent, recorded_by, date)
    console.print(f"added voice {rec.name!r} (consent {rec.date}, recorded by {rec.recorded_by}, sha256 {rec.audio_sha256[:12]})")


@voices_app.command("list")
def voices_list(
    registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List consented voices and opted-out speakers."""
    from tokenwave.safety.consent import VoiceRegistry  # lazy: keeps --help fast (numpy)

    with VoiceRegistry(registry) as reg:
        voices, optouts = [v.as_dict() for v in reg.voices()], reg.optouts()
    if as_json:
        typer.echo(json.dumps({"voices": voices, "optouts": optouts}, indent=2))
        return
    table = Table(title="voices")
    for col in ("name", "status", "date", "recorded by", "consent"):
        table.add_column(col)
    for v in voices:
        table.add_row(v["name"], v["status"], v["date"], v["recorded_by"], v["consent"][:60])
    console.print(table)
    table = Table(title="opted out")
    for col in ("name", "date", "reason"):
        table.add_column(col)
    for o in optouts:
        table.add_row(o["name"], o["date"], o["reason"])
    console.print(table)


@voices_app.command("revoke")
def voices_revoke(
    name: str = typer.Argument(..., help="Voice to revoke."),
    reason: str = typer.Option("consent withdrawn", help="Why."),
    registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP),
) -> None:
    """Revoke a voice's consent: prompts matching it are refused from now on."""
    from tokenwave.safety.consent import VoiceRegistry  # lazy: keeps --help fast (numpy)

    with VoiceRegistry(registry) as reg:
        reg.revoke(name, reason)
    console.print(f"revoked {name!r}")


@voices_app.command("optout")
def voices_optout(
    name: str = typer.Argument(..., help="The speaker's name."),
    audio: Path = typer.Argument(..., help="A recording of the speaker."),
    reason: str = typer.Option("asked not to be cloned", help="Why."),
    registry: Optional[Path] = typer.Option(None, help=REGISTRY_HELP),
    encoder: Optional[Path] = typer.Option(None, help=ENCODER_HELP),
) -> None:
    """Block a speaker: prompts matching them are refused even when a consent record exists."""
    with _registry(registry, encoder) as reg:
        reg.optout(name, _audio(audio), EMBED_RATE, reason)
    console.print(f"opted out {name!r}")


def detect(
    path: Path = typer.Argument(..., help="Audio file to check (any common format; excerpts of 1 s or more work)."),
    key: Optional[str] = typer.Option(None, help="Watermark key (default: tokenwave's)."),
) -> None:
    """Report whether a file carries the tokenwave watermark, with its p-value (JSON)."""
    from tokenwave.audio import load_audio  # lazy: keeps --help fast (scipy, soundfile)
    from tokenwave.safety.watermark import DEFAULT_KEY, P_THRESHOLD, detect_watermark  # lazy: keeps --help fast (scipy)

    wav, sr = load_audio(path)
    r = detect_watermark(wav, sr, key=key or DEFAULT_KEY)
    typer.echo(json.dumps({"file": str(path), "present": r.present, "p_value": float(f"{r.p_value:.3g}"),
                           "score": round(r.score, 2), "confidence": round(1.0 - r.p_value, 6),
                           "threshold_p": P_THRESHOLD, "seconds": round(len(wav) / sr, 2)}))


def register(app: typer.Typer) -> None:
    """Add ``tokenwave detect`` and ``tokenwave voices add|list|revoke|optout``."""
    app.command("detect")(detect)
    app.add_typer(voices_app, name="voices")
