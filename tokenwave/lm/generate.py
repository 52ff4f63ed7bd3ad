"""Generation with the token LM: offline, streaming (frames as soon as the pattern completes them), batched
requests of different lengths, continuation of an audio prompt, and long-form by sliding windows."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from tokenwave.conditioning import Conditioning
from tokenwave.errors import InvalidArgumentError
from tokenwave.lm.model import TokenLM
from tokenwave.lm.sampling import SamplingParams, draw
from tokenwave.nn import KVCache


def _layouts(lm: TokenLM, frames: Sequence[int], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Per-item ``frame, book, mask [B, S, Lmax]`` (padding steps masked out) and Lmax."""
    p = lm.pattern
    L = max(p.length(T) for T in frames)
    out = [torch.zeros(len(frames), p.streams, L, dtype=torch.long) for _ in range(2)] + \
        [torch.zeros(len(frames), p.streams, L, dtype=torch.bool)]
    for b, T in enumerate(frames):
        f, k, m = p.layout(T)
        n = f.shape[1]
        out[0][b, :, :n], out[1][b, :, :n], out[2][b, :, :n] = f, k, m
    return out[0].to(device), out[1].to(device), out[2].to(device), L


def forced_steps(prompt: torch.Tensor, frame: torch.Tensor, book: torch.Tensor, mask: torch.Tensor,
                 special: int) -> torch.Tensor:
    """A continuation's leading steps that its prompt fills entirely (every slot a prompt frame or empty): decoding
    prefills them in one pass instead of stepping through them. ``prompt [B, K, Tp]`` and the layout ``frame, book,
    mask [B, S, L]`` -> their tokens ``[B, S, F]``. ``F < L``: the last step is always a decoding step (its slots
    drawn, then forced), so every sequence ends with one."""
    Tp = prompt.shape[-1]
    free = (mask & (frame >= Tp)).flatten(0, -2).any(0)  # [L]: steps with a slot to sample
    F = int(free.int().argmax()) if bool(free.any()) else free.shape[0]
    F = min(F, free.shape[0] - 1)
    rows = torch.arange(prompt.shape[0], device=prompt.device)[:, None, None]
    fb, kb = frame[..., :F].clamp(0, Tp - 1), book[..., :F]
    return torch.where(mask[..., :F], prompt[rows.expand_as(kb), kb, fb], torch.full_like(kb, special))


@torch.no_grad()
def stream(lm: TokenLM, frames: int | Sequence[int], cond: Conditioning | None = None,
           params: SamplingParams | None = None, prompt: torch.Tensor | None = None,
           batch_size: int | None = None) -> Iterator[list[torch.Tensor]]:
    """Yield, after each step, a list (one per item) of the frames that step completed: ``codes [K, n]``.

    ``frames``: frames per item (an int for all); ``prompt [B, K, Tp]``: codes to continue (their slots are
    forced, and they are yielded too: the steps they fill entirely are prefilled in one pass, see
    :func:`forced_steps`, and their frames yielded at once); ``cond``: the items' conditioning (its batch gives B,
    else ``batch_size``).
    """
    params = params or SamplingParams()
    cfg, pat = lm.cfg, lm.pattern
    params.check(cfg.K)
    cond = cond or Conditioning()
    B = cond.batch_size or (prompt.shape[0] if prompt is not None else None) or batch_size or 1
    frames = [frames] * B if isinstance(frames, int) else list(frames)
    if len(frames) != B or min(frames) < 1:
        raise InvalidArgumentError(f"need one positive frame count per item ({B}), got {frames}", "check frames")
    if pat.name == "vall-e" and len(set(frames)) > 1:
        raise InvalidArgumentError("the vall-e pattern needs equal lengths within a batch", "batch requests by length")
    device = lm.null_cond.device
    frame, book, mask, L = _layouts(lm, frames, device)
    temps = params.slot_temperatures(book)  # [B, S, L]
    Tp = 0 if prompt is None else prompt.shape[-1]
    if prompt is not None:
        if prompt.shape[:2] != (B, cfg.K) or Tp > min(frames):
            raise InvalidArgumentError(f"prompt must be [B={B}, K={cfg.K}, Tp <= frames], got {tuple(prompt.shape)}",
                                       "encode the prompt with the same codec and ask for more frames than it holds")
        prompt = prompt.to(device)
    guided = params.cfg_scale != 1.0 and cond.batch_size is not None
    run_cond = Conditioning.cat([cond, cond.null_like(lm.null_cond)]) if guided else cond
    if params.cfg_scale == 0.0 and not guided:
        run_cond = cond.null_like(lm.null_cond)
    R = 2 * B if guided else B
    P = run_cond.prefix_len
    if P + L > cfg.max_len:
        raise InvalidArgumentError(f"{max(frames)} frames need {P + L} positions; this model holds {cfg.max_len}",
                                   "ask for fewer frames or use generate_long (sliding windows)")
    gen = torch.Generator(device=device).manual_seed(params.seed)
    new_cache = getattr(lm, "new_cache", None)  # other backends (e.g. hf_musicgen.MusicgenLM) bring their own cache
    cache = new_cache(R, P + L) if new_cache else KVCache(cfg, R, device, getattr(lm, "cache_dtype", lm.null_cond.dtype),
                                                          max_len=P + L)
    Tmax = max(frames)
    codes = torch.zeros(B * cfg.K * Tmax + 1, dtype=torch.long, device=device)  # + 1: where unused slots write
    rows = torch.arange(B, device=device)[:, None, None]
    dest = torch.where(mask, (rows * cfg.K + book) * Tmax + frame, B * cfg.K * Tmax)  # [B, S, L] flat index per slot
    same = len(set(frames)) == 1
    done = [0] * B
    dup = (lambda t: torch.cat([t, t], 0)) if guided else (lambda t: t)

    if run_cond.frames is not None:  # per-frame conditioning (melody): added at the step predicting each frame
        if run_cond.frames.shape[1] < Tmax:
            raise InvalidArgumentError(f"per-frame conditioning holds {run_cond.frames.shape[1]} frames, fewer than the "
                                       f"{Tmax} asked for", "give the melody for the whole duration")
        run_rows = torch.arange(R, device=device)

        def frame_in(step: int, n: int = 1) -> torch.Tensor | int:  # [R, n, D] for steps step .. step + n
            idx = dup(frame[:, 0, step: step + n]).clamp(0, run_cond.frames.shape[1] - 1)
            return run_cond.frames[run_rows[:, None], idx]
    else:
        def frame_in(step: int, n: int = 1) -> torch.Tensor | int:
            return 0

    def completed(steps: int) -> list[torch.Tensor]:
        """The frames the first ``steps`` steps completed since the last call, per item."""
        grid = codes[:-1].view(B, cfg.K, Tmax)
        if same:  # one copy for the whole batch
            now = pat.frames_done(steps, frames[0]) if steps <= pat.length(frames[0]) else frames[0]
            out = list(grid[:, :, done[0]: now].clone().unbind(0))
            done[:] = [now] * B
            return out
        out = []
        for b in range(B):
            now = pat.frames_done(steps, frames[b]) if steps <= pat.length(frames[b]) else frames[b]
            out.append(grid[b, :, done[b]: now].clone())
            done[b] = now
        return out

    F = 0  # steps the prompt fills entirely: prefilled with the prefix, their frames yielded at once
    start_tok = torch.full((R, pat.streams, 1), cfg.special, dtype=torch.long, device=device)
    x = lm.embed_steps(start_tok, dup(book[:, :, :1])) + frame_in(0)
    if prompt is not None:
        known = forced_steps(prompt, frame, book, mask, cfg.special)  # [B, S, F]
        F = known.shape[-1]
        if F:
            codes[dest[:, :, :F].reshape(-1)] = known.reshape(-1)
            yield completed(F)
            x = torch.cat([x, lm.embed_steps(dup(known), dup(book[:, :, :F])) + frame_in(1, F)], 1)
    valid = None
    if P:
        x = torch.cat([run_cond.prefix, x], 1)
        if run_cond.prefix_mask is not None:
            valid = torch.cat([run_cond.prefix_mask, torch.ones(R, 1 + F, dtype=torch.bool, device=device)], 1)
    h = lm.run(x, run_cond, valid, cache)[:, -1:]
    for step in range(F, L):
        logits = lm.logits_for(h, dup(book[:, :, step: step + 1]))[:, :, 0]  # [R, S, V]
        if guided:
            c, u = logits[:B], logits[B:]
            logits = u + params.cfg_scale * (c - u)
        bk, mk, fr = book[:, :, step], mask[:, :, step], frame[:, :, step]
        tok = draw(logits, temps[:, :, step], params, gen)
        if prompt is not None:  # continuation: slots holding prompt frames are forced, not sampled
            rows = torch.arange(B, device=device)[:, None].expand_as(bk)
            tok = torch.where(mk & (fr < Tp), prompt[rows, bk, fr.clamp(0, Tp - 1)], tok)
        tok = torch.where(mk, tok, torch.full_like(tok, cfg.special))
        codes[dest[:, :, step].reshape(-1)] = tok.reshape(-1)
        yield completed(step + 1)
        if step + 1 < L:
            x = lm.embed_steps(dup(tok[:, :, None]), dup(book[:, :, step: step + 1])) + frame_in(step + 1)
            h = lm.run(x, run_cond, None, cache)


def generate(lm: TokenLM, frames: int | Sequence[int], cond: Conditioning | None = None,
             params: SamplingParams | None = None, prompt: torch.Tensor | None = None,
             batch_size: int | None = None) -> list[torch.Tensor]:
    """All frames at once: a list (one per item) of ``codes LongTensor[K, T_b]`` (prompt included)."""
    chunks: list[list[torch.Tensor]] = []
    for step in stream(lm, frames, cond, params, prompt, batch_size):
        chunks.append(step)
    return [torch.cat([c[b] for c in chunks], dim=-1) for b in range(len(chunks[0]))]


def long_windows(frames: int, window: int, overlap: int, have: int = 0) -> Iterator[tuple[int, int, int]]:
    """The sliding windows of a long generation of ``frames`` frames (``have`` of them given as a prompt): per
    window ``(start, n_ctx, n)``: it covers frames ``start .. start + n``, the first ``n_ctx`` of which are context
    carried from what exists (the last ``overlap`` frames at most). Window ``i`` samples with seed ``seed + i``."""
    if not 0 <= overlap < window:
        raise InvalidArgumentError(f"need 0 <= overlap ({overlap}) < window ({window})", "e.g. overlap = window // 2")
    while have < frames:
        n_ctx = min(overlap, have)
        n = min(window, n_ctx + frames - have)
        yield have - n_ctx, n_ctx, n
        have += n - n_ctx


def generate_long(lm: TokenLM, frames: int, cond: Conditioning | None = None, params: SamplingParams | None = None,
                  window: int | None = None, overlap: int | None = None, prompt: torch.Tensor | None = None) -> torch.Tensor:
    """Beyond the trained context: windows of ``window`` frames, each continuing the last ``overlap`` frames of the
    previous one. Returns ``codes [B, K, frames]`` (prompt included)."""
    params = params or SamplingParams()
    P = (cond or Conditioning()).prefix_len
    window = window or (lm.cfg.max_len - P - lm.cfg.K) // (lm.pattern.length(1) or 1)
    overlap = overlap if overlap is not None else window // 2
    out = prompt
    for i, (start, n_ctx, n) in enumerate(long_windows(frames, window, overlap, 0 if prompt is None else prompt.shape[-1])):
        ctx = out[..., -n_ctx:] if n_ctx else None
        step_params = SamplingParams(**{**params.__dict__, "seed": params.seed + i})
        window_cond = None if cond is None else cond.frame_slice(start, start + n)
        got = torch.stack(generate(lm, n, window_cond, step_params, prompt=ctx,
                                   batch_size=None if cond and cond.batch_size else 1))
        new = got[..., n_ctx:]
        out = new if out is None else torch.cat([out, new], dim=-1)
    return out[..., :frames]
