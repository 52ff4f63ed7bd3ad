"""Flow-matching generator on tiny configs: training, samplers, guidance, durations, prompts, long form, streaming."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tokenwave.conditioning import Conditioning
from tokenwave.errors import InvalidArgumentError
from tokenwave.flow import FlowConfig, FlowDiT, FlowSampling, decode_long, flow_loss, sample, sample_long, stream_chunks
from tokenwave.flow.sample import plan_windows, stream_latency

D = 8


def tiny(max_frames: int = 64, **kw) -> FlowDiT:
    """A tiny model whose zero-initialised (adaLN-zero) weights are randomised, so it is not the zero velocity."""
    torch.manual_seed(0)
    model = FlowDiT(FlowConfig(latent_dim=D, dim=32, depth=2, heads=2, max_frames=max_frames, **kw))
    for p in model.parameters():
        if p.dim() and bool((p == 0).all()):
            torch.nn.init.normal_(p, std=0.1)
    return model.eval()


def tags(B: int, P: int = 3, seed: int = 1) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    return Conditioning(prefix=torch.randn(B, P, 32, generator=g))


class StubCodec:
    """Decodes latents by linear interpolation of channel 0 across each frame (from the previous frame's value):
    continuous audio, one frame of context, so window decodes equal the full decode past their first frame."""

    hop, sample_rate = 320, 24_000

    def decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        cur = z[:, :1]
        prev = torch.cat([cur[..., :1], cur[..., :-1]], dim=-1)
        w = (torch.arange(self.hop) + 1.0) / self.hop
        wav = prev[..., None] * (1 - w) + cur[..., None] * w  # [B, 1, T, hop]
        return 0.1 * wav.flatten(-2)


@pytest.mark.parametrize("patch", [1, 2])
def test_loss_decreases_on_synthetic_latents(patch):
    torch.manual_seed(0)
    model = FlowDiT(FlowConfig(latent_dim=D, dim=32, depth=2, heads=2, max_frames=32, cond_dropout=0.0, patch=patch))
    centres = torch.randn(4, D, 1) * 2  # four "sounds": a per-channel level plus a slow ramp
    ramp = torch.linspace(-1, 1, 32)

    def batch(g):
        k = torch.randint(0, 4, (16,), generator=g)
        return centres[k] + 0.5 * ramp * centres[k].flip(1) + 0.05 * torch.randn(16, D, 32, generator=g)

    def eval_loss():
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(flow_loss(model.eval(), batch(g), generator=g, prompt_share=0.0, times="uniform"))

    before = eval_loss()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss = flow_loss(model.train(), batch(g), torch.randint(16, 33, (16,), generator=g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert eval_loss() < 0.6 * before


@pytest.mark.parametrize("patch", [1, 2, 3])
def test_seed_determinism(patch):
    model = tiny(patch=patch)
    p = FlowSampling(steps=4, seed=3)
    a, b = sample(model, 20, tags(2), p), sample(model, 20, tags(2), p)
    assert torch.equal(a, b)
    c = sample(model, 20, tags(2), FlowSampling(steps=4, seed=4))
    assert (a - c).abs().mean() > 0.1


def test_cfg_zero_is_unconditional_and_one_is_conditional():
    model = tiny()
    cond = tags(2)
    run = lambda c, s: sample(model, 16, c, FlowSampling(steps=4, cfg_scale=s))  # noqa: E731
    assert torch.equal(run(cond, 0.0), run(cond.null_like(model.null_cond), 1.0))
    cond_only = run(cond, 1.0)
    assert not torch.allclose(cond_only, run(cond, 0.0))
    # any other scale batches both passes: u + s (c - u); 0.5 lies between the two
    half = run(cond, 0.5)
    assert (half - cond_only).abs().mean() < (run(cond, 0.0) - cond_only).abs().mean()


def test_guidance_interval_guides_the_early_steps_only():
    """``cfg_until``: guided velocity at times t <= cfg_until, the conditional one after (4 Euler steps evaluate at
    t = 0, 0.25, 0.5, 0.75)."""
    model, cond = tiny(), tags(2)
    run = lambda until, scale=3.0: sample(model, 16, cond, FlowSampling(steps=4, method="euler", cfg_scale=scale,  # noqa: E731
                                                                        seed=1, cfg_until=until))
    everywhere = run(1.0)
    assert torch.equal(everywhere, run(0.75))  # every step's time is <= 0.75
    assert torch.equal(run(0.6), run(0.74)) and not torch.equal(run(0.74), everywhere)  # the same steps guided
    early = run(0.0)  # the first step only
    assert not torch.equal(early, run(0.6)) and not torch.equal(early, run(1.0, scale=1.0))
    # the closer the interval reaches the data, the closer the result to guiding every step
    gaps = [(run(u) - everywhere).abs().mean().item() for u in (0.0, 0.3, 0.6)]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    with pytest.raises(InvalidArgumentError, match="cfg_until"):
        run(1.5)


def test_more_steps_converge():
    model = tiny()
    s = {n: sample(model, 24, tags(2), FlowSampling(steps=n, method="heun")) for n in (4, 32, 64)}
    assert (s[32] - s[64]).norm() < (s[4] - s[64]).norm()


@pytest.mark.parametrize("method", ["euler", "heun"])
@pytest.mark.parametrize("patch", [1, 2])
def test_methods_give_finite_latents(method, patch):
    model = tiny(patch=patch)
    z = sample(model, [12, 9], tags(2), FlowSampling(steps=3, method=method))
    assert z.shape == (2, D, 12) and torch.isfinite(z).all()
    assert z[1, :, 9:].abs().max() == 0


@pytest.mark.parametrize("patch", [1, 2])
def test_variable_durations_match_single_items(patch):
    model = tiny(patch=patch)
    cond = tags(2)
    p = FlowSampling(steps=4, cfg_scale=2.0, seed=5)
    both = sample(model, [30, 16], cond, p)
    assert both[1, :, 16:].abs().max() == 0
    alone = sample(model, 16, Conditioning(prefix=cond.prefix[1:]), p, seeds=[p.seed + 1])
    torch.testing.assert_close(both[1:, :, :16], alone, atol=1e-4, rtol=1e-4)
    first = sample(model, 30, Conditioning(prefix=cond.prefix[:1]), p)
    torch.testing.assert_close(both[:1], first, atol=1e-4, rtol=1e-4)


def test_patches_cut_frames_into_tokens_and_back():
    """Patches of p frames: p times fewer tokens, the frames of a patch map back to their own output frames, any
    length works (the last patch padded), and per-frame conditioning (melody) reaches the frames it names."""
    model = tiny(patch=2)
    x = torch.randn(1, D, 9)
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        v = model(x, t, tags(1))
        assert v.shape == (1, D, 9) and torch.isfinite(v).all()
        y = x.clone()
        y[..., 8] += 1.0  # the last (padded) patch: within it, both the token and its output frames change
        w = model(y, t, tags(1))
        assert not torch.equal(v[..., 8], w[..., 8])
        frames = torch.zeros(1, 9, 32)
        mel = torch.zeros(1, 9, 32)
        mel[:, 4:6] = 1.0
        a = model(x, t, Conditioning(prefix=tags(1).prefix, frames=frames))
        b = model(x, t, Conditioning(prefix=tags(1).prefix, frames=mel))
        assert not torch.equal(a, b)
    assert model.inp.in_features == (2 * D + 1) * 2 and model.out.out_features == D * 2


@pytest.mark.parametrize("patch", [1, 2])
def test_prompt_frames_are_kept_exactly_patched(patch):
    model = tiny(patch=patch)
    cond = tags(1)
    prompt = torch.randn(1, D, 7)
    z = sample(model, 20, cond, FlowSampling(steps=3), prompt=prompt)
    assert torch.equal(z[..., :7], prompt) and torch.isfinite(z).all()


def test_prompt_frames_are_kept_exactly():
    model = tiny()
    prompt = torch.randn(2, D, 20)
    known = torch.zeros(2, 20, dtype=torch.bool)
    known[:, 3:8] = True
    known[1, 15:] = True
    z = sample(model, 20, tags(2), FlowSampling(steps=4), prompt=prompt, prompt_mask=known)
    assert torch.equal(z.transpose(1, 2)[known], prompt.transpose(1, 2)[known])
    free = sample(model, 20, tags(2), FlowSampling(steps=4))
    assert not torch.allclose(z[:, :, 10:14], free[:, :, 10:14])  # the prompt steers the rest
    cont = sample(model, 30, tags(2), FlowSampling(steps=4), prompt=prompt[..., :10])
    assert torch.equal(cont[..., :10], prompt[..., :10])


def test_sample_long_beyond_max_frames():
    model = tiny(max_frames=64)
    p = FlowSampling(steps=3)
    z = sample_long(model, 150, window=64, overlap=16, cond=tags(2), params=p)
    assert z.shape == (2, D, 150) and torch.isfinite(z).all() and z[..., -10:].abs().mean() > 0.1
    assert [s for s, _ in plan_windows(150, 64, 16)] == [0, 48, 96]
    torch.testing.assert_close(sample_long(model, 40, 64, 16, tags(2), p), sample(model, 40, tags(2), p))
    with pytest.raises(Exception, match="max_frames|window"):
        sample(model, 150, tags(2), p)


def _boundary_jumps_ok(wav: np.ndarray, boundaries: list[int], around: int = 480) -> None:
    for b in boundaries:
        jump = abs(wav[b] - wav[b - 1])
        near = np.abs(np.diff(wav[b - around: b + around]))
        assert jump <= 1.5 * np.percentile(near, 99) + 1e-7, (b, jump, np.percentile(near, 99))


def test_stream_chunks_equal_offline_and_are_seamless():
    from tokenwave.codec import Codec
    from tokenwave.train.codec import PRESETS

    model = tiny(max_frames=64)
    p = FlowSampling(steps=3)
    torch.manual_seed(0)
    codec = Codec(PRESETS["tiny"]).eval()
    for dec in (codec, StubCodec()):
        chunks = list(stream_chunks(model, dec, 150, window=64, overlap=16, cond=tags(1), params=p))
        assert len(chunks) == 3
        streamed = torch.cat(chunks, dim=-1)
        latents = sample_long(model, 150, 64, 16, tags(1), p)
        offline = decode_long(dec, latents, 64, 16)
        assert streamed.shape == offline.shape == (1, 1, 150 * 320)
        torch.testing.assert_close(streamed, offline, atol=1e-6, rtol=0)
        edges = np.cumsum([c.shape[-1] for c in chunks])[:-1].tolist()
        _boundary_jumps_ok(streamed[0, 0].numpy(), edges)
    # windows continue each other and the crossfade is equal-gain: with a decoder of one frame of context the
    # stream is the full-sequence decode
    full = StubCodec().decode_latents(latents)
    torch.testing.assert_close(streamed, full, atol=1e-6, rtol=0)
    lat = stream_latency(model, StubCodec(), window=32, overlap=8, params=p, ar_first_frame_s=0.01, batch_size=1)
    assert lat["first_chunk_s"] > 0 and lat["added_vs_token_ar_s"] == pytest.approx(lat["first_chunk_s"] - 0.01)


def test_save_load_round_trip(tmp_path):
    model = tiny(cross_attention=True)
    cond = Conditioning(prefix=tags(2).prefix, cross=torch.randn(2, 5, 32))
    model.save(tmp_path / "flow")
    loaded = FlowDiT.load(tmp_path / "flow")
    assert loaded.cfg == model.cfg
    p = FlowSampling(steps=2)
    assert torch.equal(sample(model, 10, cond, p), sample(loaded, 10, cond, p))


@pytest.mark.filterwarnings("ignore:.*has no valid clips")
def test_cli_latents_and_train_flow(tmp_path):
    from tokenwave.cli import app
    from tokenwave.codec import Codec, load_codec
    from tokenwave.data.sfx import build_sfx
    from tokenwave.data.tokens import LatentDataset
    from tokenwave.models.tagged import Generator
    from tokenwave.train.codec import PRESETS

    data = build_sfx(tmp_path / "sfx", minutes=0.3, seed=0)
    torch.manual_seed(0)
    Codec(PRESETS["tiny"]).save(tmp_path / "codec")
    runner = CliRunner()
    res = runner.invoke(app, ["codec", "latents", "--data", str(data), "--out", str(tmp_path / "lat"),
                              "--model", str(tmp_path / "codec")])
    assert res.exit_code == 0, (res.output, res.exception)
    info = json.loads((tmp_path / "lat" / "latents.json").read_text())
    assert info["latent_dim"] == PRESETS["tiny"].latent_dim and info["frame_rate"] == 75
    assert info["stats"]["overall_std"] > 0 and len(info["stats"]["mean"]) == info["latent_dim"]
    lat, _, rows = LatentDataset(tmp_path / "lat", "train").sample(3, 20)
    assert lat.shape == (3, info["latent_dim"], 20) and lat.dtype == torch.float32 and len(rows) == 3
    def train(run, *extra):
        res = runner.invoke(app, ["train", "flow", "--latents", str(tmp_path / "lat"), "--out", str(tmp_path / run),
                                  "--preset", "tiny", "--steps", "10", "--frames", "24", "--batch-size", "2",
                                  "--val-every", "10", "--ckpt-every", "5", "--log-every", "5", "--device", "cpu", *extra])
        assert res.exit_code == 0, (res.output, res.exception)

    train("run")
    train("split", "--until", "5")
    train("split", "--resume")
    a, b = (load_file(str(tmp_path / r / "model" / "model.safetensors")) for r in ("run", "split"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)  # --resume is exact
    codec = load_codec(tmp_path / "codec")
    g = Generator.load(tmp_path / "run" / "model", codec)  # the codec it was trained on
    # the codec's hash, recorded by `codec latents`, then by training
    assert g.extra["codec_hash"] == info["codec_hash"] == codec.content_hash()
    model, vocab, tag_cond = g.model, g.vocab, g.tags
    assert g.kind == "flow" and g.melody is None
    assert model.cfg.patch == 2  # the recipe's default
    assert model.cfg.latent_scale == pytest.approx(info["stats"]["overall_std"])
    assert "domain=sfx" in vocab.tags
    ids, mask = vocab.encode([["domain=sfx"]])
    z = sample(model, 12, tag_cond(ids, mask), FlowSampling(steps=2))
    assert z.shape == (1, info["latent_dim"], 12) and torch.isfinite(z).all()
