"""The int8 inference path (tokenwave.nn.set_precision, TTS(precision=...)): close to fp32, deterministic under a seed,
reversible, and unknown precisions refused with the valid ones named."""
import copy
import subprocess
import sys

import pytest
import task_models as tm
import torch
import torch.nn.functional as F

from tokenwave.conditioning import Conditioning
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.config import LMConfig
from tokenwave.lm.generate import generate
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams
import tokenwave.nn.linear as linear_module
from tokenwave.nn import PRECISIONS, REDUCED_KV, KVCache, Linear, reduced_kv_dtype, set_precision
from tokenwave.serve.engine import BatchEngine, Job
from tokenwave.tasks.tts import KV_CACHE, TTS

V = 64


def tiny(seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    lm = TokenLM(LMConfig(K=4, codebook_size=V, pattern="delay", dim=64, depth=2, heads=4, max_len=128)).eval()
    with torch.no_grad():  # weights of a trained scale (init's std 0.02 makes every logit ~0)
        for p in lm.parameters():
            if p.dim() == 2:
                p.normal_(0, p.shape[-1] ** -0.5)
    return lm


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_int8_linear_close_to_fp32_and_back_to_exact_fp32():
    """Per-channel int8 weights and 7-bit activations: a dot product of 256 terms has a rounding error of about 1% of
    its size (uniform noise of step / sqrt(12) on each operand, steps 1/127 of the row's and the input's range), so 3%
    bounds it with margin; a broken path (wrong scales, a transposed weight, the bias lost) is off by ~100%."""
    torch.manual_seed(0)
    lin = Linear(256, 512).eval()
    x = torch.randn(2, 5, 256)
    with torch.no_grad():
        ref = F.linear(x, lin.weight, lin.bias)
        set_precision(lin, "int8")
        got = lin(x)
        assert got.shape == ref.shape and got.dtype == torch.float32
        assert 1e-4 < relative_error(got, ref) < 0.03  # int8 in use (not exact), and close
        set_precision(lin, "fp32")
        assert torch.allclose(lin(x), ref, atol=1e-5)
    # training never sees the int8 copy: gradients flow to the fp32 weight
    set_precision(lin, "int8")
    lin(x).sum().backward()
    assert lin.weight.grad is not None and torch.equal(lin(x.detach()).detach(), F.linear(x, lin.weight, lin.bias).detach())


def test_int8_lm_logits_close_to_fp32():
    """The LM's logits (every layer's rounding compounded over 2 blocks and the head): within 5% of the fp32 logits'
    norm, and the most likely token the same in at least 90% of slots; a sampled token differs only where two logits
    are within the error, which the CER comparison in benchmarks/tts.py measures on real speech."""
    lm = tiny()
    codes = torch.randint(0, V, (2, 4, 12))
    cond = Conditioning(prefix=torch.randn(2, 3, 64))
    with torch.no_grad():
        ref, _ = lm(codes, cond)
        got, _ = set_precision(copy.deepcopy(lm), "int8")(codes, cond)
    assert got.shape == ref.shape
    assert 1e-4 < relative_error(got, ref) < 0.05
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.9


def test_int8_generation_shape_and_seed_determinism():
    lm = set_precision(tiny(), "int8")
    cond = Conditioning(prefix=torch.randn(1, 3, 64))
    params = SamplingParams(seed=7, top_k=20, cfg_scale=2.0)
    a, b = generate(lm, 10, cond, params), generate(lm, 10, cond, params)
    assert a[0].shape == (4, 10) and a[0].dtype == torch.long and int(a[0].max()) < V
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], generate(lm, 10, cond, SamplingParams(seed=8, top_k=20, cfg_scale=2.0))[0])
    back = set_precision(lm, "fp32")  # the fp32 path again: the same codes as a model never set to int8
    assert torch.equal(generate(back, 10, cond, params)[0], generate(tiny(), 10, cond, params)[0])


def test_unknown_precision_names_the_valid_ones():
    assert PRECISIONS == ("fp32", "int8")
    with pytest.raises(InvalidArgumentError, match=r"unknown precision 'bf16'.*fp32, int8"):
        set_precision(tiny(), "bf16")
    from tokenwave.tasks import load_task

    with pytest.raises(InvalidArgumentError, match="unknown precision 'fp16'.*fp32, int8"):
        load_task("tts", precision="fp16")
    with pytest.raises(InvalidArgumentError, match="precision 'int8' is for text-to-speech only"):
        load_task("music", precision="int8")


def test_cli_refuses_an_unknown_precision_naming_the_valid_ones(tmp_path):
    res = subprocess.run([sys.executable, "-m", "tokenwave", "tts", "Hello.", "--precision", "fp16",
                          "--out", str(tmp_path / "a.wav")], capture_output=True, text=True)
    assert res.returncode != 0 and not (tmp_path / "a.wav").exists()
    assert "unknown precision 'fp16'" in res.stderr + res.stdout and "fp32, int8" in res.stderr + res.stdout


def test_int8_keeps_the_kv_cache_in_bfloat16_close_to_fp32_and_fp32_undoes_it(monkeypatch):
    """Decoding at batch > 1 reads every row's cached keys and values each step; int8 halves those bytes where the CPU
    computes in bfloat16 (as if this one did, below). One step of cached decoding with the cache in bfloat16 (8 bits of
    mantissa: about 0.4% per key) stays within 2% of the same step over an fp32 cache, and the offline loop and the
    server's batch engine use the same cache dtype."""
    monkeypatch.setattr(linear_module, "REDUCED_KV", torch.bfloat16)
    lm = tiny()
    assert lm.cache_dtype == torch.float32
    cond = Conditioning(prefix=torch.randn(2, 3, 64))
    x = torch.randn(2, 6, 64)
    outs = {}
    for dt in (torch.float32, torch.bfloat16):
        cache = KVCache(lm.cfg, 2, torch.device("cpu"), dt, max_len=16)
        with torch.no_grad():
            lm.run(x[:, :5], cond, None, cache)
            outs[dt] = lm.run(x[:, 5:], Conditioning(), None, cache)
        assert cache.k[0].dtype == dt and outs[dt].dtype == torch.float32
    assert 1e-5 < relative_error(outs[torch.bfloat16], outs[torch.float32]) < 0.02
    set_precision(lm, "int8")
    assert lm.cache_dtype == torch.bfloat16 and BatchEngine(lm, max_rows=2).cache.k[0].dtype == torch.bfloat16
    params = SamplingParams(seed=3, top_k=20, cfg_scale=2.0)
    one = Conditioning(prefix=cond.prefix[:1])
    engine = BatchEngine(lm, max_rows=2).start()
    try:
        served = torch.cat(list(engine.submit(Job(one, 10, params)).codes()), -1)
    finally:
        engine.stop()
    assert torch.equal(served, generate(lm, 10, one, params)[0])  # the engine's int8 codes are the offline ones
    set_precision(lm, "fp32")
    assert lm.cache_dtype == torch.float32


def test_a_teacher_forced_pass_through_a_cache_matches_the_plain_one_and_a_bfloat16_cache_stays_close():
    """``forward(kv_dtype=...)`` attends through a cache as decoding does (what benchmarks/kv_cache.py compares): an
    fp32 cache gives the plain pass's logits to float rounding; a bfloat16 one moves them (it is in use) by well under
    the 5% int8 weights may, and keeps the most likely token in almost every slot."""
    lm = tiny()
    codes = torch.randint(0, V, (2, 4, 12))
    cond = Conditioning(prefix=torch.randn(2, 3, 64))
    with torch.no_grad():
        plain, targets = lm(codes, cond)
        fp32, t32 = lm(codes, cond, kv_dtype=torch.float32)
        bf16, _ = lm(codes, cond, kv_dtype=torch.bfloat16)
    assert torch.equal(targets, t32) and torch.allclose(fp32, plain, atol=1e-5)
    assert 1e-5 < relative_error(bf16, plain) < 0.02
    assert (bf16.argmax(-1) == plain.argmax(-1)).float().mean() >= 0.95


def test_the_kv_cache_is_bfloat16_only_where_the_cpu_computes_in_it():
    """The rule reads the CPU's flags: AVX512-BF16 or AMX give bfloat16; AVX2 alone (where attention over a bfloat16
    cache is the slower one) keeps float32 (None: the weights' dtype); this machine's own flags give REDUCED_KV."""
    assert reduced_kv_dtype("fpu sse avx2 avx512f avx512_bf16 amx_tile") == torch.bfloat16
    assert reduced_kv_dtype("fpu sse avx2 amx_bf16 amx_tile") == torch.bfloat16
    assert reduced_kv_dtype("fpu sse fma avx avx2") is None
    assert reduced_kv_dtype("fpu avx512f avx512_vnni") is None and reduced_kv_dtype("") is None
    assert reduced_kv_dtype() == REDUCED_KV == KV_CACHE


def test_the_tts_keeps_its_kv_cache_in_the_machines_dtype_in_both_precisions_and_the_engine_follows(tmp_path):
    """The TTS task's token LM decodes over this machine's cache dtype (tokenwave.tasks.tts.KV_CACHE) as fp32 and as
    int8, and the server's batch engine for it allocates the same dtype (so a lone stream stays the offline codes)."""

    codec = tm.tiny_codec()
    tm.tts_model(tmp_path / "tts", codec)
    want = KV_CACHE or torch.float32
    for precision in PRECISIONS:
        tts = TTS(tmp_path / "tts", codec, precision=precision)
        assert tts.lm.cache_dtype == want
        assert BatchEngine(tts.lm, max_rows=2).cache.k[0].dtype == want
