import pytest
import torch

from tokenwave.conditioning import Conditioning, TagConditioner
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.config import LMConfig
from tokenwave.lm.generate import forced_steps, generate, generate_long, stream
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams, draw, draw_each, filter_logits
from tokenwave.lm.toy import offset_batch, style_batch, style_rule_accuracy, train_toy
from tokenwave.nn import KVCache
from tokenwave.patterns import PATTERNS

V = 16


def tiny(pattern="delay", K=3, cross=False, **kw):
    torch.manual_seed(0)
    return TokenLM(LMConfig(K=K, codebook_size=V, pattern=pattern, dim=32, depth=2, heads=2, max_len=128,
                            cross_attention=cross, **kw)).eval()


@pytest.mark.parametrize("pattern", PATTERNS)
def test_kv_cache_equals_full_forward(pattern):
    lm = tiny(pattern)
    codes = torch.randint(0, V, (2, 3, 6))
    cond = Conditioning(prefix=torch.randn(2, 2, 32))
    with torch.no_grad():
        full, _ = lm(codes, cond)  # [B, S, L, V], teacher forced
        seq, _ = lm.pattern.build(codes, V)
        _, book, _ = lm.pattern.layout(6)
        book = book[None]
        cache = KVCache(lm.cfg, 2, torch.device("cpu"), torch.float32)
        start = torch.full((2, lm.pattern.streams, 1), V)
        h = lm.run(torch.cat([cond.prefix, lm.embed_steps(start, book[..., :1])], 1), cond, None, cache)[:, -1:]
        for l in range(seq.shape[-1]):
            step_logits = lm.logits_for(h, book[..., l: l + 1])[:, :, 0]
            assert torch.allclose(step_logits, full[:, :, l], atol=1e-4)
            h = lm.run(lm.embed_steps(seq[..., l: l + 1], book[..., l: l + 1]), cond, None, cache)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_seed_determinism_and_streaming_equals_offline(pattern):
    lm = tiny(pattern)
    cond = Conditioning(prefix=torch.randn(2, 2, 32))
    params = SamplingParams(seed=7, top_k=0, cfg_scale=2.0)
    a = generate(lm, 9, cond, params)
    b = generate(lm, 9, cond, params)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = generate(lm, 9, cond, SamplingParams(seed=8, top_k=0, cfg_scale=2.0))
    assert any(not torch.equal(x, y) for x, y in zip(a, c))
    pieces = [[], []]
    first_yield = None
    for n, step in enumerate(stream(lm, 9, cond, params)):
        for i in range(2):
            pieces[i].append(step[i])
        if first_yield is None and step[0].shape[-1]:
            first_yield = n
    assert all(torch.equal(torch.cat(p, -1), x) for p, x in zip(pieces, a))
    # frames arrive as soon as the pattern completes them
    assert first_yield == {"flat": 2, "delay": 2, "parallel": 0, "vall-e": 9}[pattern]


def test_cfg_scale_zero_is_unconditional():
    lm = tiny("delay")
    with torch.no_grad():
        lm.null_cond.normal_()
    cond = Conditioning(prefix=torch.randn(2, 3, 32))
    params = dict(seed=3, top_k=0, temperature=0.0)
    zero = generate(lm, 8, cond, SamplingParams(cfg_scale=0.0, **params))
    uncond = generate(lm, 8, cond.null_like(lm.null_cond), SamplingParams(cfg_scale=1.0, **params))
    assert all(torch.equal(x, y) for x, y in zip(zero, uncond))
    cond_only = generate(lm, 8, cond, SamplingParams(cfg_scale=1.0, **params))
    assert any(not torch.equal(x, y) for x, y in zip(zero, cond_only))


def test_batched_requests_of_different_lengths_match_solo_greedy():
    lm = tiny("delay", cross=True)
    prefix = torch.randn(2, 4, 32)
    mask = torch.tensor([[True] * 4, [False, False, True, True]])  # item 1 has a 2-token prefix, left-padded
    cross = torch.randn(2, 5, 32)
    cond = Conditioning(prefix=prefix, prefix_mask=mask, cross=cross)
    greedy = SamplingParams(temperature=0.0, cfg_scale=1.0)
    both = generate(lm, [10, 6], cond, greedy)
    assert [x.shape[-1] for x in both] == [10, 6]
    solo0 = generate(lm, 10, Conditioning(prefix=prefix[:1], cross=cross[:1]), greedy)[0]
    solo1 = generate(lm, 6, Conditioning(prefix=prefix[1:, 2:], cross=cross[1:]), greedy)[0]
    assert torch.equal(both[0], solo0) and torch.equal(both[1], solo1)


def test_prompt_continuation_and_long_form():
    lm = tiny("delay")
    prompt = torch.randint(0, V, (1, 3, 5))
    out = generate(lm, 12, None, SamplingParams(seed=1), prompt=prompt)[0]
    assert out.shape == (3, 12) and torch.equal(out[:, :5], prompt[0])
    long = generate_long(lm, 300, None, SamplingParams(seed=1), window=60, overlap=20)
    assert long.shape == (1, 3, 300) and long.min() >= 0 and long.max() < V  # 300 frames > max_len 128 positions


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_continuation_prefills_the_steps_its_prompt_fills(pattern):
    """The steps a prompt fills entirely are prefilled in one pass: they are the pattern's steps of the prompt
    frames (Tp for one slot per frame and step, K * Tp for flat), and the greedy continuation decoded after that
    prefill is what the teacher-forced model predicts at every slot it drew (the cache holds the right keys at the
    right positions)."""
    lm = tiny(pattern)
    Tp, T = 5, 9
    prompt = torch.randint(0, V, (2, 3, Tp))
    cond = Conditioning(prefix=torch.randn(2, 2, 32))
    frame, book, mask = (t[None].expand(2, -1, -1) for t in lm.pattern.layout(T))
    known = forced_steps(prompt, frame, book, mask, V)
    assert known.shape[-1] == (3 * Tp if pattern == "flat" else Tp)
    greedy = SamplingParams(temperature=0.0, top_k=0, cfg_scale=1.0)
    runs, run = [], lm.run
    lm.run = lambda x, *a: runs.append(x.shape[1]) or run(x, *a)
    out = torch.stack(generate(lm, T, cond, greedy, prompt=prompt))
    del lm.run
    F, L = known.shape[-1], lm.pattern.length(T)
    assert runs == [2 + 1 + F] + [1] * (L - F - 1)  # prefix, start token and the forced steps in one pass
    assert torch.equal(out[..., :Tp], prompt)
    seq, slot_mask = lm.pattern.build(out, V)
    assert torch.equal(known, seq[..., : known.shape[-1]])
    with torch.no_grad():
        logits, _ = lm(out, cond)  # [B, S, L, V]
    drawn = slot_mask[None] & (frame >= Tp)
    assert drawn.any() and torch.equal(seq[drawn], logits.argmax(-1)[drawn])
    # every step forced (a prompt as long as the request): the last step is still decoded, and nothing is sampled
    whole = torch.stack(generate(lm, Tp, cond, SamplingParams(seed=3), prompt=prompt))
    assert torch.equal(whole, prompt)


def test_per_codebook_greedy_and_filters():
    lm = tiny("parallel")
    params = SamplingParams(codebook_temperatures=[1.0, 0.0, 0.0], seed=0, top_k=0, cfg_scale=1.0)
    a = generate(lm, 6, None, params)[0]
    b = generate(lm, 6, None, SamplingParams(codebook_temperatures=[1.0, 0.0, 0.0], seed=5, top_k=0, cfg_scale=1.0))[0]
    assert a.shape == (3, 6)
    logits = torch.tensor([[1.0, 3.0, 2.0, 0.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[True, False, False, True]]
    kept = ~torch.isinf(filter_logits(logits, top_p=0.5))
    assert kept.tolist() == [[False, True, False, False]]
    with pytest.raises(InvalidArgumentError):
        generate(lm, 6, None, SamplingParams(codebook_temperatures=[1.0]))
    with pytest.raises(InvalidArgumentError):
        generate(lm, 1000, None, SamplingParams())
    del b


def test_seed_lesson_styles():
    cond_net = TagConditioner(2, 48)
    cfg = LMConfig(K=1, codebook_size=V, pattern="parallel", dim=48, depth=2, heads=2, max_len=96, cond_dropout=0.1)

    def batch(g):
        styles = torch.randint(0, 2, (32,), generator=g)
        return style_batch(styles, 24, V, g), styles

    lm = train_toy(cfg, batch, steps=250, conditioner=cond_net)
    for style in (0, 1):
        with torch.no_grad():
            cond = cond_net(torch.full((8,), style))
        outs = generate(lm, 40, cond, SamplingParams(seed=style, top_k=0, cfg_scale=1.5))
        acc = sum(style_rule_accuracy(o[0], style, V) for o in outs) / len(outs)
        assert acc >= 0.95, (style, acc)


def test_seed_lesson_delay_offset():
    cfg = LMConfig(K=2, codebook_size=V, pattern="delay", dim=48, depth=2, heads=2, max_len=96, cond_dropout=0.0)
    lm = train_toy(cfg, lambda g: (offset_batch(32, 32, V, g), None), steps=300)
    outs = generate(lm, 30, None, SamplingParams(seed=0, top_k=0, cfg_scale=1.0), batch_size=8)
    acc = sum(float((o[1, 1:] == o[0, :-1]).float().mean()) for o in outs) / len(outs)
    assert acc >= 0.95, acc


def test_save_load(tmp_path):
    lm = tiny("flat")
    lm.save(tmp_path / "lm")
    again = TokenLM.load(tmp_path / "lm")
    p = SamplingParams(seed=2)
    assert torch.equal(generate(lm, 5, None, p)[0], generate(again, 5, None, p)[0])


@pytest.mark.parametrize("top_p", [0.0, 0.8])
def test_draw_each_gives_each_item_its_lone_draw(top_p):
    """The server's engine samples all streams of a step in one call: each item must get exactly what ``draw`` gives
    it alone with its own generator, greedy items (which draw no uniforms) and mixed ones included."""
    torch.manual_seed(0)
    A, S, V = 5, 4, 300
    logits = torch.randn(A, S, V) * 3
    temps = torch.full((A, S), 0.9)
    temps[1] = 0.0           # all greedy: consumes nothing from its generator
    temps[3, 2:] = 0.0       # mixed
    params = SamplingParams(temperature=0.9, top_k=40, top_p=top_p)
    gens = [torch.Generator().manual_seed(10 + i) for i in range(A)]
    together = draw_each(logits, temps, params, gens)
    alone = [draw(logits[i], temps[i], params, torch.Generator().manual_seed(10 + i)) for i in range(A)]
    assert torch.equal(together, torch.stack(alone))
    # and the generators advanced as they would alone: the next draws agree too
    again = [draw(logits[i], temps[i], params, gens[i]) for i in range(A)]
    lone = [torch.Generator().manual_seed(10 + i) for i in range(A)]
    for i in range(A):
        draw(logits[i], temps[i], params, lone[i])
    assert all(torch.equal(a, draw(logits[i], temps[i], params, lone[i])) for i, a in enumerate(again))
    assert not torch.equal(together[0], together[2])  # the items are drawn, not copied


def test_attention_window_skips_the_slots_before_it():
    """The server's engine sets ``KVCache.lo`` to the earliest active row's start: queries then read keys from there
    on. For rows that hold nothing valid before it, every step's hidden state must equal the full-cache run's, and
    a query whose window holds only valid keys runs without a mask."""
    lm = tiny("delay")
    x0 = torch.randn(2, 5, 32)
    steps = [torch.randn(2, 1, 32) for _ in range(4)]
    outs = []
    for lo in (0, 7):
        cache = KVCache(lm.cfg, 2, torch.device("cpu"), torch.float32)
        cache.pos, cache.all_valid = 7, False  # slots 0-6 belong to streams that left: never valid for these rows
        cache.lo = lo
        with torch.no_grad():
            h = [lm.run(x0, Conditioning(), None, cache)[:, -1:]]
            h += [lm.run(x, Conditioning(), None, cache) for x in steps]
        outs.append(torch.cat(h, 1))
        assert cache.pos == 7 + 5 + 4
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    # keys before the window are never read, even where stale slots still say valid: with lo = 7 the run equals the
    # clean one; the same stale keys read from slot 0 change it
    for lo, same in ((7, True), (0, False)):
        cache = KVCache(lm.cfg, 2, torch.device("cpu"), torch.float32)
        cache.pos, cache.all_valid, cache.lo = 7, True, lo
        cache.valid[:, :7] = True
        for k in cache.k:
            k[:, :, :7] = 3.0
        with torch.no_grad():
            h = [lm.run(x0, Conditioning(), None, cache)[:, -1:]] + [lm.run(x, Conditioning(), None, cache) for x in steps]
        assert torch.allclose(torch.cat(h, 1), outs[0], atol=1e-5) == same
