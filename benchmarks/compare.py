"""A candidate generator (e.g. a fine-tuned run's model) against the shipped one, paired on the same captions and
seeds: the measurement that decides whether a new music / sfx checkpoint replaces the old.

    python benchmarks/compare.py --task music --generator flow --candidate runs/flow-music-ft/best \\
        [--data data/music-xl] [--split valid] [--items 96] [--melody] [--heldout runs/latents-music-xl] [--name NAME]

Both models render every captioned clip of ``--data``'s ``--split`` (first ``--items`` by id) for its duration (up
to 10 s), with the same seed (the item index) and the shipped sampling defaults (``generators.json``), through the
task's own ``generate`` and the shipped decoder for that generator (the candidate's own ``decoder/`` if it has one).
Scores: the project tagger's tag accuracy and CLAP-style score (as benchmarks/tasks.py scores the test split);
with ``--melody``, also the chroma cosine between the output and the row's melody given to it. ``--heldout`` (the
latents folder of a flow model's data, the tokens folder of a token LM's) adds each model's training loss on the
same valid windows, noise and times, batch by batch. Choose on the valid split; the test split stays for
benchmarks/tasks.py.
``--task tts`` (``--candidate`` a TTS model folder, e.g. a `tokenwave train tts` run's ``best/``): both models speak
the first ``--items`` sentences of ``--data`` (default ``data/speech``) ``--split`` in the voice of another clip of
the row's speaker (seed = item index, each model's default sampling), decoded by the same decoder (the shipped
model's ``decoder/``, or ``--candidate-decoder`` for the candidate). Scores: CER under PocketSphinx (the recogniser of
the TTS bar), the speaker encoder's cosine to the row's own recording minus to another speaker's (``speaker_margin``)
and whether the row's speaker is the nearest of the split's speakers (``identified``; centroids of each speaker's
first 8 clips), with paired differences.

Writes benchmarks/results/compare[-NAME].json (+ .png: each metric with its standard error, and the paired
differences) and prints the JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, arg_parser, command_line, machine_info, paired_difference,  # noqa: E402
                    repo_path, standard_error, target, write_result)
from generators import FIELD, score  # noqa: E402

from tokenwave.data.manifest import read_manifest  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

SYSTEMS = ("shipped", "candidate")


def candidate_task(task, generator: str, folder: Path):
    """``task`` with its ``generator`` replaced by the model in ``folder`` (and its decoder, if it has one)."""
    from tokenwave.models.folder import folder_decoder
    from tokenwave.models.tagged import Generator

    g = Generator.load(folder, task.codec)
    if g.kind != generator:
        raise SystemExit(f"{folder} holds a {g.kind} model, not a {generator} one")
    task.generators[generator] = g
    tuned = folder_decoder(folder, task.codec, 0 if g.kind == "flow" else g.model.cfg.K)
    if tuned is not None:
        task.decoders[generator] = tuned
    return task


def heldout_losses(generator: str, folder: Path, heldout: Path, batches: int) -> list[float]:
    """The model's training loss on ``batches`` valid batches of ``heldout``: the windows, noise and times depend
    only on the seed, so two models' lists pair batch by batch."""
    from tokenwave.seeding import seed_everything
    from tokenwave.train.trainer import DistInfo

    train = json.loads((folder / "config.json").read_text()).get("train", {})
    seed_everything(0)
    if generator == "flow":
        from tokenwave.train.flow import FlowRecipe, FlowTrainConfig

        tcfg = FlowTrainConfig(init=str(folder), frames=train.get("frames", 300), batch_size=16, val_batches=batches)
        recipe = FlowRecipe(str(heldout), "small", tcfg, DistInfo(), seed=0)
    else:
        from tokenwave.train.lm import LMRecipe, LMTrainConfig

        tcfg = LMTrainConfig(init=str(folder), frames=train.get("frames", 150), batch_size=16, val_batches=batches)
        recipe = LMRecipe(str(heldout), "delay", "small", tcfg, DistInfo(), seed=0)
    return recipe.validation_losses()


def render(task, generator: str, rows: list[dict], melody: bool, name: str, cfg: float | None = None,
           steps: int | None = None) -> dict[str, list]:
    """Each row's caption rendered (seed = index; guidance ``cfg`` and flow ``steps``, or the model's defaults); with
    ``melody`` also with the row's melody, and its chroma cosine."""
    from tokenwave.eval.melody import chroma_cosine

    out: dict[str, list] = {"wavs": [], "chroma": []}
    with progress_bar(name, len(rows), "clips") as bar, torch.no_grad():
        for i, r in enumerate(rows):
            seconds, sampling = min(r["duration"], 10.0), Sampling(seed=i, cfg_scale=cfg, steps=steps)
            out["wavs"].append(task.generate(r["caption"], seconds, sampling, watermark=False, generator=generator).wav)
            if melody:
                mel = np.asarray(r["melody"][: int(seconds * 75)])
                wav = task.generate(r["caption"], seconds, sampling, melody=mel, watermark=False, generator=generator).wav
                out["chroma"].append(float(chroma_cosine(mel, wav, task.sample_rate)))
            bar.advance()
    return out


def tts_compare(args) -> tuple[dict, list[dict]]:
    """``--task tts``: the shipped TTS model against the candidate, the same sentences, prompts, seeds and decoder."""
    from tasks import speaker_identification

    from tokenwave.audio import load_audio
    from tokenwave.codec import load_codec
    from tokenwave.data.manifest import audio_path
    from tokenwave.eval.asr import cer, transcribe
    from tokenwave.eval.speaker import load_speaker_encoder
    from tokenwave.eval.suite import other_speaker_row
    from tokenwave.paths import default_checkpoint
    from tokenwave.tasks.tts import TTS, voice_prompt_for

    data = args.data or REPO_ROOT / "data" / "speech"
    rows = [r for r in sorted(read_manifest(data, args.split), key=lambda r: r["id"]) if r.get("text")]
    rows = rows[: 3 if args.quick else args.items]
    if not rows:
        raise SystemExit(f"{data} has no {args.split} sentences")
    codec = load_codec()
    shipped_folder = default_checkpoint("tts")
    models = {"shipped": TTS(shipped_folder, codec),
              "candidate": TTS(args.candidate, codec, decoder=args.candidate_decoder or shipped_folder / "decoder")}
    spk, sr = load_speaker_encoder(), codec.sample_rate
    per_item: dict[str, dict[str, list]] = {s: {"cer": [], "speaker_margin": [], "wavs": []} for s in SYSTEMS}
    with progress_bar("tts", len(rows), "clips") as bar, torch.no_grad():
        for i, row in enumerate(rows):
            prompt = voice_prompt_for(row, data)
            other = other_speaker_row(rows, i) or row
            e_ref = spk.embed(load_audio(audio_path(data, row), sr)[0], sr)
            e_other = spk.embed(load_audio(audio_path(data, other), sr)[0], sr)
            for s, tts in models.items():
                wav = tts.synthesize(row["text"], sampling=Sampling(seed=i), watermark=False, consent_check=False,
                                     **prompt).wav
                e = spk.embed(wav, sr)
                per_item[s]["cer"].append(cer(row["text"], transcribe(wav, sr)))
                per_item[s]["speaker_margin"].append(float(e @ e_ref - e @ e_other))
                per_item[s]["wavs"].append(wav)
            bar.advance()
    for s in SYSTEMS:
        ident = speaker_identification(models[s], data, rows, per_item[s].pop("wavs"), args.split, per_speaker=8)
        per_item[s]["identified"] = [float(h) for h in ident.pop("hits")]
        per_item[s]["identification"] = {k: v for k, v in ident.items() if k != "margins"}
    metrics = ("cer", "speaker_margin", "identified")
    figures: dict = {"task": "tts", "generator": "lm", "data": repo_path(data), "split": args.split,
                     "items": len(rows), "shipped_model": repo_path(shipped_folder),
                     "candidate_model": str(args.candidate),
                     "candidate_decoder": str(args.candidate_decoder or repo_path(shipped_folder / "decoder")),
                     "sampling": "each model's defaults, seed = item index; prompt: another clip of the row's speaker",
                     **{s: {**{m: float(np.mean(per_item[s][m])) for m in metrics},
                            **{f"{m}_se": standard_error(per_item[s][m]) for m in metrics},
                            "identification": per_item[s]["identification"]} for s in SYSTEMS}}
    figures["paired"] = {m: paired_difference(per_item["candidate"][m], per_item["shipped"][m]) for m in metrics}
    figures["ids"] = [r["id"] for r in rows]
    targets = [target("candidate_minus_shipped_cer", figures["paired"]["cer"]["mean"], "<=", 0.0),
               target("candidate_minus_shipped_speaker_margin", figures["paired"]["speaker_margin"]["mean"], ">", 0.0),
               target("candidate_minus_shipped_identified", figures["paired"]["identified"]["mean"], ">", 0.0)]
    return figures, targets


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenwave.plots import save_figure

    metrics = [m for m in ("tag_acc", "clap", "chroma_cosine", "cer", "speaker_margin", "identified")
               if m in figures["shipped"]]
    fig, axes = plt.subplots(1, len(metrics) + 1, figsize=(3.2 * (len(metrics) + 1), 3.2))
    for ax, m in zip(axes, metrics):
        ax.bar(SYSTEMS, [figures[s][m] for s in SYSTEMS], yerr=[figures[s].get(f"{m}_se", 0) for s in SYSTEMS],
               color=["#888", "#3a7"], capsize=3)
        ax.set_title(m, fontsize=10)
    diffs = figures["paired"]
    names = list(diffs)
    axes[-1].bar(range(len(names)), [diffs[n]["mean"] for n in names], yerr=[diffs[n]["se"] for n in names],
                 color="#79c", capsize=3)
    axes[-1].axhline(0, color="k", lw=0.8)
    axes[-1].set_xticks(range(len(names)), [n.replace("_", "\n", 1) for n in names], fontsize=7)
    axes[-1].set_title("candidate - shipped (paired)", fontsize=10)
    fig.suptitle(f"{figures['task']} / {figures['generator']}: {figures['items']} {figures['split']} clips of "
                 f"{figures['data']}", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sfx", "music", "tts"), default="music")
    parser.add_argument("--generator", choices=("lm", "flow"), default="flow")
    parser.add_argument("--candidate", type=Path, required=True, help="the candidate model folder (OUT/model, OUT/best)")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default data/<task>)")
    parser.add_argument("--split", default="valid")
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--melody", action="store_true", help="also score melody following (music rows with one)")
    parser.add_argument("--candidate-cfg", type=float, default=None,
                        help="the candidate's guidance scale (default: the shipped sampling defaults, as for the shipped model)")
    parser.add_argument("--candidate-steps", type=int, default=None, help="the candidate's flow ODE steps (default: shipped)")
    parser.add_argument("--heldout", type=Path, default=None,
                        help="latents (flow) or tokens (token LM) folder: also compare the training loss on its valid split")
    parser.add_argument("--heldout-batches", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--candidate-decoder", type=Path, default=None,
                        help="tts: the decoder for the candidate (default: the shipped model's decoder/)")
    parser.add_argument("--name", default="", help="suffix of the result files")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    name = "compare" + (f"-{args.name}" if args.name else "")
    if args.task == "tts":
        figures, targets = tts_compare(args)
        result = write_result(name, command_line(__file__), targets, figures, args.quick, machine_info())
        plot(figures, RESULTS_DIR / f"{name}.png")
        print(json.dumps(result, indent=1))
        return
    data = args.data or REPO_ROOT / "data" / args.task
    rows = [r for r in sorted(read_manifest(data, args.split), key=lambda r: r["id"])
            if r.get("caption") and (r.get("melody") or not args.melody)][: 3 if args.quick else args.items]
    if not rows:
        raise SystemExit(f"{data} has no captioned {args.split} clips")
    shipped = load_task(args.task, generator=args.generator)
    shipped_folder = shipped.generators[args.generator].folder
    renders = {"shipped": render(shipped, args.generator, rows, args.melody, "shipped")}
    candidate = candidate_task(shipped, args.generator, args.candidate)
    renders["candidate"] = render(candidate, args.generator, rows, args.melody, "candidate", args.candidate_cfg,
                                  args.candidate_steps)

    field = FIELD[args.task]
    scored = {s: score(renders[s]["wavs"], rows, shipped.sample_rate, field, per_item=True) for s in SYSTEMS}
    if args.melody:
        for s in SYSTEMS:
            c = renders[s]["chroma"]
            scored[s].update(chroma_cosine=float(np.mean(c)), chroma_cosine_items=c,
                             chroma_cosine_se=standard_error(c))
    figures: dict = {"task": args.task, "generator": args.generator, "data": repo_path(data), "split": args.split,
                     "items": len(rows), "shipped_model": str(shipped_folder), "candidate_model": str(args.candidate),
                     "sampling": "the shipped defaults (generators.json), seed = item index",
                     "candidate_cfg": args.candidate_cfg, "candidate_steps": args.candidate_steps,
                     **{s: {k: v for k, v in scored[s].items() if not k.endswith("_items")} for s in SYSTEMS}}
    metrics = [m for m in ("tag_acc", "clap", "chroma_cosine") if f"{m}_items" in scored["shipped"]]
    figures["paired"] = {m: paired_difference(scored["candidate"][f"{m}_items"], scored["shipped"][f"{m}_items"])
                         for m in metrics}
    figures["ids"] = [r["id"] for r in rows]
    targets = [target(f"candidate_minus_shipped_{m}", figures["paired"][m]["mean"], ">", 0.0) for m in metrics]
    if args.heldout is not None:
        n = 2 if args.quick else args.heldout_batches
        losses = {s: heldout_losses(args.generator, f, args.heldout, n)
                  for s, f in (("shipped", Path(shipped_folder)), ("candidate", args.candidate))}
        figures["heldout_loss"] = {"data": str(args.heldout), "batches": n, "batch_size": 16,
                                   **{s: float(np.mean(v)) for s, v in losses.items()},
                                   "paired": paired_difference(losses["candidate"], losses["shipped"])}
        targets.append(target("candidate_minus_shipped_heldout_loss", figures["heldout_loss"]["paired"]["mean"], "<", 0.0))
    result = write_result(name, command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / f"{name}.png")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
