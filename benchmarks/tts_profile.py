"""Where one thread's CPU time goes when the TTS speaks: each part of a synthesis, as a CPU-time real-time factor.

    python benchmarks/tts_profile.py [--quick] [--model checkpoints/tts] [--voice en-us+m3] [--items 6]

benchmarks/tts.py's sentences, spoken by the built-in voice on one torch thread, by three set-ups interleaved
sentence by sentence (so that load from other processes falls on all alike): the decoding as it was (every step's
frames decoded on their own, ``decode_frames=1``) in fp32; today's decoding (2, 4, then 8 frames a call, 16 after 1.6 s) in fp32;
and in int8 (``TTS(precision="int8")``). Times are CPU seconds of this process (``time.process_time``), not wall
seconds: on a loaded machine they still show what a free core would take (cache sharing still slows them a little).

Each part's time is exclusive (a part called inside another counts for itself only):
frontend (sentence split, espeak-ng phonemes and phone timing: ``TTS.prepare``); the token LM's transformer
(layer norms, residuals, the MLP's GELU), its attention (rotary, KV cache, scaled dot-product), its linear layers
(q/k/v, out, MLP), the K output heads (final norm and the ``K * V`` head) and sampling (top-k, Gumbel draw); the codec's
streaming decoder (phone-informed); "other" is the rest (per-step Python: embedding, pattern bookkeeping, conditioning,
fades). Apart from them, once per recorded voice prompt (then cached): its accent detection (espeak-ng, CPU of
child processes included) and its encoding. Writes benchmarks/results/tts_profile.json; the TTS model card's
profile table is generated from it (scripts/figures.py).
"""
from __future__ import annotations

import functools
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine_info, repo_path, target, write_result  # noqa: E402
from tts import PROMPT_TEXT, chosen_sentences, held_out_prompts, setup_models, speak, speech_parser  # noqa: E402
from tts import SPEED_SETUPS as SETUPS  # noqa: E402

import tokenwave.nn.attention as attention_module  # noqa: E402
from tokenwave.lm import generate as generate_module  # noqa: E402
from tokenwave.lm.model import TokenLM  # noqa: E402
from tokenwave.nn import Attention, Linear  # noqa: E402
from tokenwave.speech import detect_accent  # noqa: E402
from tokenwave.tasks.sources import StepDecoder  # noqa: E402
from tokenwave.tasks.tts import TTS, trim_silence  # noqa: E402

PARTS = ("frontend", "lm_transformer", "lm_attention", "lm_linears", "lm_heads", "lm_sampling", "decoder", "other")


class Scopes:
    """Exclusive CPU seconds per part: each wrapped call's time less that of the wrapped calls inside it."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.stack: list[list] = []  # [part, start, children's seconds]

    def wrap(self, owner, name: str, part: str, inside: tuple[str, ...] = ()) -> None:
        """Time ``owner.name`` as ``part`` (only when called inside one of the ``inside`` parts, if given)."""
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if inside and (not self.stack or self.stack[-1][0] not in inside):
                return fn(*args, **kwargs)
            self.stack.append([part, time.process_time(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                _, start, children = self.stack.pop()
                spent = time.process_time() - start
                self.seconds[part] += spent - children
                if self.stack:
                    self.stack[-1][2] += spent

        setattr(owner, name, timed)


def cpu_with_children() -> float:
    child = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + child.ru_utime + child.ru_stime


def prompt_costs(tts: TTS) -> dict:
    """CPU seconds of one recorded voice prompt's accent detection and encoding (each done once, then cached)."""
    spk, (wav, sr) = sorted(held_out_prompts().items())[0]
    from tokenwave.audio import resample

    wav = trim_silence(resample(np.asarray(wav, dtype=np.float32), sr, tts.sample_rate), tts.sample_rate)
    c0 = cpu_with_children()
    detect_accent(wav, tts.sample_rate, PROMPT_TEXT)
    c1 = cpu_with_children()
    with torch.no_grad():
        tts.codec.encode(torch.from_numpy(wav[: 3 * tts.sample_rate])[None, None], tts.K)
    return {"speaker": spk, "accent_detection_seconds": c1 - c0, "encode_seconds": cpu_with_children() - c1}


def main() -> None:
    args = speech_parser(__doc__.splitlines()[0], 6, 2).parse_args()
    torch.set_num_threads(1)
    sentences = chosen_sentences(args)
    models = setup_models(args.model)
    scopes = Scopes()
    scopes.wrap(TTS, "prepare", "frontend")
    scopes.wrap(TokenLM, "run", "lm_transformer")
    scopes.wrap(Attention, "forward", "lm_attention")
    for mod, name in ((Linear, "forward"), (attention_module, "packed_linear"), (attention_module, "int8_linear")):
        scopes.wrap(mod, name, "lm_linears", inside=("lm_transformer", "lm_attention"))
    scopes.wrap(TokenLM, "logits_for", "lm_heads")
    scopes.wrap(generate_module, "draw", "lm_sampling")
    scopes.wrap(StepDecoder, "push", "decoder")
    scopes.wrap(StepDecoder, "flush", "decoder")
    for name, (_, frames) in SETUPS.items():  # warm-up: phonemizer, allocations, packed weights
        speak(models[name], sentences[0], args.voice, 0, frames)
    runs = {name: {"parts": dict.fromkeys(PARTS, 0.0), "cpu_seconds": 0.0, "audio_seconds": 0.0} for name in SETUPS}
    for i, text in enumerate(sentences):
        for name, (_, frames) in SETUPS.items():
            scopes.seconds = dict.fromkeys(PARTS, 0.0)
            c0 = time.process_time()
            wav = speak(models[name], text, args.voice, i, frames)
            spent = time.process_time() - c0
            scopes.seconds["other"] = spent - sum(scopes.seconds.values())
            run = runs[name]
            run["cpu_seconds"] += spent
            run["audio_seconds"] += len(wav) / models[name].sample_rate
            for part, sec in scopes.seconds.items():
                run["parts"][part] += sec
    for run in runs.values():
        run["rtf_cpu"] = run["cpu_seconds"] / run["audio_seconds"]
        run["rtf_cpu_by_part"] = {p: s / run["audio_seconds"] for p, s in run["parts"].items()}
        run["share_by_part"] = {p: s / run["cpu_seconds"] for p, s in run["parts"].items()}
    figures = {"sentences": list(sentences), "voice": args.voice, "model": repo_path(args.model), "threads": 1,
               "setups": {n: {"precision": p, "decode_frames": f} for n, (p, f) in SETUPS.items()},
               "parts": list(PARTS), "runs": runs, "recorded_prompt": prompt_costs(models["fp32"])}
    base = runs["fp32_step_decoding"]["rtf_cpu"]
    targets = [target("tts_profile_rtf_cpu_1_thread_fp32", runs["fp32"]["rtf_cpu"], "<=", 0.25),
               target("tts_profile_rtf_cpu_1_thread_int8", runs["int8"]["rtf_cpu"], "<=", 0.25),
               target("tts_profile_speedup_fp32_over_step_decoding", base / runs["fp32"]["rtf_cpu"], ">=", 1.0)]
    result = write_result("tts_profile", command_line(__file__), targets, figures, args.quick, machine_info())
    print(json.dumps({"targets": result["targets"], "rtf_cpu": {n: r["rtf_cpu"] for n, r in runs.items()}}, indent=1))


if __name__ == "__main__":
    main()
