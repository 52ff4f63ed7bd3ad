"""``tokenwave data build|import|stats|align``: build, import and inspect datasets, registered on the main CLI app.

``data build DOMAIN`` dispatches to one builder per domain (:func:`builder`); each builder renders a corpus into
OUT (24 kHz mono audio + manifest.jsonl) and returns the dataset folder."""
from __future__ import annotations

import functools
import json
from enum import Enum
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from tokenwave.errors import InvalidArgumentError

data_app = typer.Typer(help="Build, import and inspect datasets (24 kHz mono + manifest.jsonl).", no_args_is_help=True)
console = Console()


class Domain(str, Enum):
    speech = "speech"
    music = "music"
    sfx = "sfx"
    real_speech = "real-speech"
    real_music = "real-music"
    real_sfx = "real-sfx"


class VoiceSet(str, Enum):
    standard = "standard"
    wide = "wide"


def builder(domain: Domain, voices: VoiceSet, packages: list[str] | None = None, cache: Path | None = None,
            download: bool = True) -> Callable[..., Path]:
    """Domain -> its corpus builder ``build(out, minutes=, seed=, overwrite=, workers=) -> dataset folder``."""
    if domain.value.startswith("real-"):
        from tokenwave.data.real import build_real  # lazy: keeps --help fast (numpy, soundfile)

        if voices is not VoiceSet.standard:
            raise InvalidArgumentError(f"--voices is for synthetic speech, not {domain.value}", "leave --voices out")
        return functools.partial(build_real, domain.value.removeprefix("real-"), packages=packages,
                                 cache=cache, download=download)
    if packages or cache is not None:
        raise InvalidArgumentError(f"--packages and --cache are for real recordings, not {domain.value}",
                                   "build real-speech, real-music or real-sfx, or leave them out")
    if voices is not VoiceSet.standard and domain is not Domain.speech:
        raise InvalidArgumentError(f"--voices {voices.value} is for speech data, not {domain.value}",
                                   "leave --voices out for music and sfx")
    if domain is Domain.speech:
        from tokenwave.data.speech import build_speech  # lazy: keeps --help fast (numpy, soundfile)

        return functools.partial(build_speech, voices=voices.value)
    if domain is Domain.music:
        from tokenwave.data.music import build_music  # lazy: keeps --help fast (numpy, soundfile)

        return build_music
    from tokenwave.data.sfx import build_sfx  # lazy: keeps --help fast (numpy, soundfile)

    return build_sfx


@data_app.command("build")
def data_build(
    domain: Domain = typer.Argument(..., help="Which corpus to build: speech, music or sfx (synthetic), or "
                                    "real-speech, real-music or real-sfx (recordings from Debian packages)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must be new or empty, or pass --overwrite)."),
    minutes: Optional[float] = typer.Option(None, help="Total audio to render, in minutes (default: 2 for synthetic "
                                            "corpora, everything the packages hold for real ones)."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same dataset."),
    workers: int = typer.Option(2, min=1, max=64, help="Parallel render workers."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at --out (only once the new one is complete)."),
    voices: VoiceSet = typer.Option(VoiceSet.standard, help="Speech only: `standard` (53 speakers) or `wide` (every "
                                    "espeak-ng variant for training, about 15x the speakers; the same held-out test "
                                    "speakers)."),
    packages: Optional[str] = typer.Option(None, help="Real recordings only: comma-separated source packages "
                                           "(default: all of the domain's)."),
    cache: Optional[Path] = typer.Option(None, help="Real recordings only: folder of downloaded and unpacked Debian "
                                         "packages (default: debs/ in $TOKENWAVE_CACHE, else ~/.cache/tokenwave)."),
    download: bool = typer.Option(True, help="Real recordings only: fetch missing packages with apt-get download "
                                  "(--no-download uses the cache alone)."),
) -> None:
    """Render an offline corpus: speech (espeak-ng, flite), music (music21 corpus + FluidSynth) or sfx (procedural);
    or cut one from real recordings in Debian packages (downloaded with apt-get into --cache, nothing installed)."""
    from tokenwave.data.writer import MAX_MINUTES, check_minutes, check_output_dir  # lazy: keeps --help fast (numpy, soundfile)

    if minutes is None:
        minutes = MAX_MINUTES if domain.value.startswith("real-") else 2.0
    check_minutes(minutes)
    names = [p.strip() for p in packages.split(",") if p.strip()] if packages else None
    build = builder(domain, voices, names, cache, download)
    check_output_dir(out, overwrite)
    path = build(out, minutes=minutes, seed=seed, overwrite=overwrite, workers=workers)
    print_stats(path)


@data_app.command("import")
def data_import(
    src: Path = typer.Argument(..., help="Folder of audio files (wav, flac, ogg, mp3, ...; any rate, mono or stereo)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output dataset folder."),
    meta: Optional[Path] = typer.Option(None, help="CSV or JSONL with a `file` column plus caption/text/speaker/tags."),
    domain: str = typer.Option("custom", help="Domain recorded in the manifest: speech, music, sfx or custom."),
    clip_seconds: float = typer.Option(10.0, help="Cut long files (without a transcript) into clips of at most this length."),
    min_seconds: float = typer.Option(1.0, help="Drop clips shorter than this."),
    valid_fraction: float = typer.Option(0.05, help="Fraction of source files for the valid split."),
    test_fraction: float = typer.Option(0.05, help="Fraction of source files held out for the test split."),
    seed: int = typer.Option(0, help="Seed of the split assignment."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at --out."),
) -> None:
    """Import your own audio into the dataset format, so you can train and fine-tune on it."""
    from tokenwave.data.importer import import_audio  # lazy: keeps --help fast (numpy, soundfile)

    report = import_audio(src, out, meta=meta, domain=domain, clip_seconds=clip_seconds, min_seconds=min_seconds,
                          valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed, overwrite=overwrite)
    for f, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {f}: {reason}")
    console.print(f"imported {report.clips} clips ({report.seconds / 60:.1f} min) from {report.files - len(report.skipped)}"
                  f" of {report.files} files; {len(report.skipped)} skipped")
    print_stats(report.out)


@data_app.command("stats")
def data_stats(
    dataset: Path = typer.Argument(..., help="Dataset folder (holding manifest.jsonl)."),
    png: Optional[Path] = typer.Option(None, help="Where to write example spectrograms (default: DATASET/stats.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Print counts, hours per split and speakers/pieces/recipes; write a PNG of example spectrograms."""
    from tokenwave.data.stats import dataset_stats, example_spectrograms  # lazy: keeps --help fast (matplotlib)

    stats = dataset_stats(dataset)
    png_path = example_spectrograms(dataset, png or Path(dataset) / "stats.png")
    stats["png"] = str(png_path)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
    else:
        print_stats(dataset, stats)
        console.print(f"spectrograms: {png_path}")


@data_app.command("align")
def data_align(
    dataset: Path = typer.Option(..., "--data", help="A speech dataset from `tokenwave data build speech`."),
    out: Optional[Path] = typer.Option(None, help="Where to write the alignments (default: DATASET/alignments.jsonl)."),
    min_match: float = typer.Option(0.9, min=0.0, max=1.0, help="Leave out clips whose re-spoken envelope "
                                    "correlates less than this with the clip."),
) -> None:
    """Phone timings of every clip, from the engine that spoke it (espeak-ng events, flite -psdur), for TTS training
    with `tokenwave train tts --alignments`."""
    from tokenwave.data.align import align_dataset  # lazy: keeps --help fast (numpy, soundfile)

    res = align_dataset(dataset, out, min_match)
    console.print(f"aligned {res['aligned']} of {res['rows']} clips ({res['skipped']} left out); wrote {res['path']}")


def print_stats(dataset: Path, stats: dict | None = None) -> None:
    """Print a dataset's clips, hours and mean length per split as a table (``stats`` from ``dataset_stats``)."""
    from tokenwave.data.stats import dataset_stats  # lazy: keeps --help fast (matplotlib)

    stats = stats or dataset_stats(dataset)
    table = Table(title=f"{dataset} ({', '.join(stats['domains'])})")
    extra = sorted({k for s in stats["splits"].values() for k in s if k not in ("clips", "hours", "mean_seconds")})
    for col in ["split", "clips", "hours", "mean s", *extra]:
        table.add_column(col)
    for split, s in stats["splits"].items():
        table.add_row(split, str(s["clips"]), f"{s['hours']:.3f}", f"{s['mean_seconds']:.1f}", *[str(s.get(k, "-")) for k in extra])
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``tokenwave data build|import|stats|align``."""
    app.add_typer(data_app, name="data")
