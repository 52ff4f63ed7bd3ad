"""Token-AR against flow matching on the same task: sound effects from held-out captions, the same codec, the same
data (data/sfx-large), similar size (token LM 256 x 4 blocks, 5.3 M parameters; flow DiT 256 x 6 blocks).

    python benchmarks/generators.py --flow runs/flow-sfx/model [--quick] [--items N]

Quality: the project's tagger (tag accuracy: domain + family) and CLAP-style score on N held-out `data/sfx` test
captions, each rendered for its duration (up to 10 s), seed = item index, CFG 2 for both. Flow at 4 / 8 / 16 / 32
Euler steps (the quality-vs-steps curve), token LM with its defaults (temperature 0.9, top-k 100).
Speed (2 threads): render time of a 10 s clip, and time to first audio of a stream (token LM: first frame complete
and decoded; flow: its first chunked-streaming window sampled and decoded).
Writes benchmarks/results/generators.json (+ generators.png) and prints the JSON.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT, arg_parser, command_line, machine_info, target, write_result  # noqa: E402

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.data.manifest import read_manifest  # noqa: E402
from tokenwave.flow import FlowSampling  # noqa: E402
from tokenwave.flow.sample import decode_long, sample_long, stream_chunks  # noqa: E402
from tokenwave.lm.generate import stream as lm_stream  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402
from tokenwave.train.flow import load_flow  # noqa: E402

WINDOW, OVERLAP = 150, 30


class FlowSfx:
    """Flow-matching renders of sfx prompts, read into tags the way the token-LM task reads them."""

    def __init__(self, folder: Path, lm_task) -> None:
        self.model, self.vocab, self.tags = load_flow(folder)
        self.lm_task = lm_task  # for prompt reading (same tag vocabulary rules) and the codec
        self.codec = lm_task.codec

    @torch.no_grad()
    def render(self, prompt: str, seconds: float, steps: int, seed: int) -> np.ndarray:
        tags = self.lm_task.read_prompt(prompt)
        ids, mask = self.vocab.encode([tags])
        cond = self.tags(ids, mask)
        frames = int(round(seconds * 75))
        params = FlowSampling(steps=steps, method="euler", cfg_scale=2.0, seed=seed)
        z = sample_long(self.model, frames, WINDOW, OVERLAP, cond, params)
        return decode_long(self.codec, z, WINDOW, OVERLAP)[0, 0].numpy()

    @torch.no_grad()
    def first_audio(self, prompt: str, steps: int) -> float:
        ids, mask = self.vocab.encode([self.lm_task.read_prompt(prompt)])
        cond = self.tags(ids, mask)
        t0 = time.perf_counter()
        next(iter(stream_chunks(self.model, self.codec, 750, WINDOW, OVERLAP, cond,
                                FlowSampling(steps=steps, method="euler", cfg_scale=2.0))))
        return time.perf_counter() - t0


@torch.no_grad()
def lm_first_audio(task, prompt: str) -> float:
    from tokenwave.codec.streaming import StreamingDecoder

    ids, mask = task.vocab.encode([task.read_prompt(prompt)])
    cond = task.tags(ids, mask)
    t0 = time.perf_counter()
    with StreamingDecoder(task.codec) as dec:
        for step in lm_stream(task.lm, task.window_overlap(cond)[0], cond, Sampling().lm_params()):  # its first window
            if step[0].shape[-1]:
                dec.push(step[0][None])
                break
    return time.perf_counter() - t0


def score(wavs: list[np.ndarray], rows: list[dict], sr: int) -> dict:
    from tokenwave.eval.clap import load_clap
    from tokenwave.eval.tagger import load_tagger, row_labels

    tagger, clap = load_tagger(), load_clap()
    acc, fam, cl = [], [], []
    for wav, r in zip(wavs, rows):
        pred, want = tagger.predict(wav, sr), row_labels(r)
        acc.append(np.mean([pred.get(k) == v for k, v in want.items()]))
        fam.append(pred.get("family") == want.get("family"))
        cl.append(clap.score(r["caption"], wav, sr))
    return {"tag_acc": float(np.mean(acc)), "family_acc": float(np.mean(fam)), "clap": float(np.mean(cl))}


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--flow", type=Path, default=Path("runs/flow-sfx/model"))
    parser.add_argument("--items", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items = args.items or (3 if args.quick else 12)
    data = REPO_ROOT / "data" / "sfx"
    rows = [r for r in read_manifest(data) if r["split"] == "test"][:items]
    lm = load_task("sfx")
    flow = FlowSfx(args.flow, lm)
    sr = lm.sample_rate
    figures: dict = {"items": len(rows), "flow_model": str(args.flow),
                     "flow_params_m": sum(p.numel() for p in flow.model.parameters()) / 1e6,
                     "lm_params_m": sum(p.numel() for p in lm.lm.parameters()) / 1e6}
    real = [load_audio(data / r["path"], sr)[0] for r in rows]
    figures["real_renders"] = score(real, rows, sr)
    gens = [lm.generate(r["caption"], min(r["duration"], 10.0), Sampling(seed=i), watermark=False).wav
            for i, r in enumerate(rows)]
    figures["token_lm"] = score(gens, rows, sr)
    figures["flow"] = {}
    for steps in ((8,) if args.quick else (4, 8, 16, 32)):
        wavs = [flow.render(r["caption"], min(r["duration"], 10.0), steps, i) for i, r in enumerate(rows)]
        figures["flow"][str(steps)] = score(wavs, rows, sr)
    prompt = "heavy rain on a tin roof with distant thunder"
    t0 = time.perf_counter()
    lm.generate(prompt, 10.0, Sampling(seed=0), watermark=False)
    lm_render = time.perf_counter() - t0
    t0 = time.perf_counter()
    flow.render(prompt, 10.0, 16, 0)
    flow_render = time.perf_counter() - t0
    figures["speed"] = {"token_lm_10s_render_s": lm_render, "flow16_10s_render_s": flow_render,
                        "token_lm_first_audio_s": lm_first_audio(lm, prompt),
                        "flow16_first_audio_s": flow.first_audio(prompt, 16)}
    best_flow = max(figures["flow"].values(), key=lambda v: v["tag_acc"])
    targets = [target("flow16_10s_x_realtime", 10.0 / flow_render, ">=", 10.0),
               target("flow_best_tag_acc_over_token_lm", best_flow["tag_acc"] / max(figures["token_lm"]["tag_acc"], 1e-9),
                      ">=", 1.0)]
    result = write_result("generators", command_line(__file__), targets, figures, args.quick, machine_info())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
