"""The evaluation commands: ``tokenwave eval codec|tts|music|sfx`` and ``tokenwave listen``, registered on the main
CLI app by :func:`register`. The eval models are trained by ``tokenwave train speaker|tagger|clap``
(:mod:`tokenwave.train.commands`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

eval_app = typer.Typer(help="Score a model on a dataset split: metrics.json, report.md and PNG plots (offline eval models).",
                       no_args_is_help=True)

DATA_HELP = "Dataset folder (manifest.jsonl); its --split clips are evaluated."
OUT_HELP = "Report folder: metrics.json, report.md, metrics.png, spectrograms.png, audio/<system>/."


def _echo(result: dict, out: Path) -> None:
    typer.echo(json.dumps({"report": str(out / "report.md"), **result}, indent=2, default=float))


@eval_app.command("codec")
def eval_codec(
    data: Path = typer.Option(..., "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
    model: Optional[Path] = typer.Option(None, help="Codec checkpoint folder (default: checkpoints/codec)."),
    kbps: Optional[float] = typer.Option(None, help="Bitrate (default: the codec's highest)."),
    split: str = typer.Option("test", help="train, valid or test."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N clips."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Codec fidelity (mel/STFT distance, SI-SDR, PESQ, STOI) with CER or tag accuracy of original vs resynthesis."""
    from tokenwave.eval.suite import evaluate_codec  # lazy: keeps --help free of torch

    _echo(evaluate_codec(model, data, out, kbps, split, limit, seed), out)


@eval_app.command("tts")
def eval_tts(
    data: Path = typer.Option(Path("data/speech"), "--data", help=DATA_HELP),
    out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
    model: Optional[Path] = typer.Option(None, help="TTS checkpoint folder (default: checkpoints/tts)."),
    split: str = typer.Option("test", help="train, valid or test."),
    limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N clips."),
    seed: int = typer.Option(0, help="Random seed (item i uses seed + i)."),
) -> None:
    """CER/WER (Whisper tiny.en; PocketSphinx beside it), DNSMOS and speaker similarity (Resemblyzer; the project's
    own encoder beside it) of generated speech; the engine's own speech as floor."""
    from tokenwave.eval.suite import evaluate_tts  # lazy: keeps --help free of torch
    from tokenwave.tasks import load_task  # lazy: keeps --help free of torch

    _echo(evaluate_tts(load_task("tts", model), data, out, split, limit, seed, model=model), out)


def _audio_task_command(name: str, default_data: str) -> None:
    def command(
        data: Path = typer.Option(Path(default_data), "--data", help=DATA_HELP),
        out: Path = typer.Option(..., "--out", "-o", help=OUT_HELP),
        model: Optional[Path] = typer.Option(None, help=f"{name} checkpoint folder (default: checkpoints/{name})."),
        split: str = typer.Option("test", help="train, valid or test."),
        limit: Optional[int] = typer.Option(None, min=1, help="Evaluate only the first N clips."),
        seed: int = typer.Option(0, help="Random seed (item i uses seed + i)."),
        generator: Optional[str] = typer.Option(None, help="lm or flow (default: the model folder's default)."),
    ) -> None:
        from tokenwave.eval.suite import evaluate_audio_task  # lazy: keeps --help free of torch
        from tokenwave.tasks import load_task  # lazy: keeps --help free of torch

        task = load_task(name, model, generator=generator)
        _echo(evaluate_audio_task(name, task, data, out, split, limit, seed, model=model), out)

    command.__doc__ = (f"Tag accuracy, KL, FAD (project tagger), CLAP score{' and melody chroma cosine' if name == 'music' else ''}"
                       f" of generated {name}; the codec resynthesis of the references as floor.")
    eval_app.command(name)(command)


_audio_task_command("music", "data/music")
_audio_task_command("sfx", "data/sfx")


def listen(
    pairs: Path = typer.Option(..., "--pairs", help="Folder of systems: PAIRS/<system>/<item>.wav (e.g. an eval report's audio/)."),
    db: Optional[Path] = typer.Option(None, help="SQLite file for the answers (default: PAIRS/listening.sqlite)."),
    host: str = typer.Option("127.0.0.1", help="Address to serve on."),
    port: int = typer.Option(8765, help="Port to serve on."),
    seed: int = typer.Option(0, help="Seed of the trial order and the A/B sides."),
    mode: Optional[str] = typer.Option(None, help="ab (pairs; default with 2+ systems) or mos (rate single items)."),
    summary: bool = typer.Option(False, help="Print the preference rates and MOS (95% CIs) collected so far and exit."),
) -> None:
    """A/B listening page: blinded, randomised pairs (or single items) -> preferences and 1-5 MOS in SQLite."""
    from tokenwave.eval.listen import ListeningTest, serve  # lazy: keeps --help fast (numpy, soundfile)

    test = ListeningTest(pairs, db or pairs / "listening.sqlite", seed=seed, mode=mode)
    if summary:
        typer.echo(json.dumps(test.results(), indent=2))
        return
    typer.echo(f"listening page: http://{host}:{port}/  ({len(test.trials)} trials; Ctrl-C to stop)")
    serve(test, host, port)


def register(app: typer.Typer) -> None:
    """Add ``tokenwave eval codec|tts|music|sfx`` and ``tokenwave listen``."""
    app.add_typer(eval_app, name="eval")
    app.command("listen")(listen)
