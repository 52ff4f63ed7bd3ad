"""Reading a prompt's main tag from the nearest training captions, on development prompts (not the test prompts).

    python benchmarks/caption_tags.py [--quick]

``benchmarks/dev/prompts-dev.yaml`` holds prompts written apart from ``benchmarks/prompts.yaml`` (whose prompts are
the test set of ``benchmarks/prompts.py`` and never choose a rule), each with the main tag it means: the family of a
sound effect, the instrument of a piece of music, or ``none`` for a prompt about no sound the models know. For each
task's default text-conditioned generator, every prompt is read by keywords alone (:func:`read_prompt`) and, where
that names no value of the main field, from the training captions nearest the prompt: each of the ``k`` nearest
(by the generator's sentence encoder) whose cosine is at least ``min_cosine`` votes the value its own keywords name,
with its cosine (:func:`tokenwave.tasks.tagged.vote_captions`). Counted: right, wrong (a wrong value, or any value
for a ``none`` prompt) and none (nothing read), over a grid of ``k`` and ``min_cosine``; the setting
``tokenwave.tasks.tagged`` uses (``CAPTION_NEAREST``, ``CAPTION_MIN_COSINE``, ``CAPTION_TAGS`` per task) is marked.

Target, per task whose prompts read captions (``CAPTION_TAGS``): the prompts the captions turn right at least twice
those they turn wrong. Writes benchmarks/results/caption_tags.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import arg_parser, command_line, target, write_result  # noqa: E402

from tokenwave.tasks import load_task  # noqa: E402
from tokenwave.tasks.tagged import (CAPTION_MIN_COSINE, CAPTION_NEAREST, CAPTION_TAGS, main_field,  # noqa: E402
                                    read_prompt, vote_captions)

DEV = Path(__file__).resolve().parent / "dev" / "prompts-dev.yaml"
FIELDS = {"sfx": "family", "music": "instrument"}
GRID_K, GRID_COSINE = (1, 3, 5, 10), (0.3, 0.4, 0.45, 0.5, 0.55)


def score(rows: list[dict], values: dict[str, str | None], k: int | None, min_cosine: float) -> dict:
    """Rows (``want``, keyword-read ``read``, ``near``: nearest captions and cosines) and the value each caption names
    -> right / wrong / none counts, reading from captions (``k`` nearest) where keywords named nothing; ``k`` None:
    keywords alone."""
    right = wrong = none = 0
    for r in rows:
        got = r["read"]
        if got is None and k:
            won = vote_captions(r["near"][:k], values, min_cosine)
            got = won[0] if won else None
        if r["want"] == "none":
            right += got is None
            wrong += got is not None
        elif got == r["want"]:
            right += 1
        elif got is None:
            none += 1
        else:
            wrong += 1
    return {"right": right, "wrong": wrong, "none": none}


def main() -> None:
    args = arg_parser(__doc__.splitlines()[0]).parse_args()
    dev = yaml.safe_load(DEV.read_text())
    figures, targets = {"prompts": str(DEV.relative_to(DEV.parents[2])), "chosen": {
        "k": CAPTION_NEAREST, "min_cosine": CAPTION_MIN_COSINE, "tasks": CAPTION_TAGS}}, []
    for task, field in FIELDS.items():
        t = load_task(task)
        g = next((g for g in t.generators.values() if g.captions is not None), None)
        if g is None:
            figures[task] = {"generator": None, "why": "no text-conditioned generator"}
            continue
        assert main_field(g.vocab.tags, g.extra.get("cooccur")) == field
        values = t.caption_values(g, field)
        items = dev[task][:8] if args.quick else dev[task]
        rows = []
        for it in items:
            read = read_prompt(it["prompt"], g.vocab.tags, t.domain)
            have = next((x.split("=", 1)[1] for x in read if x.startswith(field + "=")), None)
            near = g.captions.nearest(g.embed(it["prompt"]), max(GRID_K))
            rows.append({"prompt": it["prompt"], "want": str(it[field]), "read": have, "near": near})
        keywords = score(rows, values, None, 0.0)
        grid = {f"k={k} min_cosine={c}": score(rows, values, k, c) for k in GRID_K for c in GRID_COSINE}
        chosen = score(rows, values, CAPTION_NEAREST, CAPTION_MIN_COSINE)
        figures[task] = {"generator": g.kind, "field": field, "prompts": len(rows), "keywords": keywords,
                         "captions_chosen": chosen, "grid": grid,
                         "per_prompt": [{k: v for k, v in r.items() if k != "near"}
                                        | {"nearest": [(values[c], s) for c, s in r["near"][:5]]} for r in rows]}
        print(f"{task}: keywords {keywords}; captions (k={CAPTION_NEAREST}, >= {CAPTION_MIN_COSINE}) {chosen}; "
              f"{'read' if CAPTION_TAGS.get(task) else 'not read'} by {task}", flush=True)
        if CAPTION_TAGS.get(task):
            gained, lost = chosen["right"] - keywords["right"], chosen["wrong"] - keywords["wrong"]
            targets.append(target(f"{task}_dev_main_tag_right_gained_over_wrong_gained",
                                  gained / max(lost, 1), ">=", 2.0))
    result = write_result("caption_tags", command_line(__file__), targets, figures, args.quick)
    print(json.dumps(result["targets"], indent=1))


if __name__ == "__main__":
    main()
