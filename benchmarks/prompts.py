"""Free-text prompts against canonical captions (issue 25): 50 hand-written prompts (``benchmarks/prompts.yaml``, 25
music, 25 sfx), phrased as a user would and unlike the training captions, each with the tags it means and a
canonical caption, in the training captions' form, that asks for the same thing.

    python benchmarks/prompts.py [--quick] [--only music sfx] [--candidate music=FOLDER ...] [--seconds 5]

For each task, the shipped default generator (and each ``--candidate`` for that task, a generator folder of the same
kind, e.g. a `tokenwave train flow --text` run's ``model/``, with the shipped decoder) renders every prompt and its
canonical caption with the same seed (the prompt's index), ``--seconds`` each, unwatermarked. Scores, with the
project's judges (the tagger and the CLAP-style model; in-domain: trained on the project's synthetic renders):

- **text-audio score ratio**: the CLAP score of the prompt's render against the canonical caption, over that of
  the canonical caption's own render, summed over the prompts (how much of what the canonical wording gets a free
  wording still gets). Target: at least 0.9.
- **tag accuracy over real recordings'**: the tagger's labels of each prompt's render against the prompt's tags
  (the fields it names), over the tagger's accuracy on the same fields of the held-out test clips of the synthetic
  dataset (``data/music``, ``data/sfx``: recordings of what the tags say). Target: at least 0.8.
- **novelty of the prompts**: each prompt's highest cosine (all-MiniLM-L6-v2) to any training caption or paraphrase
  of the synthetic train split (``data.captions``), reported so "unlike any training caption" can be checked.

What each model made of each prompt (tags read, nearest training captions for a text-conditioned one) is saved.
Writes benchmarks/results/prompts.json (``--quick``: prompts-quick.json, 4 prompts a task) + .png.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, add_candidates, arg_parser, candidates_by_task,  # noqa: E402
                    command_line, kept_targets, repo_path, target, write_result)
from compare import candidate_task  # noqa: E402

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.conditioning.text import sentence_encoder  # noqa: E402
from tokenwave.data.captions import caption_variants  # noqa: E402
from tokenwave.data.manifest import audio_path, read_manifest  # noqa: E402
from tokenwave.eval.clap import load_clap  # noqa: E402
from tokenwave.eval.tagger import load_tagger  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

PROMPTS = Path(__file__).resolve().parent / "prompts.yaml"
TASKS = ("music", "sfx")
CLAP_GOAL, TAG_GOAL = 0.9, 0.8


def load_prompts(path: Path = PROMPTS) -> dict[str, list[dict]]:
    """``prompts.yaml`` -> per task, ``{"prompt", "tags", "canonical"}`` items."""
    data = yaml.safe_load(path.read_text())
    return {t: [{"prompt": p["prompt"], "tags": {k: str(v) for k, v in p["tags"].items()},
                 "canonical": p["canonical"]} for p in data[t]] for t in TASKS if t in data}


def novelty(prompts: list[str], data: Path) -> list[float]:
    """Each prompt's highest cosine to the train split's captions and their paraphrases (the texts a text model
    learns from)."""
    texts = sorted({v for r in read_manifest(data, "train") for v in caption_variants(r, 8)})
    enc = sentence_encoder()
    return (enc.encode(prompts) @ enc.encode(texts).T).max(1).values.tolist()


def real_tag_accuracy(data: Path, fields: set[str], tagger, sr: int) -> float:
    """The tagger's accuracy on ``fields`` over the test clips of ``data`` (mean over clips of the mean over the
    fields each clip has)."""
    hits = []
    for r in read_manifest(data, "test"):
        want = {f: str(v) for f, v in (r.get("tags") or {}).items() if f in fields}
        if want:
            got = tagger.predict(load_audio(audio_path(data, r), sr)[0], sr)
            hits.append(float(np.mean([got.get(f) == v for f, v in want.items()])))
    return float(np.mean(hits))


def bench_task(name: str, items: list[dict], candidates: list[Path], seconds: float) -> tuple[dict, list[dict]]:
    tagger, clap = load_tagger(), load_clap()
    data = REPO_ROOT / "data" / name
    models = {"shipped": load_task(name)}
    for c in candidates:
        models[f"candidate {repo_path(c)}"] = candidate_task(load_task(name), models["shipped"].default_generator, c)
    sr = models["shipped"].sample_rate
    fields = {f for it in items for f in it["tags"]}
    real_acc = real_tag_accuracy(data, fields, tagger, sr)
    out: dict = {"real_tag_accuracy": real_acc, "fields": sorted(fields), "dataset": repo_path(data), "models": {}}
    out["prompt_novelty"] = novelty([it["prompt"] for it in items], data)
    targets = []
    for label, task in models.items():
        g = task.default_generator
        per = {"clap_prompt": [], "clap_canonical": [], "tag_accuracy": [], "read": []}
        with progress_bar(f"{name} {label}", len(items), "prompts") as bar, torch.no_grad():
            for i, it in enumerate(items):
                wav_p = task.generate(it["prompt"], seconds, Sampling(seed=i), watermark=False, generator=g)
                wav_c = task.generate(it["canonical"], seconds, Sampling(seed=i), watermark=False, generator=g).wav
                per["clap_prompt"].append(clap.score(it["canonical"], wav_p.wav, sr))
                per["clap_canonical"].append(clap.score(it["canonical"], wav_c, sr))
                got = tagger.predict(wav_p.wav, sr)
                per["tag_accuracy"].append(float(np.mean([got.get(f) == v for f, v in it["tags"].items()])))
                per["read"].append({"tags": wav_p.metadata["tags"],
                                    "tags_from_captions": wav_p.metadata.get("tags_from_captions", []),
                                    "nearest_captions": wav_p.metadata.get("nearest_captions", [])})
                bar.advance()
        clap_ratio = float(np.sum(per["clap_prompt"]) / max(np.sum(per["clap_canonical"]), 1e-9))
        tag_acc = float(np.mean(per["tag_accuracy"]))
        out["models"][label] = {"generator": g, "text_conditioned": task.generators[g].text is not None,
                                "clap_ratio": clap_ratio, "clap_prompt": float(np.mean(per["clap_prompt"])),
                                "clap_canonical": float(np.mean(per["clap_canonical"])), "tag_accuracy": tag_acc,
                                "tag_accuracy_over_real": tag_acc / real_acc if real_acc else None, "per_prompt": per}
        short = "shipped" if label == "shipped" else "candidate"
        targets += [target(f"{name}_{short}_free_prompt_clap_ratio", clap_ratio, ">=", CLAP_GOAL),
                    target(f"{name}_{short}_free_prompt_tag_accuracy_over_real", tag_acc / real_acc, ">=", TAG_GOAL)]
        targets[-1]["note"] = targets[-2]["note"] = f"model: {label} ({g})"
    return out, targets


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in TASKS if t in figures]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / max(len(figures[t]["models"]) for t in tasks)
    for j, (key, goal, title) in enumerate((("clap_ratio", CLAP_GOAL, "text-audio score: free prompt / canonical"),
                                            ("tag_accuracy_over_real", TAG_GOAL, "tag accuracy / real recordings'"))):
        ax = axes[j]
        for i, t in enumerate(tasks):
            for k, (label, m) in enumerate(figures[t]["models"].items()):
                ax.bar(i + k * width, m[key], width, color=["#999", "#3a7", "#37a"][k % 3],
                       label=label if i == 0 else None)
        ax.axhline(goal, color="k", ls="--", lw=0.8)
        ax.set_xticks([i + width / 2 for i in range(len(tasks))], tasks)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = arg_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=TASKS, default=list(TASKS))
    add_candidates(parser)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    cands = candidates_by_task(parser, args.candidate, TASKS)
    prompts = load_prompts()
    name = "prompts-quick" if args.quick else "prompts"
    path = RESULTS_DIR / f"{name}.json"
    previous = json.loads(path.read_text()) if path.exists() else {}  # the tasks not rerun keep their figures
    figures = {t: f for t, f in previous.get("figures", {}).items() if t in TASKS and t not in args.only}
    targets = kept_targets(previous, lambda t: t["name"].split("_", 1)[0] not in args.only)
    for t in args.only:
        items = prompts[t][:4] if args.quick else prompts[t]
        figures[t], tg = bench_task(t, items, cands[t], args.seconds)
        targets += tg
        if not cands[t]:  # a rerun without candidates keeps the earlier run's candidates, each with its own command
            figures[t]["models"].update({k: m for k, m in previous.get("figures", {}).get(t, {}).get("models", {}).items()
                                         if k.startswith("candidate ")})
            targets += kept_targets(previous, lambda x, t=t: x["name"].startswith(f"{t}_candidate_"))
    result = write_result(name, command_line(__file__, argv), targets, figures, args.quick)
    plot(figures, RESULTS_DIR / f"{name}.png")
    return result


if __name__ == "__main__":
    print(json.dumps({k: v for k, v in main().items() if k != "figures"}, indent=1))
