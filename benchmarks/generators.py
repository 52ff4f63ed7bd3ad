"""Token-AR against flow matching on the same task: music or sound effects from held-out captions, the same codec
(3 kbps codes / continuous latents of checkpoints/codec), the same data (data/<task>-large), similar size
(token LM 256 x 4 blocks, 5.3 M parameters; flow DiT 256 x 6 blocks, patches of 2 frames, 7.5 M).

    python benchmarks/generators.py [--task sfx|music] [--quick] [--items N]

Both generators are the shipped ones (checkpoints/<task> and checkpoints/<task>/flow), run through the task's own
``generate`` (prompt reading, sliding windows, decode), so the figures are what users get.
Quality: the project's tagger (tag accuracy over the task's fields, and the family / instrument field alone) and
CLAP-style score on N held-out `data/<task>` test captions, each rendered for its duration (up to 10 s), seed = item
index, CFG 2 for both. Flow at 4 / 8 / 16 / 32 Euler steps (the quality-vs-steps curve), token LM with its
defaults (temperature 0.9, top-k 100).
Speed (2 threads): render time of a 10 s clip, and time to first audio of a stream (token LM: first frame complete
and decoded; flow: its first chunked-streaming window sampled and decoded).
Writes benchmarks/results/generators-<task>.json (+ .png: quality against steps), refreshes generators.json (every
task's latest results in one file) and prints the JSON.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, arg_parser, command_line, machine_info, standard_error,  # noqa: E402
                    target, write_result)

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.data.manifest import read_manifest  # noqa: E402
from tokenwave.flow.sample import stream_chunks  # noqa: E402
from tokenwave.lm.generate import stream as lm_stream  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

FIELD = {"sfx": "family", "music": "instrument"}
#: this comparison's own sampling (CFG 2, Euler), whatever defaults generators.json sets for users
FIXED = {"cfg_scale": 2.0, "solver": "euler", "temperature": 0.9, "top_k": 100}


@torch.no_grad()
def flow_first_audio(task, prompt: str, steps: int) -> float:
    g = task.generators["flow"]
    ids, mask = g.vocab.encode([task.read_prompt(prompt, "flow")])
    cond = g.tags(ids, mask)
    window, overlap = task.flow_window_overlap(g)
    t0 = time.perf_counter()
    next(iter(stream_chunks(g.model, task.codec, 750, window, overlap, cond, Sampling(steps=steps).flow_params())))
    return time.perf_counter() - t0


@torch.no_grad()
def lm_first_audio(task, prompt: str) -> float:
    from tokenwave.codec.streaming import StreamingDecoder

    g = task.generators["lm"]
    ids, mask = g.vocab.encode([task.read_prompt(prompt, "lm")])
    cond = g.tags(ids, mask)
    t0 = time.perf_counter()
    with StreamingDecoder(task.codec) as dec:
        for step in lm_stream(g.model, task.window_overlap(cond)[0], cond, Sampling().lm_params()):  # its first window
            if step[0].shape[-1]:
                dec.push(step[0][None])
                break
    return time.perf_counter() - t0


def score(wavs: list[np.ndarray], rows: list[dict], sr: int, field: str, per_item: bool = False) -> dict:
    """Mean tag accuracy (and of ``field`` alone), CLAP score and the tag accuracy's standard error over the clips;
    ``per_item``: also each clip's tag accuracy and CLAP score (for paired comparisons)."""
    from tokenwave.eval.clap import load_clap
    from tokenwave.eval.tagger import content_labels, load_tagger

    tagger, clap = load_tagger(), load_clap()
    acc, fam, cl = [], [], []
    for wav, r in zip(wavs, rows):
        pred, want = tagger.predict(wav, sr), content_labels(r)
        acc.append(np.mean([pred.get(k) == v for k, v in want.items()]))
        fam.append(pred.get(field) == want.get(field))
        cl.append(clap.score(r["caption"], wav, sr))
    out = {"tag_acc": float(np.mean(acc)), f"{field}_acc": float(np.mean(fam)), "clap": float(np.mean(cl)),
           "tag_acc_se": standard_error(acc)}
    if per_item:
        out.update(tag_acc_items=[float(a) for a in acc], clap_items=[float(c) for c in cl])
    return out


def plot(figures: dict, path: Path) -> None:
    """Tag accuracy and CLAP score against flow steps, the token LM and the real renders as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tokenwave.plots import save_figure

    steps = sorted(int(k) for k in figures["flow"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, name in ((axes[0], "tag_acc", "tag accuracy (project tagger)"), (axes[1], "clap", "CLAP score")):
        ax.plot(steps, [figures["flow"][str(k)][key] for k in steps], marker="o", label="flow matching (Euler)")
        ax.axhline(figures["token_lm"][key], color="#c73", ls="--", label="token LM")
        ax.axhline(figures["real_renders"][key], color="grey", ls=":", label="real renders")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("flow ODE steps")
        ax.set_title(f"{figures['task']}: {name}, {figures['items']} held-out captions", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def write_summary() -> dict | None:
    """``generators.json``: every task's latest ``generators-<task>.json``, targets prefixed by the task."""
    import datetime

    from common import atomic_write_text

    parts = {t: json.loads(p.read_text()) for t in ("sfx", "music") if (p := RESULTS_DIR / f"generators-{t}.json").exists()}
    if not parts:
        return None
    summary = {"benchmark": "generators", "command": " ; ".join(r["command"] for r in parts.values()),
               "quick": any(r["quick"] for r in parts.values()), "date": datetime.date.today().isoformat(),
               "machine": next(iter(parts.values()))["machine"],
               "targets": [{**t, "name": f"{task}_{t['name']}", "command": t.get("command", r["command"])}
                           for task, r in parts.items() for t in r["targets"]],
               "figures": {task: {**r["figures"], "source": f"benchmarks/results/generators-{task}.json", "date": r["date"]}
                           for task, r in parts.items()}}
    atomic_write_text(RESULTS_DIR / "generators.json", json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    return summary


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("sfx", "music"), default="sfx")
    parser.add_argument("--summary-only", action="store_true",
                        help="only rebuild generators.json from the per-task results already written")
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.summary_only:
        print(json.dumps(write_summary(), indent=1))
        return
    torch.set_num_threads(args.threads)
    items = args.items or (3 if args.quick else 12)
    data = REPO_ROOT / "data" / args.task
    field = FIELD[args.task]
    rows = [r for r in read_manifest(data) if r["split"] == "test" and r.get("caption")][:items]
    task = load_task(args.task)
    if set(task.generators) != {"lm", "flow"}:
        raise SystemExit(f"checkpoints/{args.task} needs both generators (the token LM and flow/); it has {sorted(task.generators)}")
    lm, flow = task.generators["lm"], task.generators["flow"]
    sr = task.sample_rate
    figures: dict = {"task": args.task, "items": len(rows), "lm_model": str(lm.folder), "flow_model": str(flow.folder),
                     "flow_params_m": sum(p.numel() for p in flow.model.parameters()) / 1e6,
                     "lm_params_m": sum(p.numel() for p in lm.model.parameters()) / 1e6,
                     "flow_patch": flow.model.cfg.patch, "default_generator": task.default_generator}
    real = [load_audio(data / r["path"], sr)[0] for r in rows]
    figures["real_renders"] = score(real, rows, sr, field)

    def render(r: dict, i: int, generator: str, steps: int = 16) -> np.ndarray:
        return task.generate(r["caption"], min(r["duration"], 10.0), Sampling(seed=i, steps=steps, **FIXED), watermark=False,
                             generator=generator).wav

    figures["token_lm"] = score([render(r, i, "lm") for i, r in enumerate(rows)], rows, sr, field)
    figures["flow"] = {}
    for steps in ((8,) if args.quick else (4, 8, 16, 32)):
        figures["flow"][str(steps)] = score([render(r, i, "flow", steps) for i, r in enumerate(rows)], rows, sr, field)
    prompt = {"sfx": "heavy rain on a tin roof with distant thunder", "music": "lively irish fiddle reel in D major"}[args.task]
    speed = {}
    for name, gen, steps in (("token_lm", "lm", 16), ("flow16", "flow", 16), ("flow8", "flow", 8)):
        task.generate(prompt, 2.0, Sampling(seed=0, steps=steps, **FIXED), watermark=False, generator=gen)  # warm-up
        t = []
        for i in range(1 if args.quick else 3):
            t0 = time.perf_counter()
            task.generate(prompt, 10.0, Sampling(seed=i, steps=steps, **FIXED), watermark=False, generator=gen)
            t.append(time.perf_counter() - t0)
        speed[f"{name}_10s_render_s"] = float(np.median(t))
        speed[f"{name}_10s_x_realtime"] = 10.0 / float(np.median(t))
    speed["token_lm_first_audio_s"] = float(np.median([lm_first_audio(task, prompt) for _ in range(3)]))
    speed["flow16_first_audio_s"] = float(np.median([flow_first_audio(task, prompt, 16) for _ in range(3)]))
    figures["speed"] = speed
    best_flow = max(figures["flow"].values(), key=lambda v: v["tag_acc"])
    figures["threads"] = args.threads
    figures["speed_note"] = ("render times on --threads threads of a machine that may be busy; the 10x-real-time target "
                             "is measured by benchmarks/flow.py on 2 free threads")
    # the claim: flow matching wins clip rendering (quality), token-AR wins streaming (first audio)
    targets = [target("flow_best_tag_acc_over_token_lm", best_flow["tag_acc"] / max(figures["token_lm"]["tag_acc"], 1e-9),
                      ">=", 1.0),
               target("token_lm_first_audio_over_flow16", speed["token_lm_first_audio_s"] / speed["flow16_first_audio_s"],
                      "<=", 1.0)]
    result = write_result(f"generators-{args.task}", command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / f"generators-{args.task}.png")
    write_summary()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
