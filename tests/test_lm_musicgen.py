"""MusicGen's decoder (transformers, tiny random weights) driven by our delay pattern, sampling and streaming."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from tokenwave.conditioning import Conditioning  # noqa: E402
from tokenwave.lm.generate import generate, stream  # noqa: E402
from tokenwave.lm.hf_musicgen import MusicgenLM, MusicgenLoadError, load_musicgen  # noqa: E402
from tokenwave.lm.sampling import SamplingParams  # noqa: E402

V, K, D = 32, 4, 32


def decoder_config(**kw):
    args = dict(vocab_size=V, num_codebooks=K, hidden_size=D, num_hidden_layers=2, num_attention_heads=2, ffn_dim=64,
                max_position_embeddings=256, pad_token_id=V, bos_token_id=V, decoder_start_token_id=V)
    return transformers.MusicgenDecoderConfig(**{**args, **kw})


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(HF model, folder) of a tiny random MusicgenForCausalLM saved with save_pretrained."""
    torch.manual_seed(0)
    model = transformers.MusicgenForCausalLM(decoder_config()).eval()
    folder = tmp_path_factory.mktemp("musicgen") / "decoder"
    model.save_pretrained(folder)
    return model, folder


@pytest.fixture(scope="module")
def lm(saved) -> MusicgenLM:
    return load_musicgen(saved[1])


def hf_greedy(model, batch, T, cross=None, cross_mask=None, scale=1.0):
    """HF's own ``generate(do_sample=False)`` from the start token: codes ``[B, K, T]``."""
    ids = torch.full((batch * K, 1), V)
    kw = {}
    if cross is not None:
        kw["encoder_hidden_states"] = torch.cat([cross, torch.zeros_like(cross)]) if scale != 1.0 else cross
        if cross_mask is not None:
            kw["encoder_attention_mask"] = torch.cat([cross_mask, cross_mask]) if scale != 1.0 else cross_mask
        # MusicgenForCausalLM.generate alone would share one DynamicCache between self- and cross-attention
        kw["cache"] = transformers.EncoderDecoderCache(transformers.DynamicCache(), transformers.DynamicCache())
    if scale != 1.0:
        kw["guidance_scale"] = scale
    return model.generate(ids, do_sample=False, max_length=T + K, num_return_sequences=1, **kw)


def test_config_and_shapes(lm):
    assert (lm.cfg.K, lm.cfg.codebook_size, lm.cfg.special, lm.cfg.dim, lm.cfg.pattern) == (K, V, V, D, "delay")
    assert lm.cfg.max_len == 256 and lm.cfg.depth == 2 and lm.cfg.heads == 2
    out = generate(lm, 12, None, SamplingParams(seed=0), batch_size=3)
    assert len(out) == 3 and all(o.shape == (K, 12) and o.min() >= 0 and o.max() < V for o in out)


def test_cached_steps_equal_hf_full_forward(saved, lm):
    model, _ = saved
    B, T = 2, 7
    codes = torch.randint(0, V, (B, K, T))
    seq, _ = lm.pattern.build(codes, V)  # [B, K, L]
    _, book, _ = lm.pattern.layout(T)
    book = book[None]
    inp = torch.cat([torch.full_like(seq[..., :1], V), seq[..., :-1]], -1)  # start + steps 0..L-2
    cross = torch.randn(B, 5, D)
    cross_mask = torch.tensor([[1] * 5, [1, 1, 1, 0, 0]], dtype=torch.bool)
    cond = Conditioning(cross=cross, cross_mask=cross_mask)
    with torch.no_grad():
        full = model(input_ids=inp.reshape(B * K, -1), encoder_hidden_states=cross,
                     encoder_attention_mask=cross_mask.long()).logits.view(B, K, -1, V)
        cache = lm.new_cache(B, seq.shape[-1])
        h = lm.run(lm.embed_steps(inp[..., :1], book[..., :1]), cond, None, cache)
        for step in range(seq.shape[-1]):
            logits = lm.logits_for(h, book[..., step: step + 1])[:, :, 0]
            assert torch.allclose(logits, full[:, :, step], atol=1e-4), step
            h = lm.run(lm.embed_steps(seq[..., step: step + 1], book[..., step: step + 1]), cond, None, cache)
        assert cache.bytes() > 0
        # a multi-step prefill (teacher forced, no cache) gives the same logits too
        whole = lm.logits_for(lm.run(lm.embed_steps(inp, book), cond), book)
        assert torch.allclose(whole, full, atol=1e-4)


def test_greedy_equals_hf_generate(saved, lm):
    model, _ = saved
    greedy = SamplingParams(temperature=0.0, cfg_scale=1.0)
    ours = torch.stack(generate(lm, 10, None, greedy, batch_size=2))
    assert torch.equal(ours, hf_greedy(model, 2, 10))


def test_greedy_with_cross_attention_and_cfg_equals_hf_generate(saved, lm):
    model, _ = saved
    torch.manual_seed(1)
    cross = 5 * torch.randn(2, 6, D)  # large enough to change greedy choices of the tiny model
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    cond = Conditioning(cross=cross, cross_mask=mask)
    for scale in (1.0, 3.0):
        ours = torch.stack(generate(lm, 9, cond, SamplingParams(temperature=0.0, cfg_scale=scale)))
        theirs = hf_greedy(model, 2, 9, cross, mask.long(), scale)
        assert torch.equal(ours, theirs), scale
    # guidance changes the result and unconditional generation ignores the text
    c1 = torch.stack(generate(lm, 9, cond, SamplingParams(temperature=0.0, cfg_scale=1.0)))
    c3 = torch.stack(generate(lm, 9, cond, SamplingParams(temperature=0.0, cfg_scale=3.0)))
    assert not torch.equal(c1, c3)
    u = generate(lm, 9, cond, SamplingParams(temperature=0.0, cfg_scale=0.0))
    assert torch.equal(u[0], u[1])


def test_seed_determinism_and_streaming_equals_offline(lm):
    cond = Conditioning(cross=torch.randn(2, 4, D))
    params = SamplingParams(seed=7, top_k=8, cfg_scale=2.0)
    a = generate(lm, 11, cond, params)
    assert all(torch.equal(x, y) for x, y in zip(a, generate(lm, 11, cond, params)))
    c = generate(lm, 11, cond, SamplingParams(seed=8, top_k=8, cfg_scale=2.0))
    assert any(not torch.equal(x, y) for x, y in zip(a, c))
    pieces: list[list[torch.Tensor]] = [[], []]
    first = None
    for n, step in enumerate(stream(lm, 11, cond, params)):
        for i in range(2):
            pieces[i].append(step[i])
        if first is None and step[0].shape[-1]:
            first = n
    assert first == K - 1  # the delay pattern completes frame 0 at step K-1
    assert all(torch.equal(torch.cat(p, -1), x) for p, x in zip(pieces, a))


def test_prompt_continuation_and_batched_lengths(lm):
    prompt = torch.randint(0, V, (1, K, 4))
    out = generate(lm, 10, None, SamplingParams(seed=1), prompt=prompt)[0]
    assert out.shape == (K, 10) and torch.equal(out[:, :4], prompt[0])
    greedy = SamplingParams(temperature=0.0, cfg_scale=1.0)
    both = generate(lm, [9, 5], None, greedy, batch_size=2)
    solo = generate(lm, 5, None, greedy)[0]
    assert [b.shape[-1] for b in both] == [9, 5] and torch.equal(both[1], solo)


def test_full_model_folder(tmp_path, saved):
    """A full MusicgenForConditionalGeneration folder: its decoder (and enc_to_dec_proj) are taken."""
    t5 = transformers.T5Config(vocab_size=50, d_model=24, d_kv=8, d_ff=32, num_layers=1, num_heads=2)
    enc = transformers.EncodecConfig(num_filters=4, upsampling_ratios=[8, 4], codebook_size=V, hidden_size=16,
                                     codebook_dim=16, target_bandwidths=[1.5], sampling_rate=8000)
    cfg = transformers.MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=enc.to_dict(),
                                      decoder=decoder_config().to_dict())
    torch.manual_seed(2)
    full = transformers.MusicgenForConditionalGeneration(cfg).eval()
    full.save_pretrained(tmp_path / "full")
    lm = load_musicgen(tmp_path / "full")
    assert lm.text_proj is not None and lm.cfg.K == K
    assert torch.equal(lm.heads[0].weight, full.decoder.lm_heads[0].weight)
    states = torch.randn(1, 3, 24)
    cond = lm.project_text(states, torch.tensor([[1, 1, 0]]))
    assert cond.cross.shape == (1, 3, D) and torch.all(cond.cross[0, 2] == 0)
    greedy = SamplingParams(temperature=0.0, cfg_scale=1.0)
    ours = torch.stack(generate(lm, 6, cond, greedy))
    assert torch.equal(ours, hf_greedy(full.decoder, 1, 6, cond.cross, cond.cross_mask.long()))


def test_rejects_non_musicgen_folder(tmp_path, saved):
    with pytest.raises(MusicgenLoadError):
        load_musicgen(tmp_path)
    bad = transformers.MusicgenForCausalLM(decoder_config(pad_token_id=5))
    with pytest.raises(MusicgenLoadError):
        MusicgenLM(bad)


def test_fast_top_k_draw_matches_top_k_distribution():
    """The decoding loop's top-k sampler (used for both backends) draws from softmax over the k best / top-p set."""
    from tokenwave.lm.sampling import draw, filter_logits

    torch.manual_seed(0)
    logits = torch.randn(12)
    n = 100_000
    for top_k, top_p, temp in ((5, 0.0, 1.0), (6, 0.8, 0.7)):
        gen = torch.Generator().manual_seed(1)
        toks = draw(logits.expand(n, 12), torch.full((n,), temp), SamplingParams(top_k=top_k, top_p=top_p), gen)
        seen = torch.bincount(toks, minlength=12).float() / n
        exact = filter_logits((logits / temp)[None], top_k, top_p).softmax(-1)[0]
        assert (seen - exact).abs().max() < 0.01
    temps = torch.tensor([0.0, 1.0, 0.0])
    rows = torch.randn(3, 12)
    toks = draw(rows, temps, SamplingParams(top_k=4), torch.Generator().manual_seed(0))
    assert toks[0] == rows[0].argmax() and toks[2] == rows[2].argmax()
    assert rows[1, toks[1]] >= rows[1].topk(4).values[-1]


def test_packed_linear_follows_weight_updates_and_copies():
    """TokenLM's inference GEMM (oneDNN packed copy) tracks in-place weight updates and survives deepcopy."""
    import copy

    import torch.nn.functional as F

    from tokenwave.nn import Linear

    torch.manual_seed(0)
    layer = Linear(16, 24)
    x = torch.randn(3, 5, 16)
    with torch.no_grad():
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
        layer.weight.add_(1.0)  # what an optimizer step or load_state_dict does
        assert torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-5)
    twin = copy.deepcopy(layer)
    with torch.no_grad():
        assert torch.allclose(twin(x), layer(x), atol=1e-5)
    assert layer(x).requires_grad  # training path untouched


def test_a_few_rows_take_the_default_blas_and_more_rows_the_packed_copy_made_on_first_use(monkeypatch):
    """``FEW_ROWS`` (3 on Intel CPUs with MKL, 0 elsewhere) decides per call: up to it the GEMM is the default BLAS on
    the (concatenated) weights, bit for bit ``F.linear``; above it oneDNN's packed copy, built only then."""
    import torch.nn.functional as F

    from tokenwave.nn import linear

    monkeypatch.setattr(linear, "FEW_ROWS", 3)
    torch.manual_seed(0)
    layer = linear.Linear(16, 24).eval()
    few, many = torch.randn(1, 3, 16), torch.randn(2, 4, 16)
    with torch.no_grad():
        assert torch.equal(layer(few), F.linear(few, layer.weight, layer.bias))
        assert linear._PACKED.get(layer, [None, None])[1] is None  # no packed copy yet
        assert torch.allclose(layer(many), F.linear(many, layer.weight, layer.bias), atol=1e-5)
        assert linear._PACKED[layer][1] is not None
        a, b = torch.randn(8, 16), torch.randn(4, 16)  # fused weights (attention's q, k, v) on both paths
        for x in (few, many):
            assert torch.allclose(linear.packed_linear(layer, x, (a, b)), F.linear(x, torch.cat([a, b])), atol=1e-5)
    monkeypatch.setattr(linear, "FEW_ROWS", 0)  # elsewhere every multi-row call goes packed
    with torch.no_grad():
        assert torch.allclose(layer(few), F.linear(few, layer.weight, layer.bias), atol=1e-5)
    from tokenwave.sysdeps import cpuinfo

    assert cpuinfo("no such field") == "" and isinstance(cpuinfo("vendor_id"), str)
