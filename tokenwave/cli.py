"""The `tokenwave` command. Every subcommand has --help; errors print one line with the fix and exit 2."""
from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from tokenwave import cli_options as opts
from rich.console import Console
from rich.table import Table

from tokenwave import __version__
from tokenwave.errors import TokenwaveError

app = typer.Typer(help="tokenwave: audio generation on neural codec tokens.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
data_app = typer.Typer(help="Build, import and inspect datasets (24 kHz mono + manifest.jsonl).", no_args_is_help=True)
app.add_typer(data_app, name="data")
train_app = typer.Typer(help="Train models on your datasets (safetensors checkpoints, --resume, torchrun for multi-GPU).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")
codec_app = typer.Typer(help="Encode audio to codes (.twc) or latents, decode them, or measure a round trip.", no_args_is_help=True)
app.add_typer(codec_app, name="codec")
MODEL_HELP = "Codec: a tokenwave checkpoint folder or a local HF EnCodec/DAC/Mimi folder (default: checkpoints/codec)."
console = Console()


class Domain(str, Enum):
    speech = "speech"
    music = "music"
    sfx = "sfx"


class VoiceSet(str, Enum):
    standard = "standard"
    wide = "wide"


@app.command()
def version() -> None:
    """Print the tokenwave version."""
    console.print(__version__)


@data_app.command("build")
def data_build(
    domain: Domain = typer.Argument(..., help="Which corpus to build: speech, music or sfx."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must be new or empty, or pass --overwrite)."),
    minutes: float = typer.Option(2.0, help="Total audio to render, in minutes."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same dataset."),
    workers: int = typer.Option(2, min=1, max=64, help="Parallel render workers."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at --out (only once the new one is complete)."),
    voices: VoiceSet = typer.Option(VoiceSet.standard, help="Speech only: `standard` (53 speakers) or `wide` (every "
                                    "espeak-ng variant for training, about 15x the speakers; the same held-out test "
                                    "speakers)."),
) -> None:
    """Render an offline corpus: speech (espeak-ng, flite), music (music21 corpus + FluidSynth) or sfx (procedural)."""
    import functools

    from tokenwave.data.writer import check_minutes, check_output_dir
    from tokenwave.errors import InvalidArgumentError

    check_minutes(minutes)
    if voices is not VoiceSet.standard and domain is not Domain.speech:
        raise InvalidArgumentError(f"--voices {voices.value} is for speech data, not {domain.value}",
                                   "leave --voices out for music and sfx")
    check_output_dir(out, overwrite)
    if domain is Domain.speech:
        from tokenwave.data.speech import build_speech

        build = functools.partial(build_speech, voices=voices.value)
    elif domain is Domain.music:
        from tokenwave.data.music import build_music as build
    else:
        from tokenwave.data.sfx import build_sfx as build
    path = build(out, minutes=minutes, seed=seed, overwrite=overwrite, workers=workers)
    _print_stats(path)


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
    from tokenwave.data.importer import import_audio

    report = import_audio(src, out, meta=meta, domain=domain, clip_seconds=clip_seconds, min_seconds=min_seconds,
                          valid_fraction=valid_fraction, test_fraction=test_fraction, seed=seed, overwrite=overwrite)
    for f, reason in report.skipped:
        console.print(f"[yellow]skipped[/] {f}: {reason}")
    console.print(f"imported {report.clips} clips ({report.seconds / 60:.1f} min) from {report.files - len(report.skipped)}"
                  f" of {report.files} files; {len(report.skipped)} skipped")
    _print_stats(report.out)


@data_app.command("stats")
def data_stats(
    dataset: Path = typer.Argument(..., help="Dataset folder (holding manifest.jsonl)."),
    png: Optional[Path] = typer.Option(None, help="Where to write example spectrograms (default: DATASET/stats.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON."),
) -> None:
    """Print counts, hours per split and speakers/pieces/recipes; write a PNG of example spectrograms."""
    from tokenwave.data.stats import dataset_stats, example_spectrograms

    stats = dataset_stats(dataset)
    png_path = example_spectrograms(dataset, png or Path(dataset) / "stats.png")
    stats["png"] = str(png_path)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
    else:
        _print_stats(dataset, stats)
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
    from tokenwave.data.align import align_dataset

    res = align_dataset(dataset, out, min_match)
    console.print(f"aligned {res['aligned']} of {res['rows']} clips ({res['skipped']} left out); wrote {res['path']}")


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for the page, audio and images."),
    rebuild: bool = typer.Option(False, help="Rebuild the demo datasets even if present."),
) -> None:
    """Render examples of each domain and write OUT/index.html with players and spectrograms."""
    from tokenwave.demo import render_demo

    index = render_demo(out, rebuild=rebuild)
    console.print(f"open {index.absolute()} in a browser")


def _run_training(name: str, presets: dict, preset: str, device: str, seed: int, make_recipe, out: Path, steps: int,
                  val_every: int, ckpt_every: int, log_every: int, resume: bool, until: Optional[int],
                  threads: int = 0, time_budget: Optional[float] = None, keep_best: bool = False) -> None:
    """Check the preset, set torch's CPU threads (``threads`` > 0), join torchrun's process group if any, seed, run
    the shared trainer, print the last figures."""
    import torch

    from tokenwave.errors import InvalidArgumentError
    from tokenwave.train.trainer import seed_everything, setup_distributed, train

    if threads:
        torch.set_num_threads(threads)

    if preset not in presets:
        raise InvalidArgumentError(f"unknown preset {preset!r}", f"use one of {', '.join(presets)}")
    info = setup_distributed(device)
    seed_everything(seed + info.rank)
    metrics = train(make_recipe(info), out, steps, info, val_every=val_every, ckpt_every=ckpt_every,
                    log_every=log_every, resume=resume, name=name, until=until,
                    time_budget=time_budget, keep_best=keep_best)
    import torch.distributed as dist

    if dist.is_initialized():  # every rank waits for rank 0's last validation and export, then all leave together
        dist.barrier()
        dist.destroy_process_group()
    if info.is_main:
        console.print_json(json.dumps(metrics))


@train_app.command("codec")
def train_codec(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s); repeat --data for several."),
    out: Path = opts.RUN_OUT,
    steps: int = typer.Option(20000, min=1, help="Total optimisation steps."),
    preset: str = typer.Option("default", help="Model size: default or tiny (for tests)."),
    batch_size: int = typer.Option(8, min=1),
    segment: float = typer.Option(1.0, help="Training segment length in seconds."),
    lr: float = typer.Option(5e-4),
    adv_start: int = typer.Option(10000, help="Step at which the adversarial losses switch on."),
    val_every: int = opts.VAL_EVERY,
    ckpt_every: int = opts.CKPT_EVERY,
    log_every: int = opts.LOG_EVERY,
    seed: int = opts.SEED,
    device: str = opts.DEVICE,
    threads: int = opts.THREADS,
    resume: bool = opts.RESUME,
    until: Optional[int] = opts.UNTIL,
    time_budget: Optional[float] = opts.TIME_BUDGET,
    keep_best: bool = opts.KEEP_BEST,
) -> None:
    """Train the neural codec (RVQ, 75 Hz) on one or more datasets."""
    from tokenwave.train.codec import PRESETS, CodecRecipe, CodecTrainConfig

    tcfg = CodecTrainConfig(segment_seconds=segment, batch_size=batch_size, lr=lr, adv_start=adv_start, total_steps=steps)
    _run_training("codec", PRESETS, preset, device, seed,
                  lambda info: CodecRecipe([str(d) for d in data], PRESETS[preset], tcfg, info, seed=seed),
                  out, steps, val_every, ckpt_every, log_every, resume, until, threads, time_budget, keep_best)


@train_app.command("decoder")
def train_decoder(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s) of the domain to decode; repeat --data for several."),
    out: Path = opts.RUN_OUT,
    codec: Optional[Path] = typer.Option(None, help="The codec whose codes it decodes (default: checkpoints/codec); "
                                                    "its encoder and quantizer stay frozen."),
    kbps: float = typer.Option(3.0, help="The bitrate it decodes (the generator's: 3 kbps = 4 codebooks for TTS)."),
    latents: bool = typer.Option(False, "--latents", help="Decode the codec's continuous latents (a flow generator's "
                                                          "output) instead of codes; --kbps is then ignored."),
    init: Optional[Path] = typer.Option(None, help="Start from this decoder (a folder from `tokenwave train decoder`) "
                                                   "instead of the codec's own."),
    alignments: list[Path] = typer.Option([], "--alignments", help="alignments.jsonl of the speech data "
                                          "(`tokenwave data align`): a phone-informed decoder, told each frame's phone."),
    phone_dropout: float = typer.Option(0.1, help="With --alignments: the share of items decoded without phones "
                                                  "(and, with --voice, without a voice)."),
    voice: bool = typer.Option(False, "--voice", help="With --alignments: also told the voice's timbre (the mean code "
                                                      "vector of another clip of the speaker, as TTS gives its prompt's)."),
    steps: int = typer.Option(5000, min=1, help="Total optimisation steps."),
    batch_size: int = typer.Option(12, min=1),
    segment: float = typer.Option(1.0, help="Training segment length in seconds."),
    lr: float = typer.Option(2e-4),
    val_clips: int = typer.Option(16, min=1, help="Validation clips per domain (first 4 s of each)."),
    val_every: int = opts.VAL_EVERY,
    ckpt_every: int = opts.CKPT_EVERY,
    log_every: int = opts.LOG_EVERY,
    seed: int = opts.SEED,
    device: str = opts.DEVICE,
    threads: int = opts.THREADS,
    resume: bool = opts.RESUME,
    until: Optional[int] = opts.UNTIL,
    time_budget: Optional[float] = opts.TIME_BUDGET,
    keep_best: bool = opts.KEEP_BEST,
) -> None:
    """Fine-tune a codec's decoder for one domain and bitrate; the codes (and generators trained on them) stay valid."""
    from tokenwave.codec import load_codec
    from tokenwave.paths import default_checkpoint
    from tokenwave.train.codec import CodecTrainConfig
    from tokenwave.train.decoder import DecoderRecipe

    codec_folder = str(codec) if codec is not None else str(default_checkpoint("codec"))
    n_q = 0 if latents else load_codec(codec_folder).n_q_for_kbps(kbps)
    tcfg = CodecTrainConfig(segment_seconds=segment, batch_size=batch_size, lr=lr, total_steps=steps, warmup=200,
                            val_clips=val_clips)
    _run_training("decoder", {"default": None}, "default", device, seed,
                  lambda info: DecoderRecipe(codec_folder, [str(d) for d in data], n_q, tcfg, info, seed=seed,
                                             init=None if init is None else str(init),
                                             alignments=[str(a) for a in alignments], phone_dropout=phone_dropout,
                                             voice=voice),
                  out, steps, val_every, ckpt_every, log_every, resume, until, threads, time_budget, keep_best)


DECODER_HELP = "A decoder fine-tuned on this codec's codes (`tokenwave train decoder`), e.g. checkpoints/tts/decoder."


def _with_decoder(codec, decoder: Optional[Path], n_q: int):
    """``codec``, or with ``decoder`` a copy decoding with that fine-tuned decoder (checked for ``n_q`` codebooks)."""
    if decoder is None:
        return codec
    from tokenwave.codec.decoders import load_decoder

    return load_decoder(decoder, codec, n_q=n_q)


def _load_for_codec(model: Optional[Path], path: Path, kbps: Optional[float], decoder: Optional[Path] = None):
    import torch

    from tokenwave.audio import load_audio
    from tokenwave.codec import load_codec

    codec = load_codec(model)
    n_q = codec.n_q_for_kbps(kbps) if kbps else codec.n_q
    codec = _with_decoder(codec, decoder, n_q)
    wav, sr = load_audio(path, codec.sample_rate)
    return codec, n_q, torch.from_numpy(wav)[None, None]


@codec_app.command("encode")
def codec_encode(
    src: Path = typer.Argument(..., help="Audio file (any common format and rate; resampled to the codec's rate)."),
    dst: Path = typer.Argument(..., help="Output .twc code file."),
    kbps: Optional[float] = typer.Option(None, help="Bitrate: 1.5, 3 or 6 kbps with the default codec (default: highest)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
) -> None:
    """Encode audio into a .twc code file."""
    from tokenwave.codec.twc import write_twc

    codec, n_q, wav = _load_for_codec(model, src, kbps)
    codes = codec.encode(wav, n_q)
    write_twc(dst, codes, codec.sample_rate, codec.hop, wav.shape[-1], codec.codebook_size)
    console.print(f"{dst}: {codes.shape[1]} codebooks x {codes.shape[2]} frames, {codec.bitrate(n_q) / 1000:g} kbps, "
                  f"{dst.stat().st_size} bytes")


@codec_app.command("decode")
def codec_decode(
    src: Path = typer.Argument(..., help="A .twc file written by `tokenwave codec encode`."),
    dst: Path = typer.Argument(..., help="Output audio file (.wav, .flac or .ogg)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    decoder: Optional[Path] = typer.Option(None, help=DECODER_HELP),
) -> None:
    """Decode a .twc code file back to audio."""
    from tokenwave.audio import save_audio
    from tokenwave.codec import load_codec
    from tokenwave.codec.twc import TwcFormatError, read_twc

    twc = read_twc(src)
    codec = _with_decoder(load_codec(model), decoder, twc.codes.shape[0])
    if twc.sample_rate != codec.sample_rate or twc.hop != codec.hop:
        raise TwcFormatError(f"{src} was made by a {twc.sample_rate} Hz / hop {twc.hop} codec; this one is "
                             f"{codec.sample_rate} Hz / hop {codec.hop}", "decode with the codec that encoded it (--model)")
    wav = codec.decode(twc.codes[None])[0, 0, : twc.num_samples]
    save_audio(dst, wav.numpy(), codec.sample_rate)
    console.print(f"{dst}: {len(wav) / codec.sample_rate:.2f} s at {codec.sample_rate} Hz")


@codec_app.command("roundtrip")
def codec_roundtrip(
    src: Path = typer.Argument(..., help="Audio file to encode and decode."),
    kbps: Optional[float] = typer.Option(None, help="Bitrate (default: highest)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the decoded audio here."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    decoder: Optional[Path] = typer.Option(None, help=DECODER_HELP),
) -> None:
    """Encode and decode a file; print mel distance and SI-SDR against the original."""
    from tokenwave.audio import save_audio
    from tokenwave.codec.losses import mel_distance, si_sdr

    codec, n_q, wav = _load_for_codec(model, src, kbps, decoder)
    rec = codec.reconstruct(wav, n_q)
    result = {"file": str(src), "kbps": codec.bitrate(n_q) / 1000, "codebooks": n_q,
              "mel_distance": round(mel_distance(rec, wav, codec.sample_rate), 4),
              "si_sdr_db": round(float(si_sdr(rec, wav)[0]), 2)}
    if out:
        save_audio(out, rec[0, 0].numpy(), codec.sample_rate)
        result["out"] = str(out)
    typer.echo(json.dumps(result))


@codec_app.command("tokenize")
def codec_tokenize(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s); repeat --data for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokens folder to write."),
    kbps: Optional[float] = typer.Option(None, help="Bitrate (default: highest)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing tokens folder."),
) -> None:
    """Encode every clip of the datasets once, so generators train on codes."""
    from tokenwave.codec import load_codec
    from tokenwave.data.tokens import tokenize

    codec = load_codec(model)
    n_q = codec.n_q_for_kbps(kbps) if kbps else codec.n_q
    path = tokenize([str(d) for d in data], out, codec, n_q, codec_name=str(model or "checkpoints/codec"), overwrite=overwrite)
    console.print(f"tokens: {path}")


@codec_app.command("latents")
def codec_latents(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s); repeat --data for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Latents folder to write."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing latents folder."),
) -> None:
    """Encode every clip of the datasets once to continuous latents (75 Hz), so the flow generator trains on them."""
    from tokenwave.codec import load_codec
    from tokenwave.data.tokens import extract_latents

    codec = load_codec(model)
    path = extract_latents([str(d) for d in data], out, codec, codec_name=str(model or "checkpoints/codec"), overwrite=overwrite)
    console.print(f"latents: {path}")


@train_app.command("lm")
def train_lm(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens folder from `tokenwave codec tokenize`."),
    out: Path = opts.RUN_OUT,
    pattern: str = typer.Option("delay", help="Codebook pattern: flat, delay, parallel or vall-e."),
    preset: str = typer.Option("small", help="Model size: tiny, small (256x4) or medium (512x8)."),
    steps: int = typer.Option(10000, min=1),
    frames: int = typer.Option(150, min=2, help="Training window in frames (75 per second)."),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(1e-3),
    val_every: int = opts.VAL_EVERY,
    ckpt_every: int = opts.CKPT_EVERY,
    log_every: int = opts.LOG_EVERY,
    seed: int = opts.SEED,
    device: str = opts.DEVICE,
    resume: bool = opts.RESUME,
    until: Optional[int] = opts.UNTIL,
    time_budget: Optional[float] = opts.TIME_BUDGET,
    keep_best: bool = opts.KEEP_BEST,
    tag_dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="Share of tags left out per training item, so prompts naming only some tags work."),
    melody: bool = typer.Option(False, help="Condition on the manifest's melody (pitch class per frame), hidden for half the items."),
    init: Optional[Path] = opts.INIT,
) -> None:
    """Train the token LM on pre-tokenised codes, conditioned on the manifest's tags (and melody)."""
    from tokenwave.patterns import Pattern
    from tokenwave.train.lm import PRESETS, LMRecipe, LMTrainConfig

    Pattern(pattern, 1)  # validates the name
    tcfg = LMTrainConfig(frames=frames, batch_size=batch_size, lr=lr, total_steps=steps, tag_dropout=tag_dropout,
                         melody=melody, init=None if init is None else str(init))
    _run_training("lm", PRESETS, preset, device, seed,
                  lambda info: LMRecipe(str(tokens), pattern, preset, tcfg, info, seed=seed),
                  out, steps, val_every, ckpt_every, log_every, resume, until, time_budget=time_budget,
                  keep_best=keep_best)


@train_app.command("tts")
def train_tts(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens folder of a speech dataset (`tokenwave codec tokenize`)."),
    out: Path = opts.RUN_OUT,
    preset: str = typer.Option("small", help="Model size: tiny, small (256x4) or medium (512x8)."),
    steps: int = typer.Option(10000, min=1),
    batch_size: int = typer.Option(8, min=1),
    max_frames: int = typer.Option(450, min=8, help="Longest utterance trained on, in frames (75 per second)."),
    lr: float = typer.Option(1e-3),
    alignments: Optional[Path] = typer.Option(None, help="alignments.jsonl from `tokenwave data align`: the model is "
                                              "told each frame's phone (trains far faster); clips without one are left out."),
    val_every: int = opts.VAL_EVERY,
    ckpt_every: int = opts.CKPT_EVERY,
    log_every: int = opts.LOG_EVERY,
    seed: int = opts.SEED,
    device: str = opts.DEVICE,
    resume: bool = opts.RESUME,
    until: Optional[int] = opts.UNTIL,
    time_budget: Optional[float] = opts.TIME_BUDGET,
    keep_best: bool = opts.KEEP_BEST,
) -> None:
    """Train the TTS model: a token LM conditioned on phonemes, a voice prompt and the length."""
    from tokenwave.train.tts import PRESETS, TTSRecipe, TTSTrainConfig

    tcfg = TTSTrainConfig(batch_size=batch_size, lr=lr, total_steps=steps, max_frames=max_frames,
                          alignments=None if alignments is None else str(alignments))
    _run_training("tts", PRESETS, preset, device, seed, lambda info: TTSRecipe(str(tokens), preset, tcfg, info, seed=seed),
                  out, steps, val_every, ckpt_every, log_every, resume, until, time_budget=time_budget,
                  keep_best=keep_best)


@train_app.command("flow")
def train_flow(
    latents: Path = typer.Option(..., "--latents", help="Latents folder from `tokenwave codec latents`."),
    out: Path = opts.RUN_OUT,
    preset: str = typer.Option("small", help="Model size: tiny, small (256x6) or medium (512x12)."),
    steps: int = typer.Option(20000, min=1),
    frames: int = typer.Option(300, min=2, help="Training window in frames (75 per second)."),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(5e-4),
    prompt_share: float = typer.Option(0.3, min=0.0, max=1.0, help="Share of items trained with a given prefix."),
    patch: int = typer.Option(2, min=1, max=8, help="Latent frames per transformer token (2 halves the sampling cost)."),
    tag_dropout: float = typer.Option(0.0, min=0.0, max=0.9, help="Share of tags left out per training item, so prompts naming only some tags work."),
    melody: bool = typer.Option(False, help="Condition on the manifest's melody (pitch class per frame), hidden for half the items."),
    init: Optional[Path] = opts.INIT,
    val_every: int = opts.VAL_EVERY,
    ckpt_every: int = opts.CKPT_EVERY,
    log_every: int = opts.LOG_EVERY,
    seed: int = opts.SEED,
    device: str = opts.DEVICE,
    resume: bool = opts.RESUME,
    until: Optional[int] = opts.UNTIL,
    time_budget: Optional[float] = opts.TIME_BUDGET,
    keep_best: bool = opts.KEEP_BEST,
) -> None:
    """Train the flow-matching generator (DiT) on codec latents, conditioned on the manifest's tags."""
    from tokenwave.train.flow import PRESETS, FlowRecipe, FlowTrainConfig

    tcfg = FlowTrainConfig(frames=frames, batch_size=batch_size, lr=lr, total_steps=steps, prompt_share=prompt_share,
                           patch=patch, tag_dropout=tag_dropout, melody=melody, init=None if init is None else str(init))
    _run_training("flow", PRESETS, preset, device, seed, lambda info: FlowRecipe(str(latents), preset, tcfg, info, seed=seed),
                  out, steps, val_every, ckpt_every, log_every, resume, until, time_budget=time_budget,
                  keep_best=keep_best)


from tokenwave.eval.commands import register as _register_eval_commands  # noqa: E402

_register_eval_commands(app, train_app)  # eval codec|tts|music|sfx, listen, train speaker|tagger|clap

from tokenwave.tasks.commands import register as _register_task_commands  # noqa: E402

_register_task_commands(app)  # tts, music, sfx

from tokenwave.serve.commands import register as _register_serve_command  # noqa: E402

_register_serve_command(app)  # serve


from tokenwave.brief.cli import brief as _brief_command  # noqa: E402
from tokenwave.safety.cli import detect as _detect_command  # noqa: E402
from tokenwave.safety.cli import voices_app  # noqa: E402

app.command("brief")(_brief_command)
app.command("detect")(_detect_command)
app.add_typer(voices_app, name="voices")


def _print_stats(dataset: Path, stats: dict | None = None) -> None:
    from tokenwave.data.stats import dataset_stats

    stats = stats or dataset_stats(dataset)
    table = Table(title=f"{dataset} ({', '.join(stats['domains'])})")
    extra = sorted({k for s in stats["splits"].values() for k in s if k not in ("clips", "hours", "mean_seconds")})
    for col in ["split", "clips", "hours", "mean s", *extra]:
        table.add_column(col)
    for split, s in stats["splits"].items():
        table.add_row(split, str(s["clips"]), f"{s['hours']:.3f}", f"{s['mean_seconds']:.1f}", *[str(s.get(k, "-")) for k in extra])
    console.print(table)


def main() -> None:
    try:
        app()
    except TokenwaveError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; nothing half-written was kept")
        sys.exit(130)


if __name__ == "__main__":
    main()
