"""Long-form music: 2-minute pieces by windowed continuation, checked for silence and loops (issue 25's targets).

For each default music generator (the token LM, and the flow model: both slide windows past their trained length),
several prompts and seeds are rendered at 120 s and measured:

- level: the RMS level (dBFS) of every 1 s window; target: no window below -40 dBFS (no drift into silence);
- loops: the similarity of every pair of non-overlapping 10 s windows of a piece, as the cosine of their log-mel
  statistics (per-band mean and standard deviation of the eval encoder's level-normalised log-mel, each dimension
  standardised over the real windows) and, finer, of their 4 Hz log-mel sequences (each band's mean removed);
  target: a piece's most alike pair at most the 95th percentile of the same measure over pairs of 10 s windows of
  the same piece in real recordings (``data/real-music``, test split).

Writes ``benchmarks/results/longform.json`` and ``longform.png`` (level over time of every piece, and the 10 s
window similarity matrix of each generator's most alike piece).
"""
from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, arg_parser, command_line, repo_path, target, write_result  # noqa: E402

from tokenwave.audio import load_audio  # noqa: E402
from tokenwave.eval.encoder import EncoderConfig, LogMel, wav_tensor  # noqa: E402
from tokenwave.tasks import Sampling, load_task  # noqa: E402

PROMPTS = ["calm piano melody in C major", "lively irish fiddle reel in D major",
           "epic cinematic orchestral trailer with thundering drums and choir", "slow ambient synth pad, dreamy"]
SILENT_DBFS = -40.0
LEVEL_WINDOW_S = 1.0
LOOP_WINDOW_S = 10.0
SEQ_POOL = 25  # log-mel frames (100 per second) averaged into one step of the sequence measure: 4 Hz


def window_levels(wav: np.ndarray, sr: int, seconds: float = LEVEL_WINDOW_S) -> np.ndarray:
    """float32 ``wav [N]`` at ``sr`` -> RMS level in dBFS of each whole ``seconds`` window ``[N // (sr * seconds)]``."""
    n = int(sr * seconds)
    w = wav[: len(wav) // n * n].reshape(-1, n).astype(np.float64)
    return 20 * np.log10(np.sqrt((w ** 2).mean(1)) + 1e-10)


class Features:
    """10 s windows -> the two loop measures' vectors: log-mel statistics ``[128]`` and 4 Hz sequences
    ``[64 * 40]``."""

    def __init__(self) -> None:
        self.mel = LogMel(EncoderConfig()).eval()
        self.mu, self.sd = None, None

    @torch.no_grad()
    def __call__(self, wav: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
        """One piece ``wav [N]`` -> (stats ``[W, 128]``, sequences ``[W, 64 * 40]``) of its W non-overlapping 10 s
        windows (the last partial one left out)."""
        n = int(sr * LOOP_WINDOW_S)
        wins = [wav[s: s + n] for s in range(0, len(wav) - n + 1, n)]
        mels = torch.stack([self.mel(wav_tensor(w, sr))[0, :, : int(100 * LOOP_WINDOW_S)] for w in wins])  # [W, 64, 1000]
        stats = torch.cat([mels.mean(-1), mels.std(-1)], -1).numpy()
        seq = torch.nn.functional.avg_pool1d(mels, SEQ_POOL)
        seq = (seq - seq.mean(-1, keepdim=True)).flatten(1).numpy()
        return stats, seq

    def standardise(self, stats: np.ndarray) -> np.ndarray:
        return (stats - self.mu) / self.sd


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    x = x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
    return x @ x.T


def real_reference(folder: Path, feats: Features, limit: int | None) -> dict:
    """The same measures over pairs of 10 s clips of the same piece in ``folder``'s test split (each its own window),
    and the real clips' 1 s levels."""
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").open()]
    rows = [r for r in rows if r.get("split") == "test" and r["duration"] >= LOOP_WINDOW_S - 0.01]
    by_piece = defaultdict(list)
    for r in rows:
        by_piece[r.get("piece", r["id"])].append(r)
    pieces = sorted(p for p, rs in by_piece.items() if len(rs) >= 2)[:limit]
    stats, seqs, owner, levels = [], [], [], []
    for i, p in enumerate(pieces):
        for r in by_piece[p]:
            wav, sr = load_audio(folder / r["path"])
            s, q = feats(wav, sr)
            stats.append(s[:1]), seqs.append(q[:1]), owner.append(i)
            levels.append(window_levels(wav, sr))
    stats, seqs, owner = np.concatenate(stats), np.concatenate(seqs), np.array(owner)
    feats.mu, feats.sd = stats.mean(0), stats.std(0) + 1e-6
    same = (owner[:, None] == owner[None]) & np.triu(np.ones((len(owner),) * 2, dtype=bool), 1)
    sim_stats = cosine_matrix(feats.standardise(stats))[same]
    sim_seq = cosine_matrix(seqs)[same]
    levels = np.concatenate(levels)
    return {"pieces": len(pieces), "clips": len(owner), "pairs": int(same.sum()),
            "stats_p95": float(np.quantile(sim_stats, 0.95)), "stats_median": float(np.median(sim_stats)),
            "seq_p95": float(np.quantile(sim_seq, 0.95)), "seq_median": float(np.median(sim_seq)),
            "level_windows": int(len(levels)), "level_windows_below": int((levels < SILENT_DBFS).sum())}


def measure_piece(wav: np.ndarray, sr: int, feats: Features) -> dict:
    levels = window_levels(wav, sr)
    stats, seq = feats(wav, sr)
    off = ~np.eye(len(stats), dtype=bool)
    s_stats, s_seq = cosine_matrix(feats.standardise(stats)), cosine_matrix(seq)
    return {"seconds": len(wav) / sr, "windows_below": int((levels < SILENT_DBFS).sum()),
            "min_dbfs": float(levels.min()), "median_dbfs": float(np.median(levels)),
            "max_stats_sim": float(s_stats[off].max()), "max_seq_sim": float(s_seq[off].max()),
            "levels": levels.round(2).tolist(), "stats_matrix": s_stats.round(3).tolist()}


def plot(path: Path, pieces: list[dict], ref: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = sorted({p["generator"] for p in pieces})
    fig, axes = plt.subplots(1, 1 + len(gens), figsize=(6 + 4 * len(gens), 4), squeeze=False)
    ax = axes[0, 0]
    for p in pieces:
        ax.plot(np.arange(len(p["levels"])) + 0.5, p["levels"], lw=0.8,
                label=f"{p['generator']} s{p['seed']}: {p['prompt'][:22]}", ls="-" if p["generator"] == "lm" else "--")
    ax.axhline(SILENT_DBFS, color="k", lw=1, ls=":", label=f"{SILENT_DBFS:g} dBFS")
    ax.set(xlabel="time (s)", ylabel="1 s RMS level (dBFS)", title="level over time")
    ax.legend(fontsize=6, loc="lower left")
    for ax, g in zip(axes[0, 1:], gens):
        worst = max((p for p in pieces if p["generator"] == g), key=lambda p: p["max_stats_sim"])
        m = np.array(worst["stats_matrix"])
        im = ax.imshow(m, vmin=-1, vmax=1, cmap="coolwarm")
        ax.set(title=f"{g}: 10 s windows, most alike piece\nmax {worst['max_stats_sim']:.2f} "
                     f"(real p95 {ref['stats_p95']:.2f})", xlabel="window", ylabel="window")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = arg_parser(__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds per piece")
    parser.add_argument("--generators", default="lm,flow", help="music generators to render with")
    parser.add_argument("--real", type=Path, default=Path("data/real-music"), help="real recordings (test split)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--out", type=Path, default=None, help="also save each piece here (FLAC)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prompts, seeds = (PROMPTS[:2], [0]) if args.quick else (PROMPTS, [0, 1])
    feats = Features()
    t0 = time.perf_counter()
    ref = real_reference(args.real, feats, 12 if args.quick else None)
    print(f"real: {ref['pieces']} pieces, {ref['pairs']} pairs, stats p95 {ref['stats_p95']:.3f}, "
          f"seq p95 {ref['seq_p95']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    pieces = []
    for gen in args.generators.split(","):
        task = load_task("music", generator=gen)
        for prompt in prompts:
            for seed in seeds:
                t1 = time.perf_counter()
                out = task.generate(prompt, args.duration, Sampling(seed=seed), watermark=False, generator=gen)
                took = time.perf_counter() - t1
                if args.out:
                    args.out.mkdir(parents=True, exist_ok=True)
                    out.save(args.out / f"{gen}-{PROMPTS.index(prompt)}-s{seed}.flac")
                m = {"generator": gen, "prompt": prompt, "seed": seed, "render_s": took,
                     "tags": out.metadata["tags"], **measure_piece(out.wav, out.sample_rate, feats)}
                pieces.append(m)
                print(f"{gen} s{seed} {prompt[:30]!r}: {m['seconds']:.1f} s in {took:.0f} s; below "
                      f"{m['windows_below']}, min {m['min_dbfs']:.1f} dBFS; max sim stats {m['max_stats_sim']:.3f}, "
                      f"seq {m['max_seq_sim']:.3f}", flush=True)
    targets, figures = [], {"real": {**ref, "folder": repo_path(args.real)}, "duration_s": args.duration,
                            "silent_dbfs": SILENT_DBFS, "pieces": [{k: v for k, v in p.items() if k != "stats_matrix"}
                                                                  for p in pieces]}
    for gen in args.generators.split(","):
        mine = [p for p in pieces if p["generator"] == gen]
        below = sum(p["windows_below"] for p in mine)
        worst_stats = max(p["max_stats_sim"] for p in mine)
        worst_seq = max(p["max_seq_sim"] for p in mine)
        figures[gen] = {"pieces": len(mine), "windows_below": below, "min_dbfs": min(p["min_dbfs"] for p in mine),
                        "max_stats_sim": worst_stats, "max_seq_sim": worst_seq,
                        "x_realtime": sum(p["seconds"] for p in mine) / sum(p["render_s"] for p in mine)}
        targets += [target(f"{gen}_windows_below_40dbfs", below, "<=", 0),
                    target(f"{gen}_max_window_similarity_stats_over_real_p95", worst_stats / ref["stats_p95"], "<=", 1.0),
                    target(f"{gen}_max_window_similarity_seq_over_real_p95", worst_seq / ref["seq_p95"], "<=", 1.0)]
    plot(RESULTS_DIR / "longform.png", pieces, ref)
    result = write_result("longform", command_line(__file__), targets, figures, args.quick)
    print(json.dumps(result["targets"], indent=1))


if __name__ == "__main__":
    main()
