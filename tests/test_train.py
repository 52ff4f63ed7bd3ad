"""Training recipes on tiny configs: losses fall, checkpoints load, --resume continues exactly."""
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tokenwave.codec import load_codec
from tokenwave.data.sfx import build_sfx
from tokenwave.lm.generate import generate
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams


def tw(*args):
    run = subprocess.run([sys.executable, "-m", "tokenwave", *map(str, args)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def sfx_data(tmp_path_factory):
    return build_sfx(tmp_path_factory.mktemp("d") / "sfx", minutes=0.5, seed=0)


def codec_args(data, out, steps):
    return ["train", "codec", "--data", data, "--out", out, "--steps", steps, "--preset", "tiny", "--batch-size", 2,
            "--segment", 0.25, "--val-every", 4, "--ckpt-every", 4, "--log-every", 2, "--adv-start", 6, "--threads", 1]


def test_codec_training_loss_falls_and_resume_is_exact(tmp_path, sfx_data):
    straight = tmp_path / "a"
    tw(*codec_args(sfx_data, straight, 8))
    log = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    steps = [e for e in log if "step" in e and "loss" in e]
    assert any("adv" in e for e in steps)  # the adversarial phase ran
    assert any("validation" in e for e in log)
    val = [e["validation"] for e in log if "validation" in e][-1]
    assert {"mel_distance_6kbps", "si_sdr_6kbps", "codebook_perplexity_mean"} <= set(val) or any(k.startswith("mel_distance") for k in val)
    codec = load_codec(straight / "model")
    assert codec.encode(torch.zeros(1, 1, 3200)).shape[-1] == 10
    split = tmp_path / "b"
    tw(*codec_args(sfx_data, split, 8), "--until", 4)
    tw(*codec_args(sfx_data, split, 8), "--resume")
    a = load_file(str(straight / "model" / "model.safetensors"))
    b = load_file(str(split / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_codec_training_reduces_loss(tmp_path, sfx_data):
    run = tmp_path / "c"
    tw("train", "codec", "--data", sfx_data, "--out", run, "--steps", 40, "--preset", "tiny", "--batch-size", 4,
       "--segment", 0.25, "--val-every", 40, "--ckpt-every", 40, "--log-every", 10, "--adv-start", 1000, "--lr", 3e-3)
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < losses[0]


def test_lm_training_from_tokens(tmp_path, sfx_data):
    codec_run = tmp_path / "codec"
    tw(*codec_args(sfx_data, codec_run, 2))
    tokens = tmp_path / "tokens"
    tw("codec", "tokenize", "--data", sfx_data, "--out", tokens, "--model", codec_run / "model")
    info = json.loads((tokens / "tokens.json").read_text())
    assert info["K"] == 8 and info["frame_rate"] == 75
    run = tmp_path / "lm"
    tw("train", "lm", "--tokens", tokens, "--out", run, "--preset", "tiny", "--steps", 30, "--frames", 30,
       "--batch-size", 4, "--val-every", 30, "--log-every", 10, "--lr", 1e-2)
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < losses[0]
    lm = TokenLM.load(run / "model")
    cfg = json.loads((run / "model" / "config.json").read_text())
    assert "domain=sfx" in cfg["tags"]
    codes = generate(lm, 12, None, SamplingParams(seed=0))[0]
    assert codes.shape == (8, 12)


def test_multi_process_training_with_torchrun(tmp_path, sfx_data):
    """Two CPU processes (gloo) through torchrun: the same recipe runs under torch DDP, long enough for the ranks'
    random choices (quantizer bypass and dropout, codebook restarts) to have differed if they were drawn per rank
    (they once were: gloo then failed with a collective mismatch after about 8 steps), and into the adversarial phase."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
                "-m", "tokenwave"]
    args = codec_args(sfx_data, tmp_path / "ddp", 40)
    args[args.index("--adv-start") + 1] = 30
    run = subprocess.run(torchrun + [str(a) for a in args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert load_codec(tmp_path / "ddp" / "model").n_q == 8
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    assert [e["validation"]["step"] for e in log if "validation" in e][-1] == 40
    assert any("adv" in e for e in log)


def test_tts_training_from_speech_tokens_and_synthesis(tmp_path):
    """`train tts` on a tiny speech corpus: the loss falls, the checkpoint loads as the TTS task with built-in
    voices, and it speaks a sentence of the length its duration fit predicts."""
    from tokenwave.data.speech import build_speech
    from tokenwave.tasks import Sampling, load_task

    speech = build_speech(tmp_path / "speech", minutes=1.0, seed=0)
    codec_run = tmp_path / "codec"
    tw(*codec_args(speech, codec_run, 2))
    tokens = tmp_path / "tokens"
    tw("codec", "tokenize", "--data", speech, "--out", tokens, "--model", codec_run / "model", "--kbps", 1.8)  # K = 4
    run = tmp_path / "tts"
    tw("train", "tts", "--tokens", tokens, "--out", run, "--preset", "tiny", "--steps", 30, "--batch-size", 4,
       "--val-every", 30, "--log-every", 10, "--lr", 1e-2)
    losses = [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert losses[-1] < losses[0]
    tts = load_task("tts", run / "model", load_codec(codec_run / "model"))
    assert tts.voices and tts.K == 4
    out = tts.synthesize("Hello there.", tts.voices[0], Sampling(seed=0), watermark=False)
    frames = tts.frames_for(tts.phoneme_ids(["Hello there."])[0], 1.0)
    assert len(out.wav) == frames * tts.codec.hop
    # aligned: each frame told its phone (alignments from the engines), lengths from espeak-ng's timing
    tw("data", "align", "--data", speech)
    aligned = tmp_path / "tts-aligned"
    tw("train", "tts", "--tokens", tokens, "--out", aligned, "--preset", "tiny", "--steps", 30, "--batch-size", 4,
       "--val-every", 30, "--log-every", 10, "--lr", 1e-2, "--alignments", speech / "alignments.jsonl")
    tts = load_task("tts", aligned / "model", load_codec(codec_run / "model"))
    assert tts.phones is not None and {"_", "ð", "ɛ"} <= set(tts.phones.symbols)
    out = tts.synthesize("Hello there.", tts.voices[0], Sampling(seed=0), watermark=False)
    # timed in the built-in voice's own accent and stress timing (its name says them)
    plan = tts.plan(["Hello there."], 1.0, out.metadata["accent"], out.metadata["accent_variant"])[0]
    assert out.metadata["accent_from"] == "voice name" and len(out.wav) == plan.frames * tts.codec.hop


def test_optimizer_state_resumes_by_parameter_name(tmp_path):
    """The saved optimizer moments are keyed by parameter name, so a model whose modules are now registered in
    another order (a code change between save and resume) gets each moment back on the right parameter."""
    from tokenwave.train.state import load_train_state, save_train_state

    class AB(torch.nn.Module):
        def __init__(self, first: str) -> None:
            super().__init__()
            for n in (first, "b" if first == "a" else "a"):
                setattr(self, n, torch.nn.Linear(3, 5 if n == "a" else 2))

    torch.manual_seed(0)
    old = AB("a")
    opt = torch.optim.AdamW(old.parameters(), lr=0.1)
    loss = old.a(torch.randn(4, 3)).sum() + old.b(torch.randn(4, 3)).pow(2).sum()
    loss.backward()
    opt.step()
    save_train_state(tmp_path, 7, {"model": old}, {"opt": opt}, {})
    new = AB("b")  # b's parameters now come first
    new_opt = torch.optim.AdamW(new.parameters(), lr=0.1)
    step, _ = load_train_state(tmp_path, {"model": new}, {"opt": new_opt})
    assert step == 7
    for (n, p_old), (m, p_new) in zip(sorted(old.named_parameters()), sorted(new.named_parameters())):
        assert n == m and torch.equal(p_old, p_new)
        assert torch.equal(opt.state[p_old]["exp_avg"], new_opt.state[p_new]["exp_avg"])


class _SleepyRecipe:
    """A recipe whose steps take a fixed wall time: enough to check the trainer's time budget."""

    def __init__(self):
        from dataclasses import dataclass

        @dataclass
        class T:
            total_steps: int = 100_000

        self.tcfg = T()
        self.lin = torch.nn.Linear(2, 2)
        self.modules = {"model": self.lin}
        self.optimizers = {"opt": torch.optim.SGD(self.lin.parameters(), lr=0.1)}
        self.exported = []

    def train_step(self, step):
        import time

        time.sleep(0.01)
        return {"loss": 1.0}

    def validate(self):
        return {"valid_loss": 1.0}

    def export(self, folder, metrics):
        self.exported.append(metrics["step"])

    def rng_state(self):
        return {}

    def set_rng_state(self, state):
        pass


def test_time_budget_shortens_the_run_and_its_schedule(tmp_path):
    import time

    from tokenwave.train.trainer import DistInfo, train

    recipe = _SleepyRecipe()
    t0 = time.time()
    metrics = train(recipe, tmp_path / "run", 100_000, DistInfo(), val_every=10_000, ckpt_every=10_000,
                    log_every=50, time_budget=3.0)
    took = time.time() - t0
    assert took < 3.5  # stopped inside the budget (plus the last checkpoint)
    done = metrics["step"]
    assert 120 < done < 300  # ~10 ms per step into 90% of 3 s
    assert recipe.tcfg.total_steps == done  # the schedule ends where the run does
    assert recipe.exported[-1] == done
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert {"time_budget": 3.0, "steps": done} in log


def test_keep_best_exports_the_lowest_validation_loss(tmp_path):
    from tokenwave.train.trainer import DistInfo, train

    recipe = _SleepyRecipe()
    losses = iter([3.0, 1.0, 2.0, 1.5])
    recipe.validate = lambda: {"valid_loss": next(losses)}
    exported = []
    recipe.export = lambda folder, metrics: exported.append((folder.name, metrics["step"]))
    train(recipe, tmp_path / "run", 8, DistInfo(), val_every=2, ckpt_every=100, log_every=100, keep_best=True)
    assert [e for e in exported if e[0] == "best"] == [("best", 2), ("best", 4)]  # 3.0 then 1.0; 2.0 and 1.5 lose
    assert exported[-1] == ("model", 8)


def test_keep_best_survives_a_resume(tmp_path):
    """After --resume, best/ is only replaced by a loss below the best one logged before the resume."""
    from tokenwave.train.trainer import DistInfo, train

    exported = []

    def run(losses, **kw):
        recipe = _SleepyRecipe()
        it = iter(losses)
        recipe.validate = lambda: {"valid_loss": next(it)}
        recipe.export = lambda folder, metrics: exported.append((folder.name, metrics["step"]))
        train(recipe, tmp_path / "run", 8, DistInfo(), val_every=2, ckpt_every=100, log_every=100, keep_best=True, **kw)

    run([3.0, 1.0], until=4)
    run([2.0, 0.5], resume=True)
    assert [e for e in exported if e[0] == "best"] == [("best", 2), ("best", 4), ("best", 8)]  # not 2.0 at step 6


def test_fine_tuning_run_validates_its_starting_point(tmp_path):
    """A run started from a trained model (``tcfg.init``) validates before its first step; with --keep-best that
    model stays best/ until a step beats it."""
    from tokenwave.train.trainer import DistInfo, train

    recipe = _SleepyRecipe()
    recipe.tcfg.init = "checkpoints/music/flow"
    losses = iter([1.2, 3.0, 1.0])
    recipe.validate = lambda: {"valid_loss": next(losses)}
    exported = []
    recipe.export = lambda folder, metrics: exported.append((folder.name, metrics["step"]))
    train(recipe, tmp_path / "run", 4, DistInfo(), val_every=2, ckpt_every=100, log_every=100, keep_best=True)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [e["validation"]["step"] for e in log if "validation" in e] == [0, 2, 4]
    assert [e for e in exported if e[0] == "best"] == [("best", 0), ("best", 4)]
    plain = _SleepyRecipe()  # a run from scratch does not
    plain.validate = lambda: {"valid_loss": 1.0}
    train(plain, tmp_path / "plain", 4, DistInfo(), val_every=2, ckpt_every=100, log_every=100)
    log = [json.loads(line) for line in (tmp_path / "plain" / "log.jsonl").read_text().splitlines()]
    assert [e["validation"]["step"] for e in log if "validation" in e] == [2, 4]


def test_gpu_carry_round_trip(tmp_path):
    """scripts/gpu_carry.py: latents travel as int8 within half a quantisation step, tokens (bit-packed, and cut to
    --max-frames) and index exactly."""
    import importlib.util

    import numpy as np
    from safetensors.numpy import load_file, save_file

    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gpu_carry", Path(__file__).parents[1] / "scripts" / "gpu_carry.py")
    carry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(carry)
    rng = np.random.default_rng(0)
    lat = tmp_path / "lat"
    lat.mkdir()
    splits = {s: (rng.standard_normal((8, n)) * 0.5).astype(np.float16) for s, n in (("train", 300), ("valid", 50), ("test", 40))}
    save_file(splits, str(lat / "latents.safetensors"))
    rows = [{"id": f"c{i}", "split": s, "offset": 0, "frames": 10} for i, s in enumerate(["train", "valid", "test"])]
    (lat / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (lat / "latents.json").write_text("{}")
    carry.pack(lat, tmp_path / "packed", ["train", "valid"])
    assert (tmp_path / "packed" / "latents.q8.safetensors").stat().st_size < (lat / "latents.safetensors").stat().st_size
    carry.unpack(tmp_path / "packed", tmp_path / "back")
    back = load_file(str(tmp_path / "back" / "latents.safetensors"))
    assert set(back) == {"train", "valid"}  # the test split stays home
    for s in back:
        x, y = splits[s].astype(np.float32), back[s].astype(np.float32)
        step = np.abs(x).max(axis=1, keepdims=True) / 127
        assert np.all(np.abs(x - y) <= step / 2 + 2e-3) and not np.array_equal(x, np.zeros_like(x))
    assert [json.loads(line)["id"] for line in (tmp_path / "back" / "index.jsonl").read_text().splitlines()] == ["c0", "c1"]
    tok = tmp_path / "tok"
    tok.mkdir()
    codes = {"train": rng.integers(0, 1024, (4, 3000)).astype(np.int16), "valid": rng.integers(0, 1024, (4, 5)).astype(np.int16)}
    save_file(codes, str(tok / "codes.safetensors"))
    (tok / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:2]))
    (tok / "tokens.json").write_text("{}")
    carry.pack(tok, tmp_path / "tp", None)
    carry.unpack(tmp_path / "tp", tmp_path / "tb")
    got = load_file(str(tmp_path / "tb" / "codes.safetensors"))
    assert all(np.array_equal(got[k], codes[k]) for k in codes)
    assert (tmp_path / "tp" / "codes.bits.safetensors").stat().st_size < (tok / "codes.safetensors").stat().st_size
    # --max-frames: only the short clips travel, each with its own codes at its new offset
    long_rows = [{"id": "a", "split": "train", "offset": 0, "frames": 12}, {"id": "b", "split": "train", "offset": 12,
                 "frames": 5}, {"id": "c", "split": "train", "offset": 17, "frames": 13},
                 {"id": "d", "split": "valid", "offset": 0, "frames": 5}]
    (tok / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in long_rows))
    (tok / "tokens.json").write_text(json.dumps({"codebook_size": 1024, "clips": 4, "frames": {"train": 30, "valid": 5}}))
    carry.pack(tok, tmp_path / "short", ["train"], max_frames=12)
    carry.unpack(tmp_path / "short", tmp_path / "sb")
    rows = [json.loads(line) for line in (tmp_path / "sb" / "index.jsonl").read_text().splitlines()]
    got = load_file(str(tmp_path / "sb" / "codes.safetensors"))
    assert [r["id"] for r in rows] == ["a", "b"] and set(got) == {"train"} and got["train"].shape == (4, 17)
    for r, old in zip(rows, long_rows):
        assert np.array_equal(got["train"][:, r["offset"]: r["offset"] + r["frames"]],
                              codes["train"][:, old["offset"]: old["offset"] + old["frames"]])
    info = json.loads((tmp_path / "sb" / "tokens.json").read_text())
    assert info == {"codebook_size": 1024, "clips": 2, "frames": {"train": 17}}


def test_time_budget_under_torchrun_stops_every_rank_together(tmp_path, sfx_data):
    """Ranks time their steps apart; rank 0's fitted step count goes to all, so none waits on a collective the
    others have left (a hang), and the run ends checkpointed and validated at that step."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29518",
                "-m", "tokenwave"]
    args = codec_args(sfx_data, tmp_path / "ddp", 100_000) + ["--time-budget", 20]
    for flag, value in (("--val-every", 1000), ("--ckpt-every", 1000), ("--adv-start", 10**6)):
        args[args.index(flag) + 1] = value
    run = subprocess.run(torchrun + [str(a) for a in args], capture_output=True, text=True, timeout=200)
    assert run.returncode == 0, run.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "ddp" / "log.jsonl").read_text().splitlines()]
    planned = [e["steps"] for e in log if "time_budget" in e]
    assert planned and 1 <= planned[-1] < 100_000  # from the calibration, or where time ran out (a loaded machine)
    assert [e["validation"]["step"] for e in log if "validation" in e][-1] == planned[-1]
    assert json.loads((tmp_path / "ddp" / "last" / "train_state.json").read_text())["step"] == planned[-1]
