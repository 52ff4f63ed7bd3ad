"""Codec training on a lent GPU: datasets travel as Ogg Opus (scripts/gpu_carry.py pack-audio) and load as they are,
in parts that merge; batches gathered on the device equal the host's; scripts/gpu_train.sh's codec run end to end."""
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from tokenwave import SAMPLE_RATE
from tokenwave.audio import load_audio
from tokenwave.codec.model import Codec
from tokenwave.data.loader import SegmentSampler
from tokenwave.data.manifest import read_manifest
from tokenwave.data.writer import DatasetWriter
from tokenwave.errors import InvalidArgumentError

ROOT = Path(__file__).parents[1]
SR = SAMPLE_RATE


def _carry():
    spec = importlib.util.spec_from_file_location("gpu_carry", ROOT / "scripts" / "gpu_carry.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dataset(path: Path, n: int = 18, seed: int = 0) -> Path:
    """Clips of 0.2-2.5 s (tones and noise), every sixth valid, every sixth test, with real-corpus fields."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, "speech", {"source": "test"}) as w:
        for i in range(n):
            k = int(rng.uniform(0.2, 2.5) * SR)
            t = np.arange(k) / SR
            wav = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.02 * rng.standard_normal(k)
            split = {3: "valid", 4: "test"}.get(i % 6, "train")
            w.add(wav.astype(np.float32), split, f"c{i:02d}", bandwidth_hz=4000.0 + 500 * i, speaker=f"s{i % 3}",
                  package="pkg", licence="GPL-2+")
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _dataset(tmp_path_factory.mktemp("d") / "speech")


def test_pack_audio_parts_carry_train_and_valid_as_opus_the_loader_reads(tmp_path, data):
    carry = _carry()
    rows = read_manifest(data)
    s1 = carry.pack_audio(data, tmp_path / "p1", part=(1, 2), valid_clips=2)
    s2 = carry.pack_audio(data, tmp_path / "p2", part=(2, 2), valid_clips=2)
    p1, p2 = read_manifest(tmp_path / "p1"), read_manifest(tmp_path / "p2")
    # the parts are disjoint and cover every train clip; valid (the first 2) travels with part 1; test stays home
    train1 = {r["id"] for r in p1 if r["split"] == "train"}
    train2 = {r["id"] for r in p2 if r["split"] == "train"}
    assert not train1 & train2 and train1 | train2 == {r["id"] for r in rows if r["split"] == "train"}
    assert [r["id"] for r in p1 if r["split"] == "valid"] == [r["id"] for r in rows if r["split"] == "valid"][:2]
    assert not [r for r in p2 if r["split"] != "train"] and not (tmp_path / "p1" / "audio" / "test").exists()
    # about equal hours: the parts differ by at most one clip's length
    longest = max(r["duration"] for r in rows)
    assert abs(s1["hours"]["train"] - s2["hours"]["train"]) <= longest / 3600
    assert s1["clips"] == {"train": len(train1), "valid": 2} and s1["mib"] > 0
    # every manifest field kept, only the path moved to the Opus file
    by_id = {r["id"]: r for r in rows}
    for r in p1 + p2:
        assert r["path"].endswith(".ogg") and {**r, "path": by_id[r["id"]]["path"]} == by_id[r["id"]]
        wav, sr = load_audio(tmp_path / ("p1" if r in p1 else "p2") / r["path"], SR)
        ref, _ = load_audio(data / by_id[r["id"]]["path"], SR)
        assert sr == SR and abs(len(wav) - len(ref)) < 320  # the clip's duration, within a codec frame
        assert np.corrcoef(wav[: len(ref)], ref[: len(wav)])[0, 1] > 0.9  # the same audio
    info = json.loads((tmp_path / "p1" / "dataset.json").read_text())
    assert info["source"] == "test" and info["carried"]["part"] == "1/2" and info["carried"]["kbps"] == 48.0
    # the parts merge by naming both: the sampler sees every train clip, with its bandwidth
    sampler = SegmentSampler([tmp_path / "p1", tmp_path / "p2"], "train", 4000)
    assert sorted(sampler.ids["speech"]) == sorted(train1 | train2)
    assert sampler.bands["speech"] == [min(by_id[i]["bandwidth_hz"], SR / 2) for i in sampler.ids["speech"]]


def test_pack_audio_max_hours_and_refusals(tmp_path, data):
    carry = _carry()
    train = [r for r in read_manifest(data) if r["split"] == "train"]
    cap = sum(r["duration"] for r in train) / 2 / 3600
    s = carry.pack_audio(data, tmp_path / "half", splits=["train"], max_hours=cap)
    assert 0 < s["hours"]["train"] <= cap and s["clips"]["valid"] == 0
    assert s["clips"]["train"] < len(train)
    with pytest.raises(InvalidArgumentError, match="test"):
        carry.pack_audio(data, tmp_path / "t", splits=["train", "test"])
    with pytest.raises(InvalidArgumentError, match="names no part"):
        carry.pack_audio(data, tmp_path / "t", part=(3, 2))
    assert not (tmp_path / "t").exists()


def test_batches_gathered_on_the_device_equal_the_host_batches(data):
    """keep_on: the same clips, starts, gains and bandwidths, bit for bit, for the same seed (clips shorter than the
    segment padded with zeros, starts on the hop)."""
    segment = SR + 960
    host = SegmentSampler([data], "train", segment, seed=7)
    kept = SegmentSampler([data], "train", segment, seed=7, workers=2).keep_on("cpu")
    assert kept.store.numel() == sum(len(w) for c in host.clips.values() for w in c)
    for _ in range(5):
        a, where_a, bands_a = host.draw(16, align=320, with_bandwidth=True)
        b, where_b, bands_b = kept.draw(16, align=320, with_bandwidth=True)
        assert torch.equal(a, b) and where_a == where_b and bands_a == bands_b
    assert any(start > 0 for _, start in where_a) and bool((a == 0).any())  # offsets and padding both exercised
    assert torch.equal(host.sample(8), kept.sample(8))
    wav, bands = kept.sample_banded(8)
    assert torch.equal(wav, host.sample_banded(8)[0]) and bands.dtype == torch.float32


def test_gpu_train_sh_codec_run_returns_a_loadable_codec(tmp_path, data):
    """RUNS=codec on the CPU: the carried Opus folders are stashed, listed and trained on within the budget, and the
    best model comes back as a tar whose float16 weights load as a float32 codec."""
    carry = _carry()
    carry.pack_audio(data, tmp_path / "carry" / "c1" / "speech-1of2", part=(1, 2), valid_clips=2)
    carry.pack_audio(data, tmp_path / "carry" / "c2" / "speech-2of2", part=(2, 2))
    env = {**os.environ, "DEVICE": "cpu", "BUDGET": "20", "RUNS": "codec", "CODEC_PRESET": "tiny", "CODEC_BATCH": "4",
           "CODEC_SEGMENT": "0.25", "CODEC_VAL": "10", "CODEC_ADV_START": "15", "CODEC_CARRY": str(tmp_path / "carry"),
           "STASH": str(tmp_path / "stash"), "OUT": str(tmp_path / "out"), "PY": sys.executable,
           "PYTHONPATH": str(ROOT)}
    run = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh")], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "codec data: 2 folders" in run.stdout
    with tarfile.open(tmp_path / "out" / "codec.tar") as tar:
        tar.extractall(tmp_path / "back", filter="data")
    best = tmp_path / "back" / "best"
    assert {str(v.dtype) for v in load_file(str(best / "model.safetensors")).values()} <= {"float16", "bool", "int64"}
    codec = Codec.load(best)
    assert next(codec.parameters()).dtype == torch.float32
    assert codec.encode(torch.zeros(1, 1, 3200)).shape[-1] == 10
    log = [json.loads(line) for line in (best / "train_log.jsonl").read_text().splitlines()]
    assert any("time_budget" in e for e in log) or any(e.get("step") for e in log)
    assert json.loads((best / "config.json").read_text())["validation"]["valid_loss"] > 0


def test_gpu_train_sh_stashes_parts_across_calls_and_refuses_a_partial_stash(tmp_path, data):
    """RUNS="" copies a call's carried parts into the stash, where the next call's parts join them; CODEC_EXPECT
    stops a codec run before training when the stash holds fewer dataset folders than the calls carried."""
    carry = _carry()
    carry.pack_audio(data, tmp_path / "a" / "c1" / "speech-1of2", part=(1, 2), valid_clips=2)
    carry.pack_audio(data, tmp_path / "b" / "c2" / "speech-2of2", part=(2, 2))
    env = {**os.environ, "DEVICE": "cpu", "STASH": str(tmp_path / "stash"), "OUT": str(tmp_path / "out"),
           "PY": sys.executable, "PYTHONPATH": str(ROOT)}

    def call(carried: str, **more: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh")], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, check=False, env={**env, "CODEC_CARRY": str(tmp_path / carried),
                                                                        **more})

    first = call("a", RUNS="")
    assert first.returncode == 0 and "codec data: 1 folders" in first.stdout
    partial = call("b", RUNS="codec", CODEC_EXPECT="3")
    assert partial.returncode == 3 and "2 of the 3 expected" in partial.stdout
    assert not (tmp_path / "runs").exists()  # nothing trained
    assert sorted(p.name for p in (tmp_path / "stash").glob("*/*")) == ["speech-1of2", "speech-2of2"]
