"""Sampling defaults chosen by measurement on the valid split: one generator of a music / sfx task rendered over a
grid of classifier-free-guidance scales (and temperatures, token LM), scored the way benchmarks/tasks.py scores the
test split, so the test figures stay untouched by the choice.

    python benchmarks/sampling.py --task music --generator flow --cfg 1.5 2 3 4 [--steps 16 32] [--solver euler heun] [--apply]
    python benchmarks/sampling.py --task music --generator lm --melody --cfg 2 3 --temperature 0.7 0.9 [--apply]

Score: the project tagger's tag accuracy (the cheapest setting within one standard error of the best wins; then
the higher score, then CLAP score) on N captioned `data/<task>` valid clips, each rendered
for its duration (up to 10 s), seed = item index; with ``--melody``, the chroma cosine between the output and the
row's melody given to it. The baseline is the built-in default (CFG 2, temperature 0.9), measured in the same run.
``--apply`` writes the best setting into checkpoints/<task>/generators.json: ``sampling.<generator>`` (every request
to that generator) or, with ``--melody``, ``sampling_with_melody.<generator>`` (its requests with a melody, on top of
the former); controls a request sets itself still win.
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
                    standard_error, target, write_result)
from generators import FIELD, score  # noqa: E402

from tokenwave.data.manifest import read_manifest  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

DEFAULT = Sampling.DEFAULTS


def grid(generator: str, cfgs: list[float], temps: list[float], steps: list[int] | None = None,
         solvers: list[str] | None = None) -> list[dict]:
    """The built-in default first (the baseline), then every other point of the grid (flow: CFG x steps x solver,
    the last two only when more than the default is asked for; token LM: CFG x temperature)."""
    if generator == "lm":
        points = [{"cfg_scale": c, "temperature": t} for c, t in itertools.product(cfgs, temps)]
    else:
        axes = {"cfg_scale": cfgs}
        if steps and steps != [DEFAULT["steps"]]:
            axes["steps"] = steps
        if solvers and solvers != [DEFAULT["solver"]]:
            axes["solver"] = solvers
        points = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    base = {k: DEFAULT[k] for k in points[0]}
    return [base] + [p for p in points if p != base]


def model_calls(setting: dict) -> int:
    """Model evaluations per window of a setting (flow: steps, twice for Heun); equal for token-LM settings."""
    return setting.get("steps", DEFAULT["steps"]) * (2 if setting.get("solver") == "heun" else 1)


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
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(names)), 3.4))
    colors = ["#3a7" if n == figures["best"] else "#888" if n == figures["baseline"] else "#79c" for n in names]
    ax.bar(range(len(names)), vals, color=colors)
    ax.set_xticks(range(len(names)), [n.replace(" ", "\n") for n in names], fontsize=7)
    ax.set_ylabel(metric)
    ax.set_title(f"{figures['task']} / {figures['generator']}{' with melody' if figures['melody'] else ''}: "
                 f"{metric} on {figures['items']} valid clips (green: chosen, grey: built-in default)", fontsize=8)
    save_figure(fig, path)


def write_summary() -> dict:
    import datetime

    parts = {p.stem.removeprefix("sampling-"): json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob("sampling-*.json"))}
    summary = {"benchmark": "sampling", "command": " ; ".join(r["command"] for r in parts.values()),
               "quick": any(r["quick"] for r in parts.values()), "date": datetime.date.today().isoformat(),
               "machine": next(iter(parts.values()))["machine"] if parts else machine_info(),
               "targets": [{**t, "name": f"{name}_{t['name']}"} for name, r in parts.items() for t in r["targets"]],
               "figures": {name: {**r["figures"], "source": f"benchmarks/results/sampling-{name}.json", "date": r["date"]}
                           for name, r in parts.items()}}
    atomic_write_text(RESULTS_DIR / "sampling.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def apply(task, generator: str, melody: bool, setting: dict, figures: dict) -> None:
    path = task.folder / "generators.json"
    choice = json.loads(path.read_text()) if path.exists() else {"default": task.default_generator}
    why = (f"{figures['metric']} {figures['settings'][figures['best']][figures['metric']]:.3f} against "
           f"{figures['settings'][figures['baseline']][figures['metric']]:.3f} at the built-in defaults on "
           f"{figures['items']} valid-split clips of data/{figures['task']}, measured by benchmarks/sampling.py")
    kind = "sampling_with_melody" if melody else "sampling"
    choice.setdefault(kind, {})[generator] = setting
    choice.setdefault(f"why_{kind}", {})[generator] = why
    atomic_write_text(path, json.dumps(choice, indent=2) + "\n")


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sfx", "music"), default="music")
    parser.add_argument("--generator", choices=("lm", "flow"), default="flow")
    parser.add_argument("--melody", action="store_true", help="score melody following (music, with the row's melody)")
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--temperature", type=float, nargs="+", default=[0.7, 0.9], help="token LM only")
    parser.add_argument("--steps", type=int, nargs="+", default=None, help="flow only: ODE steps")
    parser.add_argument("--solver", nargs="+", choices=("euler", "heun"), default=None, help="flow only")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--apply", action="store_true", help="write the best setting into generators.json")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="settings this close to the best score count as equal and the cheapest of them wins "
                             "(default: the best score's standard error over the clips)")
    parser.add_argument("--name", default="", help="suffix of the result files (several sweeps of one generator)")
    args = parser.parse_args()
    if args.melody and args.task != "music":
        raise SystemExit("--melody needs --task music")
    torch.set_num_threads(args.threads)
    items = args.items or (3 if args.quick else 24)
    data = REPO_ROOT / "data" / args.task
    rows = [r for r in read_manifest(data) if r["split"] == "valid" and r.get("caption")
            and (r.get("melody") or not args.melody)][:items]
    task = load_task(args.task, generator=args.generator)
    sr, field = task.sample_rate, FIELD[args.task]
    settings = grid(args.generator, args.cfg, args.temperature, args.steps, args.solver)
    figures: dict = {"task": args.task, "generator": args.generator, "melody": args.melody, "items": len(rows),
                     "split": "valid", "model": str(task.generators[args.generator].folder),
                     "metric": "chroma_cosine" if args.melody else "tag_acc", "settings": {}}
    for setting in settings:
        wavs, chroma = [], []
        for i, r in enumerate(rows):
            mel = np.asarray(r["melody"][: int(min(r["duration"], 10.0) * 75)]) if args.melody else None
            wav = task.generate(r["caption"], min(r["duration"], 10.0), Sampling(seed=i, **setting), melody=mel,
                                watermark=False, generator=args.generator).wav
            wavs.append(wav)
            if args.melody:
                from tokenwave.eval.melody import chroma_cosine

                chroma.append(chroma_cosine(mel, wav, sr))
        figs = score(wavs, rows, sr, field)
        if args.melody:
            figs["chroma_cosine"] = float(np.mean(chroma))
            figs["chroma_cosine_se"] = standard_error(chroma)
        figures["settings"][key(setting)] = figs
        print(key(setting), json.dumps(figs), flush=True)
    metric = figures["metric"]
    figures["baseline"] = key(settings[0])
    # the cheapest setting (fewest model calls) within --tolerance of the best score (default: the best score's
    # standard error over the clips, so differences the clips cannot tell apart do not buy slower sampling), then
    # the higher score, then CLAP
    best_key = max(figures["settings"], key=lambda k: figures["settings"][k][metric])
    top = figures["settings"][best_key][metric]
    tolerance = args.tolerance if args.tolerance is not None else figures["settings"][best_key].get(f"{metric}_se", 0.0)
    near = [s for s in settings if figures["settings"][key(s)][metric] >= top - tolerance]
    figures["best"] = key(min(near, key=lambda s: (model_calls(s), -figures["settings"][key(s)][metric],
                                                   -figures["settings"][key(s)]["clap"])))
    figures["tolerance"] = tolerance
    best = figures["settings"][figures["best"]][metric] / max(figures["settings"][figures["baseline"]][metric], 1e-9)
    targets = [target(f"best_{metric}_over_default", best, ">=", 1.0)]
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
