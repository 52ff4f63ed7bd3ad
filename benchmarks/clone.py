"""Voice cloning from 3 s of real human speech: does the cloned speech sound like its prompt's speaker, and can it
still be understood? Judged by third-party models, Piper and espeak-ng measured on the same sentences in the run.

    python benchmarks/clone.py [--quick] [--model checkpoints/tts] [--data data/real-speech] [--trials 2]

Speakers: every speaker of the real speech corpus (``tokenwave data build real-speech``) that no TTS model of this
project has heard. The shipped TTS models learned from synthetic speech only (espeak-ng and flite voices,
``checkpoints/tts/MODEL.md``), so that is every speaker the corpus holds whose recordings give a prompt and a
reference: its valid and test speakers (the asterisk telephony speakers, minor characters of the Czech dialogue)
and the train-split ones (the hedgewars voice packs, more characters of the Czech dialogue). Each is marked with its
split in ``figures.speakers``, and the identification is also reported among the held-out-split speakers alone.
Where one person speaks under two names (the asterisk speaker Allison records en_US and es_MX), the names are one
speaker. A speaker needs at least 6 s of audio: the first 3 s of its clips (in id order, joined) are the prompt, the
following clips (up to 10 s) its reference.

Each trial speaks one of benchmarks/tts.py's unseen sentences in one speaker's voice (``--trials`` sentences per
speaker, seeds fixed). Judges: Resemblyzer cosine of the output to every speaker's reference: identified when its
own speaker's is the highest (target: at least 80 % of trials, among at least 10 speakers), and the margin; Whisper
tiny.en CER of the output against Piper's and espeak-ng's CER on the same sentences (targets as for the built-in
voices: at most 2x Piper's and below espeak-ng's); DNSMOS OVRL. The ceiling the judge allows: the speakers' own
prompts identified against the references.
Writes benchmarks/results/clone.json (+ clone.png) and prints the JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (REPO_ROOT, RESULTS_DIR, arg_parser, command_line, machine_info, ratio, repo_path,  # noqa: E402
                    standard_error, target, write_result)
from tts import SENTENCES  # noqa: E402

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.data.manifest import audio_path, read_manifest  # noqa: E402
from tokenwave.eval.judges import identify_speakers, load_resemblyzer, load_whisper  # noqa: E402
from tokenwave.eval.mos import dnsmos  # noqa: E402
from tokenwave.eval.peers import ESPEAK_RATE, espeak_ng, load_piper  # noqa: E402
from tokenwave.plots import save_figure  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

SR = 24000
PROMPT_S, REFERENCE_S, GAP_S = 3.0, 10.0, 0.15
#: one person under several corpus names
SAME_PERSON = {"asterisk:en_US_f_Allison": "asterisk:Allison", "asterisk:es_MX_f_Allison": "asterisk:Allison"}


def person(speaker: str) -> str:
    return SAME_PERSON.get(speaker, speaker)


def speaker_audio(data: Path) -> dict[str, dict]:
    """Person -> ``{"prompt": wav, "prompt_text": str | None, "reference": wav, "split": str}`` (24 kHz): the
    first ``PROMPT_S`` of its clips joined (id order), then up to ``REFERENCE_S`` of the clips after them."""
    rows: dict[str, list[dict]] = {}
    for r in sorted(read_manifest(data), key=lambda r: r["id"]):
        if r.get("speaker"):
            rows.setdefault(person(r["speaker"]), []).append(r)
    gap = np.zeros(int(GAP_S * SR), np.float32)
    out = {}
    for name, rs in sorted(rows.items()):
        if sum(r["duration"] for r in rs) < PROMPT_S + 3.0:
            continue
        prompt, texts, i = [], [], 0
        while i < len(rs) and sum(map(len, prompt)) < PROMPT_S * SR:
            prompt += [load_audio(audio_path(data, rs[i]), SR)[0], gap]
            texts.append(rs[i].get("text") if rs[i].get("language", "").startswith("en") else None)
            i += 1
        ref = []
        while i < len(rs) and sum(map(len, ref)) < REFERENCE_S * SR:
            ref += [load_audio(audio_path(data, rs[i]), SR)[0], gap]
            i += 1
        if sum(map(len, ref)) < 2.0 * SR:
            continue
        whole = np.concatenate(prompt)
        cut = whole[: int(PROMPT_S * SR)]
        # the words of the prompt, when every joined clip is English and whole inside the cut
        text = " ".join(texts) if all(texts) and len(whole) - len(gap) <= len(cut) else None
        out[name] = {"prompt": cut, "prompt_text": text, "reference": np.concatenate(ref),
                     "split": rs[0]["split"], "package": rs[0].get("package")}
    return out


def plot(figures: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    sims = np.array(figures["similarity_matrix"])
    names = figures["speaker_names"]
    im = axes[0].imshow(sims, cmap="viridis", aspect="auto")
    axes[0].set_yticks(range(len(names)), names, fontsize=6)
    axes[0].set_xticks(range(len(names)), names, fontsize=6, rotation=90)
    axes[0].set_ylabel("prompt speaker (mean over trials)")
    axes[0].set_xlabel("reference speaker")
    axes[0].set_title(f"Resemblyzer cosine, cloned speech: identified {figures['identified']:.2f}")
    fig.colorbar(im, ax=axes[0])
    q = figures["words"]
    systems = list(q)
    axes[1].bar(systems, [q[s]["cer"] for s in systems], yerr=[q[s]["cer_se"] for s in systems], color="#6ad")
    axes[1].set_ylabel("Whisper CER (lower is better)")
    axes[1].set_title("the same sentences")
    save_figure(fig, path)


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "checkpoints" / "tts")
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "real-speech")
    parser.add_argument("--trials", type=int, default=None, help="sentences per speaker (default 2; quick 1)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trials = args.trials or (1 if args.quick else 2)
    speakers = speaker_audio(args.data)
    if args.quick:
        speakers = dict(list(speakers.items())[:: max(1, len(speakers) // 6)])
    names = sorted(speakers)
    tts = load_task("tts", args.model)
    enc, whisper, piper = load_resemblyzer(), load_whisper(), load_piper(args.threads)
    refs = {n: enc.embed(speakers[n]["reference"], SR) for n in names}
    plan = [(n, SENTENCES[(k * len(names) + j) % len(SENTENCES)], k * len(names) + j)
            for k in range(trials) for j, n in enumerate(names)]
    embs, items = [], []
    with progress_bar("cloning", total=len(plan), unit="trials") as bar:
        for name, text, seed in plan:
            sp = speakers[name]
            res = tts.synthesize(text, (sp["prompt"], SR), Sampling(seed=seed), watermark=False, consent_check=False,
                                 prompt_text=sp["prompt_text"])
            embs.append(enc.embed(res.wav, res.sample_rate))
            heard = whisper.score(res.wav, res.sample_rate, text)
            items.append({"speaker": name, "text": text, "seed": seed, "cer": heard["cer"], "wer": heard["wer"],
                          "ovrl": dnsmos(res.wav, res.sample_rate)["ovrl"]})
            bar.advance(1)
    texts = sorted({it["text"] for it in items})
    peers = {"piper": [whisper.score(piper.synthesize(t), piper.sample_rate, t) for t in texts],
             "espeak-ng": [whisper.score(espeak_ng(t), ESPEAK_RATE, t) for t in texts]}
    q = np.stack(embs)
    spk = [it["speaker"] for it in items]
    ident = identify_speakers(q, spk, refs)
    held = [n for n in names if speakers[n]["split"] in ("valid", "test")]
    keep = [i for i, s in enumerate(spk) if s in held]
    ident_held = identify_speakers(q[keep], [spk[i] for i in keep], {n: refs[n] for n in held}) if len(held) > 1 else None
    ceiling = identify_speakers(np.stack([enc.embed(speakers[n]["prompt"], SR) for n in names]), names, refs)
    ref_mat = np.stack([refs[n] for n in names])
    sim = q @ ref_mat.T
    matrix = [sim[[i for i, s in enumerate(spk) if s == n]].mean(0).tolist() for n in names]
    def heard(scores: list[dict]) -> dict:
        cers = [x["cer"] for x in scores]
        return {"cer": float(np.mean(cers)), "wer": float(np.mean([x["wer"] for x in scores])),
                "cer_se": standard_error(cers), "items": len(scores)}

    words = {"tokenwave_cloned": heard(items), **{p: heard(scores) for p, scores in peers.items()}}
    figures = {
        "model": repo_path(args.model), "data": repo_path(args.data), "trials_per_speaker": trials,
        "speakers": {n: {"split": speakers[n]["split"], "package": speakers[n]["package"],
                         "prompt_has_text": speakers[n]["prompt_text"] is not None} for n in names},
        "speaker_names": names, "candidates": len(names), "identified": ident["identified"],
        "margin": ident["margin"], "hits": ident["hits"],
        "held_out_split_speakers": {"candidates": len(held), **({k: ident_held[k] for k in ("identified", "margin")}
                                                                if ident_held else {})},
        "similarity_to_prompt_speaker": float(np.mean([sim[i, names.index(s)] for i, s in enumerate(spk)])),
        "ceiling_prompts_identified": ceiling["identified"],
        "words": words, "dnsmos_ovrl": float(np.mean([it["ovrl"] for it in items])), "items": items,
        "similarity_matrix": matrix,
        "judges": {"speaker": "resemblyzer (third-party)", "words": "whisper tiny.en (faster-whisper)",
                   "quality": "DNSMOS P.835 (speechmos)"},
    }
    cer = {s: w["cer"] for s, w in words.items()}
    targets = [
        target("clone_real_identified_share", ident["identified"], ">=", 0.8),
        target("clone_real_speakers", len(names), ">=", 10),
        target("clone_real_cer_over_piper", ratio(cer["tokenwave_cloned"], cer["piper"]), "<=", 2.0),
        target("clone_real_cer_over_espeak", ratio(cer["tokenwave_cloned"], cer["espeak-ng"]), "<", 1.0),
    ]
    result = write_result("clone", command_line(__file__), targets, figures, args.quick, machine_info())
    plot(figures, RESULTS_DIR / "clone.png")
    print(json.dumps({"targets": result["targets"], "words": words, "candidates": len(names),
                      "held_out_split": figures["held_out_split_speakers"],
                      "ceiling": ceiling["identified"]}, indent=1))


if __name__ == "__main__":
    main()
