"""Fine-tuned decoders against the codec's general decoder, on the same codes or latents (`tokenwave train decoder`).

    python benchmarks/decoder.py [--quick] [--task tts|music|sfx] [--decoder DIR] [--baseline DIR] [--data DIR]
                                 [--split test] [--items N] [--name NAME]

Both decoders decode the same codes (the codec's encoder and quantizer are shared and frozen), so a generator's
output changes only in how its tokens or latents become sound.

``--task tts`` (candidate ``--decoder``, default ``checkpoints/tts/decoder``; baseline ``--baseline``, default the
codec's own decoder): ``--items`` clips spread over DATA's split (the test split's speakers are held out of every
training run), two ways:
- resynthesis: the engine's own speech, encoded at the decoder's bitrate and decoded by each decoder (a
  phone-informed one given the clip's phones when DATA has ``alignments.jsonl``); CER and WER (PocketSphinx, the
  recogniser of the TTS bar), DNSMOS, and against the engine's clip mel distance, STFT distance, SI-SDR, PESQ-wb and
  STOI;
- generated: the TTS model (``--model``, default ``checkpoints/tts``) speaking the clip's sentence in the voice of
  another clip of its speaker (seed = item index, the model's default sampling, as ``benchmarks/tasks.py``), the
  same tokens decoded by each decoder; CER, WER, DNSMOS and the speaker encoder's cosine to the row's own
  recording against another speaker's (``speaker_margin``).
The engine's own CER is the floor of the TTS bar (generated CER <= 1.2x the engine's); the paired differences
(candidate - baseline, same clips and tokens) decide.

``--task music|sfx`` (default decoder ``checkpoints/music/flow/decoder``, for the flow generator's latents, or
``checkpoints/sfx/decoder``, for the token LM's 3 kbps codes): the captioned clips of the split, resynthesised
through each decoder, and the generator's output for each caption (same seed, so the same latents or tokens)
decoded by each; scored by the project tagger (tag accuracy, as in the tasks bar) and the CLAP score, beside the
real renders, with paired differences.

Writes benchmarks/results/NAME.json (default ``decoder``, or ``decoder-<task>`` for music and sfx) and NAME.png.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, arg_parser, command_line, machine_info, paired_difference, ratio,  # noqa: E402
                    standard_error, target, write_result)

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.codec import load_codec  # noqa: E402
from tokenwave.codec.decoders import decoder_n_q, load_decoder  # noqa: E402
from tokenwave.data.manifest import audio_path, read_manifest  # noqa: E402
from tokenwave.errors import TokenwaveError  # noqa: E402
from tokenwave.eval.asr import cer, transcribe, wer  # noqa: E402
from tokenwave.eval.fidelity import fidelity  # noqa: E402
from tokenwave.eval.mos import dnsmos  # noqa: E402
from tokenwave.plots import save_figure  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402

SR = 24000
SYSTEMS = ("engine", "baseline", "candidate")


def pick_rows(data: Path, split: str, n: int) -> list[dict]:
    rows = sorted(read_manifest(data, split), key=lambda r: r["id"])
    idx = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    return [rows[i] for i in idx]


def score(row: dict, wav: np.ndarray, ref: np.ndarray | None) -> dict:
    hyp = transcribe(wav, SR)
    out = {"cer": cer(row["text"], hyp), "wer": wer(row["text"], hyp), "transcript": hyp,
           **{f"dnsmos_{k}": v for k, v in dnsmos(wav, SR).items()}}
    if ref is not None:
        out.update({k: v for k, v in fidelity(ref, wav, SR, speech=True).items() if not k.endswith("_error")})
    return out


def mean_se(rows: list[dict], system: str, metric: str) -> tuple[float, float]:
    vals = [r[system][metric] for r in rows if r[system].get(metric) is not None]
    return float(np.mean(vals)), standard_error(vals)


def make_figure(summary: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    panels = [("cer", "CER (PocketSphinx)", SYSTEMS), ("cer", "CER of generated speech", ("engine", "baseline_generated",
              "candidate_generated")), ("stoi", "STOI", SYSTEMS), ("dnsmos_ovrl", "DNSMOS overall", SYSTEMS)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4))
    colors = {"engine": "#888", "baseline": "#69c", "candidate": "#d62"}
    for ax, (metric, title, systems) in zip(axes, panels):
        systems = [s for s in systems if metric in summary[s]]
        ax.bar([s.split("_")[0] for s in systems], [summary[s][metric] for s in systems],
               yerr=[summary[s].get(f"{metric}_se", 0) for s in systems],
               color=[colors[s.split("_")[0]] for s in systems], capsize=3)
        if title.startswith("CER of"):
            ax.axhline(1.2 * summary["engine"]["cer"], color="k", lw=0.8, ls="--", label="bar: 1.2x engine")
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle("engine speech and generated speech through the baseline and the candidate decoder", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def tagged(args) -> tuple[dict, list[dict], dict]:
    """music / sfx: tag accuracy and CLAP of real renders, their resynthesis and the flow generator's output."""
    from generators import FIELD, score

    from tokenwave.tasks import Sampling, load_task

    general = load_codec(args.codec)
    tuned = load_decoder(args.decoder, general)
    n_q = decoder_n_q(args.decoder)
    generator = "flow" if n_q == 0 else "lm"  # latents come from the flow model, codes from the token LM
    task = load_task(args.task, generator=generator)
    rows = [r for r in sorted(read_manifest(args.data, args.split), key=lambda r: r["id"]) if r.get("caption")]
    rows = rows[: 4 if args.quick else args.items]
    wavs: dict[str, list[np.ndarray]] = {k: [] for k in ("reference", "general", "tuned", "generated_general", "generated_tuned")}
    with progress_bar("decoders", len(rows), "clips") as bar, torch.no_grad():
        for i, row in enumerate(rows):
            ref, _ = load_audio(audio_path(args.data, row), SR)
            x = torch.from_numpy(ref)[None, None]
            wavs["reference"].append(ref)
            for name, codec in (("general", general), ("tuned", tuned)):
                if n_q:
                    wavs[name].append(codec.reconstruct(x, n_q)[0, 0].numpy())
                else:
                    z = codec.encode_latents(torch.nn.functional.pad(x, (0, codec.decoder.istft.tail)))
                    wavs[name].append(codec.decode_latents(z)[0, 0].numpy()[: len(ref)])
                task.decoders = {generator: codec}  # the same latents or tokens (same seed), decoded by this decoder
                wavs[f"generated_{name}"].append(task.generate(row["caption"], min(row["duration"], 10.0),
                                                               Sampling(seed=i), watermark=False).wav)
            bar.advance()
    scored = {k: score(v, rows, SR, FIELD[args.task], per_item=True) for k, v in wavs.items()}
    summary = {k: {m: v for m, v in s.items() if not m.endswith("_items")} for k, s in scored.items()}
    for k in ("general", "tuned", "generated_general", "generated_tuned"):
        summary[k]["tag_acc_over_real"] = ratio(summary[k]["tag_acc"], summary["reference"]["tag_acc"])
    paired = {}  # tuned minus general on the same clips: mean and standard error of the difference
    for a, b in (("tuned", "general"), ("generated_tuned", "generated_general")):
        for m in ("tag_acc", "clap"):
            paired[f"{a}_minus_{b}_{m}"] = paired_difference(scored[a][f"{m}_items"], scored[b][f"{m}_items"])
    figures = {"decoder": str(args.decoder), "input": "latents" if n_q == 0 else f"{n_q} codebooks", "generator": generator,
               "data": str(args.data), "split": args.split, "clips": len(rows), "summary": summary, "paired": paired,
               "ids": [r["id"] for r in rows]}
    targets = [target("tuned_generated_tag_acc_over_general", ratio(summary["generated_tuned"]["tag_acc"],
                                                                     summary["generated_general"]["tag_acc"]), ">", 1.0),
               target("tuned_resynthesis_tag_acc_over_general", ratio(summary["tuned"]["tag_acc"],
                                                                      summary["general"]["tag_acc"]), ">", 1.0)]
    return figures, targets, summary


def tagged_figure(summary: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    systems = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, metric in zip(axes, ("tag_acc", "clap")):
        ax.bar(systems, [summary[s][metric] for s in systems], yerr=[summary[s].get(f"{metric}_se", 0) for s in systems],
               color=["#888", "#69c", "#d62", "#69c", "#d62"], capsize=3)
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    fig.suptitle("real renders, their resynthesis and the generator's output: general and fine-tuned decoder", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> dict:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("tts", "music", "sfx"), default="tts")
    parser.add_argument("--decoder", type=Path, default=None,
                        help="default: checkpoints/tts/decoder, checkpoints/music/flow/decoder, checkpoints/sfx/decoder")
    parser.add_argument("--codec", type=Path, default=None, help="the codec (default: checkpoints/codec)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="tts: the decoder to compare against (default: the codec's own decoder)")
    parser.add_argument("--model", type=Path, default=None, help="tts: the TTS model that speaks (default: checkpoints/tts)")
    parser.add_argument("--data", type=Path, default=None, help="default: data/speech, or data/<task>")
    parser.add_argument("--split", default="test")
    parser.add_argument("--items", type=int, default=None, help="default: 40 (tts), 24 (music, sfx)")
    parser.add_argument("--name", default=None, help="results file name (default: decoder, or decoder-<task>)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    ck = REPO_ROOT / "checkpoints"
    args.decoder = args.decoder or {"tts": ck / "tts" / "decoder", "music": ck / "music" / "flow" / "decoder",
                                    "sfx": ck / "sfx" / "decoder"}[args.task]
    args.data = args.data or REPO_ROOT / "data" / ("speech" if args.task == "tts" else args.task)
    args.items = args.items or (40 if args.task == "tts" else 24)
    args.name = args.name or ("decoder" if args.task == "tts" else f"decoder-{args.task}")
    if args.task != "tts":
        try:
            figures, targets, summary = tagged(args)
        except TokenwaveError as err:
            sys.exit(f"error: {err.one_line()}")
        result = write_result(args.name, command_line(__file__, argv), targets, figures, args.quick, machine_info())
        tagged_figure(summary, RESULTS_DIR / f"{args.name}.png")
        print(json.dumps({k: v for k, v in result.items() if k != "figures"} | {"summary": summary}, indent=1))
        return result
    try:
        figures, targets, summary = speech(args)
    except TokenwaveError as err:
        sys.exit(f"error: {err.one_line()}")
    result = write_result(args.name, command_line(__file__, argv), targets, figures, args.quick, machine_info())
    make_figure(summary, RESULTS_DIR / f"{args.name}.png")
    print(json.dumps({k: v for k, v in result.items() if k != "figures"} | {"summary": summary}, indent=1))
    return result


def speech(args) -> tuple[dict, list[dict], dict]:
    """tts: resynthesis and generated speech through the baseline and the candidate decoder."""
    from tokenwave.data.align import dataset_alignments
    from tokenwave.eval.speaker import load_speaker_encoder
    from tokenwave.eval.suite import other_speaker_row
    from tokenwave.tasks.base import Sampling
    from tokenwave.tasks.tts import TTS, voice_prompt_for

    codec = load_codec(args.codec)
    tts = {"baseline": TTS(args.model, codec, decoder=args.baseline if args.baseline is not None else False),
           "candidate": TTS(args.model, codec, decoder=args.decoder)}
    spk = load_speaker_encoder()
    rows = pick_rows(args.data, args.split, 6 if args.quick else args.items)
    alignments = dataset_alignments(args.data)
    results = []
    with progress_bar("decoders", len(rows), "clips") as bar, torch.no_grad():
        for i, row in enumerate(rows):
            ref, _ = load_audio(audio_path(args.data, row), SR)
            prompt = voice_prompt_for(row, args.data)
            item = {"id": row["id"], "speaker": row.get("speaker"), "text": row["text"], "engine": score(row, ref, None)}
            # speaker similarity of the generated speech: to the row's own recording, and to the next row's of
            # another speaker (the evaluation suite's measure)
            other = other_speaker_row(rows, i) or row
            e_ref, e_other = spk.embed(ref, SR), spk.embed(load_audio(audio_path(args.data, other), SR)[0], SR)
            for s, task in tts.items():
                item[s] = score(row, task.resynthesize(ref, alignments.get(row["id"])), ref)
                gen = task.synthesize(row["text"], sampling=Sampling(seed=i), watermark=False, consent_check=False,
                                      **prompt).wav
                e_gen = spk.embed(gen, SR)
                item[f"{s}_generated"] = score(row, gen, None) | {
                    "speaker_sim": float(e_gen @ e_ref), "other_speaker_sim": float(e_gen @ e_other),
                    "speaker_margin": float(e_gen @ e_ref - e_gen @ e_other)}
            results.append(item)
            bar.advance()
    summary: dict = {}
    for s in (*SYSTEMS, "baseline_generated", "candidate_generated"):
        summary[s] = {}
        for m in (k for k, v in results[0][s].items() if isinstance(v, float)):
            summary[s][m], summary[s][f"{m}_se"] = mean_se(results, s, m)
        if s != "engine":
            summary[s]["cer_over_engine"] = ratio(summary[s]["cer"], summary["engine"]["cer"])
    paired = {way: paired_difference([r[f"candidate{way}"]["cer"] for r in results],
                                     [r[f"baseline{way}"]["cer"] for r in results]) for way in ("", "_generated")}
    margin = paired_difference([r["candidate_generated"]["speaker_margin"] for r in results],
                               [r["baseline_generated"]["speaker_margin"] for r in results])
    figures = {"candidate": str(args.decoder), "baseline": str(args.baseline or "the codec's own decoder"),
               "model": str(args.model or "checkpoints/tts"), "codebooks": tts["candidate"].K,
               "kbps": codec.bitrate(tts["candidate"].K) / 1000, "data": str(args.data), "split": args.split,
               "clips": len(results), "phone_timings": bool(alignments), "summary": summary,
               "resynthesis_cer_candidate_minus_baseline": paired[""],
               "generated_cer_candidate_minus_baseline": paired["_generated"],
               "generated_speaker_margin_candidate_minus_baseline": margin,
               "per_clip": [{"id": r["id"], **{s: {"cer": round(r[s]["cer"], 4), "transcript": r[s]["transcript"]}
                                              for s in (*SYSTEMS, "baseline_generated", "candidate_generated")}}
                            for r in results]}
    targets = [target("candidate_generated_cer_over_baseline",
                      ratio(summary["candidate_generated"]["cer"], summary["baseline_generated"]["cer"]), "<", 1.0),
               target("candidate_resynthesis_cer_over_baseline",
                      ratio(summary["candidate"]["cer"], summary["baseline"]["cer"]), "<", 1.0),
               target("candidate_stoi_over_baseline", ratio(summary["candidate"]["stoi"], summary["baseline"]["stoi"]), ">", 1.0),
               target("candidate_generated_cer_over_engine", summary["candidate_generated"]["cer_over_engine"], "<=", 1.2)]
    return figures, targets, summary


if __name__ == "__main__":
    main()
