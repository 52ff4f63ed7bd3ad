"""Sampling defaults chosen by measurement on the valid split: one generator of a task rendered over a grid of
classifier-free-guidance scales (and temperatures and top-k, token LM; steps and solver, flow), scored the way
benchmarks/tasks.py scores the test split, so the test figures stay untouched by the choice.

    python benchmarks/sampling.py --task music --generator flow --cfg 1.5 2 3 4 [--steps 16 32] [--solver euler heun]
        [--cfg-until 0.5 0.7 1] [--data data/music-xl] [--apply]
    python benchmarks/sampling.py --task music --generator lm --melody --cfg 2 3 --temperature 0.7 0.9 [--apply]
    python benchmarks/sampling.py --task tts --cfg 1.5 2 3 --temperature 0.5 0.7 0.9 [--top-k 20 100] [--apply]

Score (music / sfx): the project tagger's tag accuracy (the cheapest setting within one standard error of the best
wins; then the higher score, then CLAP score) on N captioned `data/<task>` valid clips, each rendered for its
duration (up to 10 s), seed = item index; with ``--melody``, the chroma cosine between the output and the row's
melody given to it.
Score (tts): the character error rate under PocketSphinx (lower wins; then the higher speaker similarity) of N
`data/speech` valid sentences (held-out sentences of the training speakers), each spoken in the voice of another clip
of its speaker, seed = item index, beside the engine's own speech of the same sentences (``cer_over_engine``, the
figure of the task's bar) and each setting's paired CER difference to the built-in default.
The baseline is the built-in default (CFG 2, temperature 0.9, top-k 100), measured in the same run.
Target: the choice made on the valid split, scored against the built-in default on the first N clips of the test split
(``--test-items``; the same seeds, paired): its mean paired difference must favour the choice (> 0; CER: < 0). When the
default itself is chosen there is nothing to check and the target says so (``met`` null). The valid split's
best / default ratio is a figure, not a target: the default is one of the candidates, so it cannot fall below 1.
``--apply`` writes the best setting into checkpoints/<task>/generators.json: ``sampling.<generator>`` (every request
to that generator, the server's included) or, with ``--melody``, ``sampling_with_melody.<generator>`` (its requests
with a melody, on top of the former); controls a request sets itself still win.
Writes benchmarks/results/sampling-<task>-<generator>[-melody].json + .png, refreshes sampling.json (every run's
latest results) and prints the JSON.
"""
from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, arg_parser, atomic_write_text, command_line, machine_info,  # noqa: E402
                    paired_difference, repo_path, standard_error, target, write_result)
from generators import FIELD, score  # noqa: E402

from tokenwave.data.manifest import read_manifest  # noqa: E402
from tokenwave.models.folder import GENERATORS_FILE, read_generators  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

DEFAULT = Sampling.DEFAULTS


def grid(generator: str, cfgs: list[float], temps: list[float], steps: list[int] | None = None,
         solvers: list[str] | None = None, top_ks: list[int] | None = None,
         cfg_untils: list[float] | None = None) -> list[dict]:
    """The built-in default first (the baseline), then every other point of the grid (flow: CFG x steps x solver x
    guidance interval; token LM: CFG x temperature x top-k; the axes past the first two only when more than the
    default is asked for)."""
    if generator == "lm":
        axes = {"cfg_scale": cfgs, "temperature": temps}
        if top_ks and top_ks != [DEFAULT["top_k"]]:
            axes["top_k"] = top_ks
    else:
        axes = {"cfg_scale": cfgs}
        if steps and steps != [DEFAULT["steps"]]:
            axes["steps"] = steps
        if solvers and solvers != [DEFAULT["solver"]]:
            axes["solver"] = solvers
        if cfg_untils and cfg_untils != [DEFAULT["cfg_until"]]:
            axes["cfg_until"] = cfg_untils
    points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    base = {k: DEFAULT[k] for k in points[0]}
    return [base] + [p for p in points if p != base]


def model_calls(setting: dict) -> float:
    """The cost of a setting in single-batch model evaluations per window (flow: steps, twice for Heun, and each
    guided one twice again, the share of guided steps set by ``cfg_until``); equal for token-LM settings."""
    calls = setting.get("steps", DEFAULT["steps"]) * (2 if setting.get("solver") == "heun" else 1)
    guided = setting.get("cfg_scale", DEFAULT["cfg_scale"]) not in (0.0, 1.0)
    return calls * (1 + (setting.get("cfg_until", DEFAULT["cfg_until"]) if guided else 0.0))


def key(setting: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in setting.items())


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenwave.plots import save_figure

    names = list(figures["settings"])
    metric = figures["metric"]
    vals = [figures["settings"][n][metric] for n in names]
    errs = [figures["settings"][n].get(f"{metric}_se", 0.0) for n in names]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names)), 3.4))
    colors = ["#3a7" if n == figures["best"] else "#888" if n == figures["baseline"] else "#79c" for n in names]
    ax.bar(range(len(names)), vals, yerr=errs, capsize=3, color=colors)
    short = {"cfg_scale=": "cfg ", "temperature=": "T ", "top_k=": "k ", "steps=": "", "solver=": "", "cfg_until=": "to "}

    def label(n: str) -> str:
        for a, b in short.items():
            n = n.replace(a, b)
        return n.replace(" ", "\n").replace("cfg\n", "cfg ").replace("T\n", "T ").replace("k\n", "k ").replace("to\n", "to ")

    ax.set_xticks(range(len(names)), [label(n) for n in names], fontsize=7)
    if figures.get("engine_cer"):  # tts: the task's bar, 1.2x the engine's own CER on the same sentences
        ax.axhline(1.2 * figures["engine_cer"], color="#c73", ls="--", lw=1, label="bar: 1.2x the engine's CER")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_ylabel(metric)
    ax.set_title(f"{figures['task']} / {figures['generator']}{' with melody' if figures['melody'] else ''}: "
                 f"{metric} on {figures['items']} valid clips (green: chosen, grey: built-in default)", fontsize=8)
    save_figure(fig, path)


def _without_items(figures: dict) -> dict:
    """A sweep's figures without the per-clip lists (those stay in its own file)."""
    settings = {k: {m: v for m, v in f.items() if not m.endswith("_items")} for k, f in figures.get("settings", {}).items()}
    return {**figures, "settings": settings}


def write_summary() -> dict:
    import datetime

    parts = {p.stem.removeprefix("sampling-"): json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob("sampling-*.json"))}
    summary = {"benchmark": "sampling", "command": " ; ".join(r["command"] for r in parts.values()),
               "quick": any(r["quick"] for r in parts.values()), "date": datetime.date.today().isoformat(),
               "machine": next(iter(parts.values()))["machine"] if parts else machine_info(),
               "targets": [{**t, "name": f"{name}_{t['name']}", "command": t.get("command", r["command"])}
                           for name, r in parts.items() for t in r["targets"]],
               "figures": {name: {**_without_items(r["figures"]), "source": f"benchmarks/results/sampling-{name}.json",
                                  "date": r["date"]} for name, r in parts.items()}}
    atomic_write_text(RESULTS_DIR / "sampling.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def apply(task, generator: str, melody: bool, setting: dict, figures: dict) -> None:
    path = task.folder / GENERATORS_FILE
    choice = read_generators(task.folder) or {"default": getattr(task, "default_generator", generator)}
    why = (f"{figures['metric']} {figures['settings'][figures['best']][figures['metric']]:.3f} against "
           f"{figures['settings'][figures['baseline']][figures['metric']]:.3f} at the built-in defaults on "
           f"{figures['items']} valid-split clips of {figures['data']}, measured by benchmarks/sampling.py")
    kind = "sampling_with_melody" if melody else "sampling"
    choice.setdefault(kind, {})[generator] = setting
    choice.setdefault(f"why_{kind}", {})[generator] = why
    atomic_write_text(path, json.dumps(choice, indent=2) + "\n")


def render_tagged(task, rows: list[dict], setting: dict, args) -> dict:
    """Every row's caption rendered with ``setting``: tag accuracy, CLAP score and (``--melody``) chroma cosine."""
    wavs, chroma = [], []
    for i, r in enumerate(rows):
        mel = np.asarray(r["melody"][: int(min(r["duration"], 10.0) * 75)]) if args.melody else None
        wav = task.generate(r["caption"], min(r["duration"], 10.0), Sampling(seed=i, **setting), melody=mel,
                            watermark=False, generator=args.generator).wav
        wavs.append(wav)
        if args.melody:
            from tokenwave.eval.melody import chroma_cosine

            chroma.append(chroma_cosine(mel, wav, task.sample_rate))
    figs = score(wavs, rows, task.sample_rate, FIELD[args.task], per_item=True)
    if args.melody:
        figs["chroma_cosine"] = float(np.mean(chroma))
        figs["chroma_cosine_se"] = standard_error(chroma)
        figs["chroma_cosine_items"] = [float(c) for c in chroma]
    return figs


def engine_reference(rows: list[dict], data: Path, sr: int) -> dict:
    """The engine's own recording of each row, measured once for every setting: its CER (what the recogniser makes
    of the real thing) and its speaker embedding."""
    from tokenwave.audio import load_audio
    from tokenwave.data.manifest import audio_path
    from tokenwave.eval.asr import cer, transcribe
    from tokenwave.eval.speaker import load_speaker_encoder

    spk, cers, embeddings = load_speaker_encoder(), [], []
    for r in rows:
        wav = load_audio(audio_path(data, r), sr)[0]
        cers.append(cer(r["text"], transcribe(wav, sr)))
        embeddings.append(spk.embed(wav, sr))
    return {"cer": cers, "embedding": embeddings}


def render_tts(task, rows: list[dict], data: Path, setting: dict, engine: dict) -> dict:
    """Every row's sentence spoken with ``setting`` in the voice of another clip of its speaker: CER (and over the
    engine's), WER and the output's speaker-encoder cosine to the row's own recording."""
    from tokenwave.eval.asr import cer, transcribe, wer
    from tokenwave.eval.speaker import load_speaker_encoder
    from tokenwave.tasks.tts import voice_prompt_for

    spk, sr = load_speaker_encoder(), task.sample_rate
    cers, wers, sims = [], [], []
    for i, r in enumerate(rows):
        wav = task.synthesize(r["text"], sampling=Sampling(seed=i, **setting), watermark=False, consent_check=False,
                              **voice_prompt_for(r, data)).wav
        hyp = transcribe(wav, sr)
        cers.append(cer(r["text"], hyp))
        wers.append(wer(r["text"], hyp))
        sims.append(float(spk.embed(wav, sr) @ engine["embedding"][i]))
    return {"cer": float(np.mean(cers)), "cer_se": standard_error(cers),
            "cer_over_engine": float(np.mean(cers) / max(np.mean(engine["cer"]), 1e-9)), "wer": float(np.mean(wers)),
            "speaker_sim": float(np.mean(sims)), "cer_items": cers}


def choose(figures: dict, settings: list[dict], tolerance: float | None) -> str:
    """The setting to apply. Only the built-in default and the settings that beat it by more than the standard error
    of their paired difference to it (``<metric>_vs_default``: the same clips and seeds) are eligible, so the noise
    of the clips alone cannot pick a winner; among those, the cheapest (:func:`model_calls`) within ``tolerance`` of
    the best score (default: that paired standard error), then the better score, then the tie-break (CLAP score;
    tts: speaker similarity)."""
    metric, sign = figures["metric"], (-1 if figures["lower_is_better"] else 1)
    tie = "speaker_sim" if figures["task"] == "tts" else "clap"

    def val(s: dict, name: str = metric) -> float:
        return figures["settings"][key(s)][name]

    def paired(s: dict) -> dict:
        return figures["settings"][key(s)].get(f"{metric}_vs_default") or {"mean": 0.0, "se": 0.0}

    eligible = [settings[0]] + [s for s in settings[1:] if sign * paired(s)["mean"] > paired(s)["se"]]
    best = max(eligible, key=lambda s: sign * val(s))
    figures["tolerance"] = tol = tolerance if tolerance is not None else paired(best)["se"]
    near = [s for s in eligible if sign * val(s) >= sign * val(best) - tol]
    return key(min(near, key=lambda s: (model_calls(s), -sign * val(s), -val(s, tie))))


def rows_of(data: Path, split: str, need: str, melody: bool, items: int) -> list[dict]:
    """The first ``items`` rows of ``split`` that have ``need`` (and a melody, with ``melody``)."""
    return [r for r in read_manifest(data) if r["split"] == split and r.get(need) and (r.get("melody") or not melody)][:items]


def test_check(task, args, figures: dict, settings: list[dict], data: Path, rows: list[dict]) -> dict:
    """The target: the setting chosen on the valid split against the built-in default on the test ``rows`` (the same
    seeds), the mean paired difference of the metric, better for the choice (> 0; CER: < 0). ``met`` is None, with a
    note, when the default was chosen or there are no test rows: then nothing can be checked."""
    metric, tts = figures["metric"], figures["task"] == "tts"
    name, op = f"chosen_{metric}_minus_default_on_test", "<" if tts else ">"
    chosen = next(s for s in settings if key(s) == figures["best"])
    if chosen == settings[0] or not rows:
        why = "the built-in default was chosen" if rows else "no test clips"
        return {"name": name, "value": None, "op": op, "target": 0.0, "met": None, "note": f"{why}: nothing to check"}
    engine = engine_reference(rows, data, task.sample_rate) if tts else None
    scored = {}
    for label, setting in (("chosen", chosen), ("default", settings[0])):
        figs = render_tts(task, rows, data, setting, engine) if tts else render_tagged(task, rows, setting, args)
        scored[label] = figs[f"{metric}_items"]
    diff = paired_difference(scored["chosen"], scored["default"])
    figures["test"] = {"items": len(rows), "split": "test", "chosen": figures["best"],
                       metric: {k: float(np.mean(v)) for k, v in scored.items()}, f"{metric}_chosen_minus_default": diff}
    return {**target(name, diff["mean"], op, 0.0), "se": diff["se"], "items": len(rows)}


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sfx", "music", "tts"), default="music")
    parser.add_argument("--generator", choices=("lm", "flow"), default=None,
                        help="music / sfx: the generator to tune (default: flow; tts has the token LM only)")
    parser.add_argument("--melody", action="store_true", help="score melody following (music, with the row's melody)")
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.7, 0.9], help="token LM only")
    parser.add_argument("--top-k", type=int, nargs="+", default=None, help="token LM only")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="flow only: ODE steps")
    parser.add_argument("--solver", nargs="+", choices=("euler", "heun"), default=None, help="flow only")
    parser.add_argument("--cfg-until", type=float, nargs="+", default=None,
                        help="flow only: guide the steps at times t <= this (1: every step)")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--data", type=Path, default=None,
                        help="dataset whose valid split to render (default: data/<task>, data/speech for tts)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--apply", action="store_true", help="write the best setting into generators.json")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="settings this close to the best score count as equal and the cheapest of them wins "
                             "(default: the best score's standard error over the clips)")
    parser.add_argument("--name", default="", help="suffix of the result files (several sweeps of one generator)")
    parser.add_argument("--test-items", type=int, default=None,
                        help="test-split clips the choice is checked on against the default (default: as --items; 0: none)")
    args = parser.parse_args()
    if args.melody and args.task != "music":
        raise SystemExit("--melody needs --task music")
    if args.task == "tts" and args.generator == "flow":
        raise SystemExit("the tts task has the token LM only: leave out --generator")
    args.generator = args.generator or ("lm" if args.task == "tts" else "flow")
    torch.set_num_threads(args.threads)
    items = args.items or (3 if args.quick else 24)
    tts = args.task == "tts"
    data = args.data or REPO_ROOT / "data" / ("speech" if tts else args.task)
    need = "text" if tts else "caption"
    rows = rows_of(data, "valid", need, args.melody, items)
    task = load_task("tts") if tts else load_task(args.task, generator=args.generator)
    settings = grid(args.generator, args.cfg, args.temperature, args.steps, args.solver, args.top_k, args.cfg_until)
    model = task.folder if tts else task.generators[args.generator].folder
    figures: dict = {"task": args.task, "generator": args.generator, "melody": args.melody, "items": len(rows),
                     "split": "valid", "data": repo_path(data), "model": str(model),
                     "metric": "cer" if tts else "chroma_cosine" if args.melody else "tag_acc",
                     "lower_is_better": tts, "settings": {}}
    engine = engine_reference(rows, data, task.sample_rate) if tts else None
    if tts:
        figures["engine_cer"] = float(np.mean(engine["cer"]))
    for setting in settings:
        figs = render_tts(task, rows, data, setting, engine) if tts else render_tagged(task, rows, setting, args)
        figures["settings"][key(setting)] = figs
        print(key(setting), json.dumps({k: v for k, v in figs.items() if not k.endswith("_items")}), flush=True)
    metric = figures["metric"]
    figures["baseline"] = key(settings[0])
    # each setting against the built-in default on the same clips and seeds
    base = figures["settings"][figures["baseline"]][f"{metric}_items"]
    for figs in figures["settings"].values():
        figs[f"{metric}_vs_default"] = paired_difference(figs[f"{metric}_items"], base)
    figures["best"] = choose(figures, settings, args.tolerance)
    # a figure only: the default is a candidate, scored on the same clips, so this cannot fall below 1
    figures["best_over_default_valid"] = (figures["settings"][figures["best"]][metric]
                                          / max(figures["settings"][figures["baseline"]][metric], 1e-9))
    test_rows = rows_of(data, "test", need, args.melody, items if args.test_items is None else args.test_items)
    targets = [test_check(task, args, figures, settings, data, test_rows)]
    name = f"sampling-{args.task}-{args.generator}{'-melody' if args.melody else ''}{'-' + args.name if args.name else ''}"
    if args.apply and not args.quick:
        chosen = next(s for s in settings if key(s) == figures["best"])
        apply(task, args.generator, args.melody, chosen, figures)
        figures["applied"] = chosen
    result = write_result(name, command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / f"{name}.png")
    write_summary()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
