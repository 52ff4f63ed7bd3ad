import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwave.errors import InvalidArgumentError
from tokenwave.patterns import PATTERNS, Pattern

V = 16  # codebook size; SPECIAL = V


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(PATTERNS), K=st.integers(1, 6), T=st.integers(0, 12), B=st.integers(1, 3), seed=st.integers(0, 999))
def test_build_revert_are_inverses(name, K, T, B, seed):
    p = Pattern(name, K)
    codes = torch.randint(0, V, (B, K, T), generator=torch.Generator().manual_seed(seed))
    seq, mask = p.build(codes, special=V)
    assert seq.shape == (B, p.streams, p.length(T)) and mask.shape == seq.shape[1:]
    assert int(mask.sum()) == K * T  # every code appears exactly once
    assert torch.all(seq[:, ~mask] == V) and torch.all(seq[:, mask] < V)
    assert torch.equal(p.revert(seq), codes)
    assert p.frames(p.length(T)) == T


def test_delay_layout_matches_musicgen():
    codes = torch.arange(1, 7).reshape(1, 2, 3)  # K=2: [[1,2,3],[4,5,6]]
    seq, mask = Pattern("delay", 2).build(codes, special=0)
    assert seq.tolist() == [[[1, 2, 3, 0], [0, 4, 5, 6]]]
    flat, _ = Pattern("flat", 2).build(codes, special=0)
    assert flat.tolist() == [[[1, 4, 2, 5, 3, 6]]]
    valle, m = Pattern("vall-e", 2).build(codes, special=0)
    assert valle.tolist() == [[[1, 2, 3, 0, 0, 0], [0, 0, 0, 4, 5, 6]]]


@pytest.mark.parametrize("name", PATTERNS)
def test_frames_done_is_exact(name):
    K, T = 3, 5
    p = Pattern(name, K)
    frame, _, mask = p.layout(T)
    for known in range(p.length(T) + 1):
        seen = torch.zeros(K, T, dtype=torch.long)
        f, b, m = p.layout(T)
        sel = m[:, :known]
        for s, l in sel.nonzero().tolist():
            seen[b[s, l], f[s, l]] = 1
        complete = int((seen.sum(0) == K).long().cumprod(0).sum())
        assert p.frames_done(known, T) == complete


def test_errors():
    with pytest.raises(InvalidArgumentError):
        Pattern("zigzag", 4)
    with pytest.raises(InvalidArgumentError):
        Pattern("delay", 4).build(torch.zeros(1, 3, 5, dtype=torch.long), special=8)
    with pytest.raises(InvalidArgumentError):
        Pattern("flat", 4).frames(7)
