"""Accent detection of voice prompts (tokenwave.speech.accent): how often the accent a prompt is spoken in is found
from the recording and its transcript, as TTS does with ``--prompt-text``.

    python benchmarks/accent.py [--quick] [--items 60] [--data data/speech]

The first ``--items`` clips of ``--data``'s valid split (training voices) and test split (voices unseen in
training), each trimmed as a voice prompt is. An espeak-ng clip's accent is its speaker's; a flite clip has none of
espeak-ng's accents, so the right answer there is to abstain (the TTS then keeps the reference accent). Beside it,
in the same run, the baseline TTS used before: every prompt timed in the reference accent (``en-us``), and chance
(one accent in the number there are). Also the seconds each detection takes.
Writes benchmarks/results/accent.json (+ accent.png: the confusion of each split) and prints the JSON.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, RESULTS_DIR, arg_parser, command_line, machine_info, target, write_result  # noqa: E402

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.data.manifest import audio_path, read_manifest  # noqa: E402
from tokenwave.speech import REFERENCE_VOICE, accents, detect_accent, timing_of_voice  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402
from tokenwave.tasks.tts import trim_silence  # noqa: E402

SR = 24_000


def measure(data: Path, split: str, items: int) -> dict:
    rows = [r for r in sorted(read_manifest(data, split), key=lambda r: r["id"]) if r.get("text")][:items]
    found, truth, seconds, fits = [], [], [], []
    with progress_bar(f"accent {split}", total=len(rows), unit="clips") as bar:
        for r in rows:
            wav, _ = load_audio(audio_path(data, r), SR)
            t0 = time.perf_counter()
            m = detect_accent(trim_silence(wav, SR), SR, r["text"])
            seconds.append(time.perf_counter() - t0)
            found.append(m.accent)
            truth.append(timing_of_voice(r["speaker"])[0])  # None for a flite voice
            fits.append(m.score)
            bar.advance(1)
    espeak = [i for i, t in enumerate(truth) if t is not None]
    other = [i for i, t in enumerate(truth) if t is None]
    confusion: dict[str, dict[str, int]] = {}
    per_speaker: dict[str, list[int]] = {}
    for r, f, t in zip(rows, found, truth):
        row = confusion.setdefault(str(t), {})
        row[str(f)] = row.get(str(f), 0) + 1
        per_speaker.setdefault(r["speaker"], []).append(int(f == t))
    return {
        "clips": len(rows), "espeak_clips": len(espeak), "other_engine_clips": len(other),
        "accuracy": float(np.mean([found[i] == truth[i] for i in espeak])) if espeak else None,
        "abstained_on_espeak": float(np.mean([found[i] is None for i in espeak])) if espeak else None,
        "abstained_on_other_engines": float(np.mean([found[i] is None for i in other])) if other else None,
        "reference_accuracy": float(np.mean([truth[i] == REFERENCE_VOICE for i in espeak])) if espeak else None,
        "fit_median": {"espeak": float(np.median([fits[i] for i in espeak])) if espeak else None,
                       "other_engines": float(np.median([fits[i] for i in other])) if other else None},
        "seconds_median": float(np.median(seconds)), "seconds_max": float(np.max(seconds)),
        "per_speaker": {s: f"{sum(h)}/{len(h)}" for s, h in sorted(per_speaker.items())},
        "confusion": confusion,
    }


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = accents() + ["None"]
    splits = [s for s in ("valid", "test") if s in figures]
    fig, axes = plt.subplots(1, len(splits), figsize=(6 * len(splits), 5.5), squeeze=False)
    for ax, split in zip(axes[0], splits):
        conf = figures[split]["confusion"]
        m = np.array([[conf.get(t, {}).get(f, 0) for f in names] for t in names], dtype=float)
        ax.imshow(m, cmap="Blues")
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, int(v), ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=70, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        acc = figures[split]["accuracy"]
        ax.set_title(f"{split}: accent found {acc:.0%} of espeak-ng clips" if acc is not None else split)
        ax.set_xlabel("detected (None: abstained)")
        ax.set_ylabel("spoken in (None: flite)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=None, help="clips per split (default 60; quick 6)")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "speech")
    args = parser.parse_args()
    items = args.items or (6 if args.quick else 60)
    figures = {split: measure(args.data, split, items) for split in ("valid", "test")}
    figures["accents"] = accents()
    figures["chance"] = 1 / len(figures["accents"])
    test = figures["test"]
    targets = [target("test_accent_accuracy", test["accuracy"], ">=", 0.8),
               target("test_accent_accuracy_over_chance", test["accuracy"] / figures["chance"], ">=", 4.0),
               target("test_other_engines_abstained", test["abstained_on_other_engines"], ">=", 0.8)]
    result = write_result("accent", command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / "accent.png")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
