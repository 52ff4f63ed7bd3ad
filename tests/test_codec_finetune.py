"""Training the codec on real recordings: clips recorded below 24 kHz teach their low band only (the losses are masked
above each clip's original bandwidth, the manifest's ``bandwidth_hz``), and `train codec --init` fine-tunes a codec."""
import numpy as np
import pytest
import torch

from tokenwave import SAMPLE_RATE
from tokenwave.codec.losses import complex_stft_loss, mel_loss, stft_loss
from tokenwave.data.loader import SegmentSampler, clip_bandwidth
from tokenwave.data.writer import DatasetWriter
from tokenwave.train.codec import CodecTrainConfig, reconstruction_losses

SR = SAMPLE_RATE


def _tone(freq: float, amp: float = 0.3, seconds: float = 0.5) -> torch.Tensor:
    """A tone with a smooth (Hann) envelope: no onset click spreading energy into other bands."""
    n = int(seconds * SR)
    t = torch.arange(n) / SR
    return (amp * torch.sin(2 * torch.pi * freq * t) * torch.hann_window(n, periodic=False))[None, None]


def _losses(x, y, bw):
    return [mel_loss(x, y, SR, bw), stft_loss(x, y, bw, SR), complex_stft_loss(x, y, bandwidth=bw, sample_rate=SR)]


def test_an_error_above_the_bandwidth_costs_nothing_below_it_costs():
    torch.manual_seed(0)
    y = _tone(440) + _tone(2000, 0.1) + 0.001 * torch.randn(1, 1, SR // 2)
    high = y + _tone(10_000, 0.2)     # what a codec adds above an 8 kHz recording's band
    low = y + _tone(1_000, 0.2)       # an error inside the band
    bw = torch.tensor([8000.0])
    for masked_high, plain_high, masked_low in zip(_losses(high, y, bw), _losses(high, y, None), _losses(low, y, bw)):
        assert float(masked_high) < 0.05 * float(plain_high)   # the high band is not the clip's: no cost
        assert float(masked_low) > 10 * float(masked_high)     # the low band is: a real cost


def test_full_band_masks_equal_the_plain_losses():
    torch.manual_seed(1)
    y, x = 0.1 * torch.randn(2, 1, SR // 2), 0.1 * torch.randn(2, 1, SR // 2)
    full = torch.full((2,), SR / 2)
    for masked, plain in zip(_losses(x, y, full), _losses(x, y, None)):
        assert float(masked) == pytest.approx(float(plain), rel=1e-4)


def test_reconstruction_losses_mix_full_and_band_limited_clips():
    """The waveform term counts full-band clips only; a batch of one band-limited clip has no waveform term."""
    torch.manual_seed(2)
    y = 0.1 * torch.randn(2, 1, SR // 2)
    x = y + 0.05 * torch.randn(2, 1, SR // 2)
    t = CodecTrainConfig()
    plain, _ = reconstruction_losses(x[:1], y[:1], t)
    mixed, _ = reconstruction_losses(x, y, t, torch.tensor([SR / 2, 8000.0]))
    assert float(mixed["wave"]) == pytest.approx(float(plain["wave"]), rel=1e-5)
    only_limited, _ = reconstruction_losses(x[1:], y[1:], t, torch.tensor([8000.0]))
    assert float(only_limited["wave"]) == 0.0


def test_clip_bandwidth_from_the_manifest():
    assert clip_bandwidth({"bandwidth_hz": 7100.0, "original_sample_rate": 16000}) == 7100.0
    assert clip_bandwidth({"original_sample_rate": 16000}) == 8000.0
    assert clip_bandwidth({"original_sample_rate": 48000}) == SR / 2
    assert clip_bandwidth({}) == SR / 2


def test_sampler_draws_each_clip_with_its_bandwidth(tmp_path):
    with DatasetWriter(tmp_path / "d", "sfx", {"source": "test"}) as w:
        for i, (bw, split) in enumerate([(4000.0, "train"), (12000.0, "train"), (6000.0, "valid")]):
            w.add(np.full(SR, 0.1 * (i + 1), dtype=np.float32), split, f"c{i}", bandwidth_hz=bw)
    a = SegmentSampler([tmp_path / "d"], "train", 4000, seed=3)
    b = SegmentSampler([tmp_path / "d"], "train", 4000, seed=3)
    wav, bands = a.sample_banded(16)
    assert torch.equal(wav, b.sample(16))  # the same draws as a plain batch
    _, where, listed = b.draw(16, with_bandwidth=True)
    assert listed == [{"c0": 4000.0, "c1": 12000.0}[clip] for clip, _ in where]
    assert set(listed) == {4000.0, 12000.0} and set(bands.tolist()) <= {4000.0, 12000.0}


def test_train_codec_init_fine_tunes_a_codec_and_refuses_a_preset_beside_it(tmp_path):
    """`train codec --init DIR` starts from DIR's architecture and weights: at learning rate 0 its encoder comes out
    as it went in (the EMA codebooks still move); --preset with --init is refused with the fix named."""
    import subprocess
    import sys

    from safetensors.torch import load_file

    from tokenwave.data.sfx import build_sfx

    data = build_sfx(tmp_path / "sfx", minutes=0.5, seed=0)

    def tw(*args):
        return subprocess.run([sys.executable, "-m", "tokenwave", "train", "codec", "--data", str(data), "--steps", "2",
                               "--batch-size", "2", "--segment", "0.25", "--val-every", "2", "--ckpt-every", "2",
                               "--threads", "1", *map(str, args)], capture_output=True, text=True)

    first = tw("--out", tmp_path / "a", "--preset", "tiny")
    assert first.returncode == 0, first.stderr[-2000:]
    tuned = tw("--out", tmp_path / "b", "--init", tmp_path / "a" / "model", "--lr", "0")
    assert tuned.returncode == 0, tuned.stderr[-2000:]
    a, b = (load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in "ab")
    assert a.keys() == b.keys()  # the tiny architecture came along although no --preset was given
    enc = [k for k in a if k.startswith("encoder.")]
    assert enc and all(torch.equal(a[k], b[k]) for k in enc)
    both = tw("--out", tmp_path / "c", "--init", tmp_path / "a" / "model", "--preset", "tiny")
    assert both.returncode == 2 and "leave out --preset" in both.stderr
