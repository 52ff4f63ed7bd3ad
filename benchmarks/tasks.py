"""Task quality and speed on the embedded default models (checkpoints/tts, music, sfx), measured with the
evaluation suite (tokenwave.eval) on held-out data, each beside its reference measured in the same run.

    python benchmarks/tasks.py [--quick] [--items N] [--threads 2]

TTS (data/speech, test split: held-out sentences spoken by held-out speakers; the voice prompt is another clip
of the same speaker): CER under Whisper tiny.en (third-party; PocketSphinx beside it as a second opinion) of the
generated speech over the engine's own speech of the same sentences (target <= 1.2); speaker identification: the
share of outputs whose most similar test speaker (Resemblyzer, third-party, cosine to the mean embedding of each
speaker's clips; the project's own encoder beside it, labelled) is the prompted one (target: most, > 0.5); DNSMOS
of both.
Music and sfx (data/music, data/sfx, test split: held-out pieces and parameter ranges, rendered for their caption
and duration up to 10 s): tag accuracy of the project's tagger (the prompt's tag fields: music's collection, genre,
instrument, tempo, mode; sfx's family; not the music-or-sfx domain, reported apart) on generated audio over its
accuracy on the real renders (target >= 0.8), KL, FAD and CLAP score beside the codec-resynthesis floor; melody-conditioned music:
chroma cosine between the row's melody and the output (target >= 0.6), beside unconditioned output's. Every
generator a task ships (token LM; flow model in checkpoints/<task>/flow) is scored the same way (``by_generator``);
the targets read the default one, and ``--choose`` makes the better one the default (generators.json).
Speed (2 threads): a 10 s output of each task, wall time including decode; ``x_realtime`` = audio s / wall s
(target >= 2).
Writes benchmarks/results/tasks.json (+ tasks.png) and prints the JSON.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, arg_parser, command_line, kept_targets, machine_info, target,  # noqa: E402
                    write_result)

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.data.manifest import audio_path, read_manifest  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

TTS_10S = ("The old lighthouse keeper climbed the winding stairs every evening. He lit the great lamp and "
           "watched the ships pass safely. Nobody in the village remembered a night without its light.")


def speaker_identification(task, data: Path, rows: list[dict], gens: list[np.ndarray], split: str = "test",
                           per_speaker: int | None = None, spk=None) -> dict:
    """Share of generated clips whose nearest speaker (mean embedding over that speaker's ``split`` clips, the first
    ``per_speaker`` by id when given) is theirs; and ``engine_identified``, the same for the engine's own clip of
    each row (its speaker's centroid without it): the ceiling the speaker encoder allows. ``hits`` and ``margins``
    per row. ``spk``: the speaker encoder (``embed(wav, sr)``), by default Resemblyzer, the third-party judge."""
    from tokenwave.eval.judges import load_resemblyzer

    spk = spk or load_resemblyzer()
    sr = task.sample_rate
    by_speaker: dict[str, list[np.ndarray]] = {}
    for r in sorted(read_manifest(data, split), key=lambda r: r["id"]):
        if per_speaker is None or len(by_speaker.get(r["speaker"], [])) < per_speaker:
            by_speaker.setdefault(r["speaker"], []).append(spk.embed(load_audio(audio_path(data, r), sr)[0], sr))
    names = sorted(by_speaker)

    def unit(x):
        return x / np.linalg.norm(x)

    centroids = np.stack([unit(np.mean(by_speaker[n], 0)) for n in names])
    hits, margins, ref_hits = [], [], []
    for r, g in zip(rows, gens):
        sims = centroids @ spk.embed(g, sr)
        own = names.index(r["speaker"])
        hits.append(int(np.argmax(sims) == own))
        margins.append(float(sims[own] - np.max(np.delete(sims, own))))
        # the ceiling: the engine's own clip of the row against the centroids, its own speaker's without that clip
        ref = spk.embed(load_audio(audio_path(data, r), sr)[0], sr)
        rest = [e for e in by_speaker[r["speaker"]] if not np.allclose(e, ref)]
        loo = centroids.copy()
        if rest:
            loo[own] = unit(np.mean(rest, 0))
        ref_hits.append(int(np.argmax(loo @ ref) == own))
    return {"speakers": len(names), "identified": float(np.mean(hits)), "margin_mean": float(np.mean(margins)),
            "engine_identified": float(np.mean(ref_hits)), "hits": hits, "margins": margins}


def bench_tts(items: int, out: Path) -> tuple[dict, list]:
    from tokenwave.eval.suite import evaluate_tts

    data = REPO_ROOT / "data" / "speech"
    task = load_task("tts")
    res = evaluate_tts(task, data, out / "tts", limit=items)
    s = res["summary"]
    by_id = {r["id"]: r for r in read_manifest(data)}
    files = sorted((out / "tts" / "audio" / "generated").glob("*.wav"))  # what evaluate_tts rendered
    rows = [by_id[f.stem] for f in files]
    gens = [load_audio(f, task.sample_rate)[0] for f in files]
    from tokenwave.eval.speaker import load_speaker_encoder

    ident = speaker_identification(task, data, rows, gens)
    ident_own = speaker_identification(task, data, rows, gens, spk=load_speaker_encoder())
    figs = {"generated": s["generated"], "engine": s["reference (engine)"], "codec": s.get("codec resynthesis"),
            "speaker_identification": ident, "speaker_identification_own_encoder": ident_own, "items": len(rows),
            "judges": "words: Whisper tiny.en (third-party; PocketSphinx in *_pocketsphinx, a second opinion); "
                      "speakers: Resemblyzer (third-party; the project's own encoder, trained on these voices' "
                      "renders, in speaker_identification_own_encoder)",
            "note": "codec: the engine's speech through the codec at the TTS model's bitrate, the floor for any "
                    "generator of these codes"}
    targets = [target("tts_cer_over_engine", s["generated"].get("cer_over_engine"), "<=", 1.2),
               target("tts_speaker_identified_share", ident["identified"], ">", 0.5)]
    return figs, targets


def _tagged_figures(task, task_name: str, data: Path, items: int, out: Path) -> dict:
    """One generator of a music / sfx task: the evaluation suite's summary, the tag-accuracy ratio and (music) the
    melody's chroma cosine with and without the melody."""
    from tokenwave.eval.suite import evaluate_audio_task

    res = evaluate_audio_task(task_name, task, data, out / f"{task_name}-{task.generator}", limit=items)
    s = res["summary"]
    figs = {k: s[k] for k in ("generated", "codec", "reference")}
    figs["tag_acc_ratio"] = s["generated"]["tag_acc"] / s["reference"]["tag_acc"] if s["reference"].get("tag_acc") else None
    if task_name == "music" and task.supports_melody:
        from tokenwave.eval.melody import chroma_cosine

        rows = [r for r in read_manifest(data) if r["split"] == "test" and r.get("melody")][:items]
        with_m, without = [], []
        for i, r in enumerate(rows):
            mel = np.asarray(r["melody"][: int(min(r["duration"], 10.0) * 75)])
            for use, acc in ((True, with_m), (False, without)):
                wav = task.generate_row(r, data, seed=i, melody=use)
                acc.append(chroma_cosine(mel, wav, task.sample_rate))
        figs["melody"] = {"chroma_cosine_with_melody": float(np.mean(with_m)),
                          "chroma_cosine_without_melody": float(np.mean(without)), "items": len(rows)}
    return figs


def _better(a: dict, b: dict) -> bool:
    """Whether generator figures ``a`` beat ``b``: tag accuracy, then (music) melody chroma, then CLAP."""
    def key(f):
        return (round(f["generated"].get("tag_acc", 0.0), 3), round(f.get("melody", {}).get("chroma_cosine_with_melody", 0.0), 3),
                f["generated"].get("clap", 0.0))
    return key(a) > key(b)


def bench_tagged(task_name: str, items: int, out: Path, choose: bool = False) -> tuple[dict, list]:
    """Every generator the task's folder holds, scored the same way; the targets read the default one. With
    ``choose``, the better one becomes the default (``generators.json`` beside the checkpoint, with the figures)."""
    data = REPO_ROOT / "data" / task_name
    task = load_task(task_name)
    by_gen = {}
    for name in task.generators:
        by_gen[name] = _tagged_figures(load_task(task_name, generator=name, codec=task.codec), task_name, data, items, out)
    default, mel_default = task.default_generator, task.melody_generator or task.default_generator
    if choose and len(by_gen) > 1:
        default = max(by_gen, key=lambda g: (sum(_better(by_gen[g], by_gen[h]) for h in by_gen if h != g), g == default))
        mel_default = _write_choice(task, default, by_gen, items) or default
    figs = {**by_gen[default], "generator": default, "by_generator": by_gen}
    targets = [target(f"{task_name}_tag_accuracy_over_real_renders", figs["tag_acc_ratio"], ">=", 0.8)]
    if "melody" in by_gen.get(mel_default, {}):  # requests with a melody go to mel_default
        figs["melody"] = {**by_gen[mel_default]["melody"], "generator": mel_default}
        targets.append(target("music_melody_chroma_cosine", figs["melody"]["chroma_cosine_with_melody"], ">=", 0.6))
    return figs, targets


def _write_choice(task, default: str, by_gen: dict, items: int) -> str | None:
    """Write ``generators.json``; returns the generator chosen for requests with a melody (None: the default)."""
    from tokenwave.fileio import atomic_write_text

    summary = {g: {"tag_acc": round(f["generated"]["tag_acc"], 4), "tag_acc_ratio": round(f["tag_acc_ratio"], 4),
                   "clap": round(f["generated"]["clap"], 4),
                   **({"melody_chroma_cosine": round(f["melody"]["chroma_cosine_with_melody"], 4)} if "melody" in f else {})}
               for g, f in by_gen.items()}
    choice = {"default": default,
              "why": f"higher tag accuracy of the project's tagger on {items} held-out {task.task} captions "
                     "(then melody chroma cosine, then CLAP score), measured by benchmarks/tasks.py --choose",
              "measured": summary, "date": time.strftime("%Y-%m-%d")}
    with_melody = {g: f["melody"]["chroma_cosine_with_melody"] for g, f in by_gen.items() if "melody" in f}
    if len(with_melody) > 1:
        choice["default_with_melody"] = max(with_melody, key=with_melody.get)
        choice["why_with_melody"] = "higher chroma cosine between the given melody and the output on the same captions"
    path = task.folder / "generators.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    # sampling defaults per generator are measured separately (benchmarks/sampling.py): kept
    choice.update({k: old[k] for k in ("sampling", "why_sampling", "sampling_with_melody", "why_sampling_with_melody")
                   if k in old})
    atomic_write_text(path, json.dumps(choice, indent=2) + "\n")
    return choice.get("default_with_melody")


def _speed(task, name: str, runs: int, generator: str | None = None) -> dict:
    times, seconds = [], []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        if name == "tts":
            res = task.synthesize(TTS_10S, task.voices[0], Sampling(seed=i))
        else:
            res = task.generate("lively irish fiddle reel in D major" if name == "music" else
                                "heavy rain on a tin roof with distant thunder", 10.0, Sampling(seed=i),
                                generator=generator)
        if i:  # the first run warms up
            times.append(time.perf_counter() - t0)
            seconds.append(res.duration)
    x = float(np.median(np.array(seconds) / np.array(times)))
    return {"audio_seconds": float(np.median(seconds)), "wall_seconds": float(np.median(times)), "x_realtime": x}


def bench_speed(runs: int) -> tuple[dict, list]:
    """A 10 s output of each task on its default generator (music / sfx: every generator, in ``by_generator``)."""
    figs, targets = {}, []
    for name in ("tts", "music", "sfx"):
        task = load_task(name)
        if name == "tts":
            figs[name] = _speed(task, name, runs)
        else:
            by_gen = {g: _speed(task, name, runs, g) for g in task.generators}
            figs[name] = {**by_gen[task.generator], "generator": task.generator, "by_generator": by_gen}
        targets.append(target(f"{name}_10s_x_realtime", figs[name]["x_realtime"], ">=", 2.0))
    return figs, targets


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    t = figures.get("tts", {})
    if t:
        axes[0].bar(["engine", "generated"], [t["engine"].get("cer", np.nan), t["generated"].get("cer", np.nan)],
                    color=["#888", "#3a7"])
        axes[0].set_title("TTS: CER under PocketSphinx (lower is better)")
    names, gen, ref, floor = [], [], [], []
    for k in ("music", "sfx"):
        if k in figures:
            names.append(k)
            gen.append(figures[k]["generated"].get("tag_acc", np.nan))
            floor.append(figures[k]["codec"].get("tag_acc", np.nan))
            ref.append(figures[k]["reference"].get("tag_acc", np.nan))
    x = np.arange(len(names))
    for off, vals, lab, col in ((-0.25, ref, "real renders", "#888"), (0, floor, "codec resynthesis", "#69c"),
                                (0.25, gen, "generated", "#3a7")):
        axes[1].bar(x + off, vals, 0.25, label=lab, color=col)
    axes[1].set_xticks(x, names)
    axes[1].set_title("tag accuracy of the project's tagger")
    axes[1].legend(fontsize=8)
    sp = figures.get("speed", {})
    axes[2].bar([f"{k} ({v.get('generator', 'lm')})" for k, v in sp.items()], [v["x_realtime"] for v in sp.values()],
                color="#c73")
    axes[2].axhline(2.0, color="k", ls="--", lw=1)
    axes[2].set_title("speed: x real time for 10 s (2 threads)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _target_part(name: str) -> str:
    """Which part of the benchmark (``--only``) a target belongs to: speed targets name their task first too."""
    return "speed" if name.endswith("_x_realtime") else name.split("_", 1)[0]


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=None, help="held-out items per task (default 24; quick 3)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-tasks"), help="where eval reports go")
    parser.add_argument("--only", nargs="*", default=["tts", "music", "sfx", "speed"])
    parser.add_argument("--choose", action="store_true", help="make the better generator of music / sfx the default "
                        "(writes checkpoints/<task>/generators.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = args.items or (3 if args.quick else 24)
    figures, targets = {}, []
    previous = RESULTS_DIR / "tasks.json"
    if set(args.only) != {"tts", "music", "sfx", "speed"} and previous.exists():  # a partial rerun keeps the rest
        old = json.loads(previous.read_text())
        figures = {k: v for k, v in old["figures"].items() if k not in args.only}
        targets = kept_targets(old, lambda t: _target_part(t["name"]) not in args.only)  # each with its command
    for name in ("tts", "music", "sfx"):
        if name in args.only:
            f, t = bench_tts(items, args.out) if name == "tts" else bench_tagged(name, items, args.out, args.choose)
            figures[name], targets = f, targets + t
    if "speed" in args.only:
        figures["speed"], t = bench_speed(1 if args.quick else 2)
        targets += t
    figures["items_per_task"] = items
    result = write_result("tasks", command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / "tasks.png")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
