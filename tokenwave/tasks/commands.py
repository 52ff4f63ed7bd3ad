"""``tokenwave tts|music|sfx``: the task commands, registered on the main CLI app."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console()


def _sampling(seed: int, temperature: Optional[float], top_k: Optional[int], top_p: Optional[float],
              cfg: Optional[float], steps: Optional[int], solver: Optional[str] = None, cfg_until: Optional[float] = None):
    from tokenwave.tasks import Sampling  # lazy: keeps --help free of torch

    return Sampling(seed=seed, temperature=temperature, top_k=top_k, top_p=top_p, cfg_scale=cfg, steps=steps,
                    solver=solver, cfg_until=cfg_until)


def _write_output(result, out: Path) -> None:
    result.save(out)
    meta = result.metadata
    console.print(f"wrote {out} ({result.duration:.2f} s, {result.sample_rate} Hz"
                  f"{', watermarked' if meta.get('watermark') else ''})"
                  + (f"; tags: {', '.join(meta['tags'])}" if meta.get("tags") else "")
                  + (f" ({', '.join(meta['tags_from_captions'])} from the nearest training captions)"
                     if meta.get("tags_from_captions") else "")
                  + (f"; nearest training captions: {'; '.join(f'{c!r} ({s:.2f})' for c, s in meta['nearest_captions'])}"
                     if meta.get("nearest_captions") else "")
                  + (f"; accent: {meta['accent']} ({_ACCENT_FROM.get(meta.get('accent_from'), '')})"
                     if meta.get("accent") else ""))


def _generate(task, prompt: str, duration: float, sampling, **kwargs):
    """``task.generate(prompt, duration, sampling, **kwargs)`` under a progress bar over the seconds made (per token-LM
    step, per flow window: long pieces slide windows past the trained length)."""
    fps = task.frame_rate
    with Progress(TextColumn(f"{task.task}"), BarColumn(), TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
        job = bar.add_task(task.task, total=max(float(duration), 0.0))

        def told(done: int, total: int) -> None:
            bar.update(job, completed=done / fps, total=total / fps)

        return task.generate(prompt, duration, sampling, progress=told, **kwargs)


_ACCENT_FROM = {"given": "as asked", "voice name": "the voice's own", "prompt": "detected in the voice prompt"}


_SEED = typer.Option(0, help="Random seed: the same seed and inputs give the same audio.")
_DEFAULT = " Default: the model's for the request (generators.json), else {}."
_TEMP = typer.Option(None, min=0.0, help="Sampling temperature (0 = greedy)." + _DEFAULT.format(0.9))
_TOPK = typer.Option(None, min=0, help="Sample from the k most likely tokens (0 = all)." + _DEFAULT.format(100))
_TOPP = typer.Option(None, min=0.0, max=1.0, help="Nucleus sampling mass (0 = off)." + _DEFAULT.format(0))
_CFG = typer.Option(None, min=0.0, help="Classifier-free guidance scale (1 = off, 0 = unconditional)."
                    + _DEFAULT.format(2))
_STEPS = typer.Option(None, min=1, max=256, help="Sampling steps (flow generator)." + _DEFAULT.format(16))
_SOLVER = typer.Option(None, help="ODE solver (flow generator): euler (1 model call per step) or heun (2)."
                       + _DEFAULT.format("euler"))
_CFG_UNTIL = typer.Option(None, help="Flow generator: guide the steps at times t <= this only "
                          "(0 noise .. 1 data; the later steps run unguided)." + _DEFAULT.format(1))
_GENERATOR = typer.Option(None, help="Generator: lm (token-AR) or flow (flow matching); default: the model's "
                          "measured better one (generators.json beside it).")
_WM = typer.Option(True, "--watermark/--no-watermark", help="Embed the inaudible watermark (recorded in OUT.json).")
_TAG = typer.Option(None, "--tag", metavar="FIELD=VALUE", help="A tag control, field=value (repeatable; e.g. --tag key=D --tag tempo=fast): "
                   "replaces what the prompt says of that field; field= drops it. --list-tags shows them.")
_LIST_TAGS = typer.Option(False, "--list-tags", help="Print the tag fields and values the model takes, and exit.")


def _list_tags(task) -> None:
    for f, values in task.tag_fields().items():
        console.print(f"[bold]{f}[/bold]: {', '.join(values)}", highlight=False)


def tts(
    text: str = typer.Argument("", help="The text to speak."),
    out: Path = typer.Option(Path("tts.wav"), "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    voice: Optional[str] = typer.Option(None, help="A built-in voice name or a recording (>= 3 s) of the voice."),
    list_voices: bool = typer.Option(False, "--list-voices", help="Print the built-in voices and exit."),
    prompt_text: Optional[str] = typer.Option(None, "--prompt-text",
                                              help="The words the --voice recording says: the speech is then timed "
                                                   "in the recording's accent (detected; about 2 s)."),
    accent: Optional[str] = typer.Option(None, help="The English accent to time the speech in, whatever the voice "
                                                    "(default: a built-in voice's own, a recording's with "
                                                    "--prompt-text, else en-us)."),
    list_accents: bool = typer.Option(False, "--list-accents", help="Print the accents --accent takes and exit."),
    model: Optional[Path] = typer.Option(None, help="TTS checkpoint folder (default: checkpoints/tts)."),
    speed: float = typer.Option(1.0, help="Speaking rate (0.5-2)."),
    generator: Optional[str] = typer.Option(None, help="Generator: lm (token-AR; the only one for speech)."),
    precision: Optional[str] = typer.Option(None, help="The token LM's weights at inference: fp32 (as trained) or "
                                            "int8 (faster; its Whisper CER beside fp32's in benchmarks/results/"
                                            "tts_precision.json). Default: the model's."),
    seed: int = _SEED, temperature: Optional[float] = _TEMP, top_k: Optional[int] = _TOPK, top_p: Optional[float] = _TOPP,
    cfg: Optional[float] = _CFG,
    watermark: bool = _WM,
    consent_check: bool = typer.Option(True, "--consent-check/--no-consent-check",
                                       help="Refuse a recording that matches no consented voice (operator only: disable)."),
) -> None:
    """Speak TEXT in a voice (a built-in one or a 3-second recording of a consented voice)."""
    from tokenwave.tasks import load_task  # lazy: keeps --help free of torch

    if list_accents:
        from tokenwave.speech import accents  # lazy: keeps --help free of torch

        console.print("\n".join(accents()))
        return
    task = load_task("tts", model, generator=generator, precision=precision)
    if list_voices:
        console.print("\n".join(task.voices))
        return
    result = task.synthesize(text, voice, _sampling(seed, temperature, top_k, top_p, cfg, None), speed, watermark,
                             consent_check, prompt_text=prompt_text, accent=accent)
    _write_output(result, out)


def music(
    prompt: str = typer.Argument("", help='What to play, e.g. "lively irish fiddle reel in D major".'),
    out: Path = typer.Option(Path("music.wav"), "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    duration: float = typer.Option(10.0, help="Seconds to render (up to 300: past the trained window, windows "
                                                  "continue each other)."),
    melody: Optional[Path] = typer.Option(None, help="A tune to follow: a MIDI file or a recording."),
    continue_from: Optional[Path] = typer.Option(None, "--continue", help="A clip to continue from its end."),
    model: Optional[Path] = typer.Option(None, help="Music checkpoint folder (default: checkpoints/music)."),
    generator: Optional[str] = _GENERATOR,
    seed: int = _SEED, temperature: Optional[float] = _TEMP, top_k: Optional[int] = _TOPK, top_p: Optional[float] = _TOPP,
    cfg: Optional[float] = _CFG,
    steps: Optional[int] = _STEPS, solver: Optional[str] = _SOLVER, cfg_until: Optional[float] = _CFG_UNTIL,
    watermark: bool = _WM, tag: Optional[list[str]] = _TAG, list_tags: bool = _LIST_TAGS,
) -> None:
    """Render music from a text prompt (genre, instrument, tempo, key), optionally following a melody."""
    from tokenwave.tasks import load_task  # lazy: keeps --help free of torch

    task = load_task("music", model, generator=generator)
    if list_tags:
        return _list_tags(task)
    result = _generate(task, prompt, duration, _sampling(seed, temperature, top_k, top_p, cfg, steps, solver, cfg_until),
                       melody=str(melody) if melody else None,
                       continue_from=str(continue_from) if continue_from else None, watermark=watermark, tags=tag)
    _write_output(result, out)


def sfx(
    prompt: str = typer.Argument("", help='The sound, e.g. "heavy rain on a tin roof with distant thunder".'),
    out: Path = typer.Option(Path("sfx.wav"), "--out", "-o", help="Audio file to write (.wav, .flac, .ogg)."),
    duration: float = typer.Option(5.0, help="Seconds to render (up to 300)."),
    model: Optional[Path] = typer.Option(None, help="Sound-effects checkpoint folder (default: checkpoints/sfx)."),
    generator: Optional[str] = _GENERATOR,
    seed: int = _SEED, temperature: Optional[float] = _TEMP, top_k: Optional[int] = _TOPK, top_p: Optional[float] = _TOPP,
    cfg: Optional[float] = _CFG,
    steps: Optional[int] = _STEPS, solver: Optional[str] = _SOLVER, cfg_until: Optional[float] = _CFG_UNTIL,
    watermark: bool = _WM, tag: Optional[list[str]] = _TAG, list_tags: bool = _LIST_TAGS,
) -> None:
    """Render a sound effect from a text prompt."""
    from tokenwave.tasks import load_task  # lazy: keeps --help free of torch

    task = load_task("sfx", model, generator=generator)
    if list_tags:
        return _list_tags(task)
    result = _generate(task, prompt, duration, _sampling(seed, temperature, top_k, top_p, cfg, steps, solver, cfg_until),
                       watermark=watermark, tags=tag)
    _write_output(result, out)


def register(app: typer.Typer) -> None:
    for fn in (tts, music, sfx):
        app.command()(fn)
