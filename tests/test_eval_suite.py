"""The eval models train (tiny presets, synthetic datasets) and load through their public interfaces; the
`tokenwave eval` commands write metrics.json, report.md and plots, checked with a fake task model that returns
the reference audio (so generated and reference scores must agree)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenwave.audio import save_audio
from tokenwave.data.manifest import read_manifest, write_manifest
from tokenwave.paths import checkpoints_dir

SR = 24000
REAL_CODEC = checkpoints_dir() / "codec"


def tw(*args):
    run = subprocess.run([sys.executable, "-m", "tokenwave", *map(str, args)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _tone(f0, seconds, seed, bright=1.0, melody=None):
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    f = np.full(n, f0, dtype=np.float64) if melody is None else np.repeat([440 * 2 ** ((m - 69) / 12) for m in melody], SR // 75)[:n]
    phase = 2 * np.pi * np.cumsum(f) / SR
    wav = sum(bright ** k / (k + 1) * np.sin((k + 1) * phase) for k in range(6))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(2, 5) * np.arange(len(f)) / SR)
    return (0.2 * env * wav + 0.01 * rng.standard_normal(len(f))).astype(np.float32)


def _write(folder: Path, rows_audio: list[tuple[dict, np.ndarray]]) -> Path:
    rows = []
    for i, (row, wav) in enumerate(rows_audio):
        rid = f"{row['domain'][:2]}-{i:04d}"
        path = f"audio/{row['split']}/{rid}.wav"
        save_audio(folder / path, wav, SR)
        rows.append({"id": rid, "path": path, "duration": len(wav) / SR, "sample_rate": SR, **row})
    write_manifest(rows, folder / "manifest.jsonl")
    return folder


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    speech = []
    for s, f0 in enumerate((100, 140, 190, 250, 320)):
        splits = ["train"] * 6 + ["valid"] * 2 if s < 3 else ["test"] * 3
        speech += [({"domain": "speech", "split": sp, "speaker": f"spk{s}", "text": "hello world"},
                    _tone(f0, 1.5, 10 * s + j, bright=0.5 + 0.1 * s)) for j, sp in enumerate(splits)]
    music, sfx = [], []
    for j in range(16):
        mode, inst = ("major", "organ") if j % 2 else ("minor", "flute")
        split = "train" if j < 12 else ("valid" if j < 14 else "test")
        melody = [int(x) for x in np.repeat([60 + 2 * (j % 5), 64, 67 if mode == "major" else 63, 72], 40)]
        tags = {"genre": "chorale", "collection": "bach", "instrument": inst, "tempo": "slow", "key": "C", "mode": mode}
        music.append(({"domain": "music", "split": split, "caption": f"slow chorale on {inst} in C {mode}", "tags": tags,
                       "melody": melody}, _tone(0, 2.1, j, bright=0.9 if inst == "organ" else 0.2, melody=melody)))
        fam = "rain" if j % 2 else "bell"
        wav = (0.1 * np.random.default_rng(j).standard_normal(int(1.5 * SR))).astype(np.float32) if fam == "rain" else _tone(880, 1.5, j)
        sfx.append(({"domain": "sfx", "split": split, "caption": f"a {fam}", "tags": {"family": fam}, "family": fam}, wav))
    return {"speech": _write(root / "speech", speech), "music": _write(root / "music", music), "sfx": _write(root / "sfx", sfx)}


@pytest.fixture(scope="module")
def eval_models(datasets, tmp_path_factory):
    """Tiny eval models trained by the CLI, laid out as a checkpoints folder (with the shipped codec)."""
    root = tmp_path_factory.mktemp("ckpt")
    common = ["--preset", "tiny", "--batch-size", 8, "--log-every", 5, "--threads", 1, "--lr", 3e-3]
    tw("train", "speaker", "--data", datasets["speech"], "--out", root / "run-speaker", "--steps", 40, "--val-every", 40, *common)
    tw("train", "tagger", "--data", datasets["music"], "--data", datasets["sfx"], "--out", root / "run-tagger", "--steps", 40,
       "--val-every", 40, *common)
    tw("train", "clap", "--data", datasets["music"], "--data", datasets["sfx"], "--out", root / "run-clap", "--steps", 10,
       "--val-every", 10, *common)
    for name in ("speaker", "tagger", "clap"):
        shutil.copytree(root / f"run-{name}" / "model", root / "eval" / name)
    (root / "codec").symlink_to(REAL_CODEC)
    return root


def _log(run: Path) -> tuple[list[dict], dict]:
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [x for x in lines if "loss" in x], [x["validation"] for x in lines if "validation" in x][-1]


def test_eval_models_train_and_load(eval_models, datasets, monkeypatch):
    from tokenwave.audio import load_audio
    from tokenwave.eval.clap import load_clap
    from tokenwave.eval.speaker import load_speaker_encoder
    from tokenwave.eval.tagger import load_tagger

    steps, val = _log(eval_models / "run-speaker")
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert {"valid_eer", "heldout_eer", "heldout_same_speaker_cosine"} <= set(val)
    steps, val = _log(eval_models / "run-tagger")
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert {"valid_acc_domain", "test_acc_mode", "test_acc_family", "test_acc_mean"} <= set(val)
    _, val = _log(eval_models / "run-clap")
    assert {"valid_recall@1", "test_recall@5"} <= set(val)

    monkeypatch.setenv("TOKENWAVE_CHECKPOINTS", str(eval_models))
    wav, sr = load_audio(next((datasets["speech"] / "audio" / "test").iterdir()), SR)
    spk = load_speaker_encoder()
    e = spk.embed(wav, sr)
    assert e.dtype == np.float32 and np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    assert spk.similarity(wav, sr, wav, sr) == pytest.approx(1.0, abs=1e-5)
    from tokenwave.audio import resample
    assert spk.similarity(wav, sr, resample(wav, sr, 16000), 16000) > 0.99  # the rate is handled
    tagger = load_tagger()
    pred = tagger.predict(wav, sr)
    assert pred["domain"] in ("music", "sfx") and set(pred) <= {"domain", "collection", "genre", "instrument", "tempo", "mode", "family"}
    probs = tagger.probs(wav, sr)
    assert all(abs(p.sum() - 1) < 1e-4 for p in probs.values())
    assert tagger.embed(wav, sr).shape == (16,)
    clap = load_clap()
    assert -1.0 <= clap.score("a bell", wav, sr) <= 1.0


class ReferenceTask:
    """A stand-in task model: returns the row's own reference audio, so generated scores must equal reference ones."""

    sample_rate = SR

    def generate_row(self, row, dataset, seed=0):
        from tokenwave.audio import load_audio

        return load_audio(Path(dataset) / row["path"], SR)[0]


class ReferenceTTS(ReferenceTask):
    """The reference stand-in with a lossless resynthesis, so the TTS report adds its codec floor; it records the
    alignment each clip's resynthesis is given."""

    def __init__(self) -> None:
        self.alignments = []

    def resynthesize(self, wav, alignment=None):
        self.alignments.append(alignment)
        return wav


def _run_cli(args):
    from typer.testing import CliRunner

    from tokenwave.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (res.output, res.exception)
    return res


def test_eval_music_and_sfx_reports(eval_models, datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENWAVE_CHECKPOINTS", str(eval_models))
    monkeypatch.setattr("tokenwave.tasks.load_task", lambda task, model, generator=None: ReferenceTask())
    out = tmp_path / "music"
    _run_cli(["eval", "music", "--data", datasets["music"], "--out", out, "--split", "train", "--limit", 3])
    m = json.loads((out / "metrics.json").read_text())
    gen, ref, floor = m["summary"]["generated"], m["summary"]["reference"], m["summary"]["codec"]
    assert gen["tag_acc"] == ref["tag_acc"] and gen["clap"] == pytest.approx(ref["clap"], abs=1e-4)
    assert gen["chroma_cosine"] == pytest.approx(ref["chroma_cosine"]) and gen["kl"] == pytest.approx(0.0, abs=1e-6)
    assert gen["fad"] == pytest.approx(0.0, abs=1e-3) and floor["fad"] >= gen["fad"]
    assert {"tag_acc_instrument", "tag_acc_mode", "kl", "fad", "clap", "chroma_cosine"} <= set(floor)
    assert len(m["items"]) == 3 and m["seed"] == 0
    for f in ("report.md", "metrics.png", "spectrograms.png"):
        assert (out / f).stat().st_size > 0
    assert sorted(p.name for p in (out / "audio").iterdir()) == ["codec", "generated", "reference"]
    out = tmp_path / "sfx"
    _run_cli(["eval", "sfx", "--data", datasets["sfx"], "--out", out, "--split", "test", "--limit", 2])
    m = json.loads((out / "metrics.json").read_text())
    assert m["summary"]["generated"]["tag_acc_family"] == m["summary"]["reference"]["tag_acc_family"]
    assert "chroma_cosine" not in m["summary"]["generated"]


def test_eval_tts_and_codec_reports(eval_models, datasets, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENWAVE_CHECKPOINTS", str(eval_models))
    task = ReferenceTTS()
    monkeypatch.setattr("tokenwave.tasks.load_task", lambda name, model, generator=None: task)
    # an aligned copy of the data: each clip's floor is resynthesised with its own phone timings
    data = shutil.copytree(datasets["speech"], tmp_path / "speech")
    rows = [r for r in read_manifest(data) if r["split"] == "test"][:2]
    timings = {r["id"]: {"id": r["id"], "phones": ["_", r["id"]], "starts": [0.0, 0.1], "end": 0.5} for r in rows[:1]}
    (data / "alignments.jsonl").write_text("".join(json.dumps(a) + "\n" for a in timings.values()))
    out = tmp_path / "tts"
    _run_cli(["eval", "tts", "--data", data, "--out", out, "--limit", 2])
    assert task.alignments == [timings[rows[0]["id"]], None]  # the aligned clip's, then none for the other
    m = json.loads((out / "metrics.json").read_text())
    gen, ref = m["summary"]["generated"], m["summary"]["reference (engine)"]
    assert gen["cer"] == ref["cer"] and gen["dnsmos_ovrl"] == pytest.approx(ref["dnsmos_ovrl"])
    assert m["summary"]["codec resynthesis"]["cer"] == ref["cer"]  # a lossless codec's floor is the engine's speech
    assert gen["speaker_sim"] == pytest.approx(1.0, abs=1e-5)
    assert "CER under the same recogniser" in (out / "report.md").read_text()
    out = tmp_path / "codec"
    _run_cli(["eval", "codec", "--data", datasets["sfx"], "--out", out, "--limit", 2, "--kbps", 6])
    m = json.loads((out / "metrics.json").read_text())
    assert m["kbps"] == 6 and {"mel_distance", "si_sdr", "tag_acc"} <= set(m["summary"]["codec"])
    assert "tag_acc" in m["summary"]["reference"]
