"""Sampling the flow model: ODE solvers from noise (t=0) to latents (t=1), classifier-free guidance, prompts
(continuation / inpainting), variable durations, long-form by sliding windows and chunked streaming audio.

Latents are the codec's ``[B, D, T]`` at 75 Hz (unnormalised: the model's ``latent_scale`` is applied inside);
audio is ``[B, 1, T * hop]`` at the codec's rate (24 kHz).
"""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tokenwave.audio.crossfade import crossfade
from tokenwave.conditioning import Conditioning
from tokenwave.errors import InvalidArgumentError
from tokenwave.flow.model import FlowDiT

METHODS = ("euler", "heun")


@dataclass
class FlowSampling:
    """``steps`` ODE steps of ``method`` (euler: 1 model call per step, heun: 2); ``cfg_scale`` 0 is unconditional,
    1 conditional, > 1 guided (conditional and unconditional run in one batch); ``cfg_until``: guidance applies at
    times t <= cfg_until only (t = 0 is noise, 1 the data), the steps after it run the conditional model alone
    (a guidance interval: guidance shapes the sound early, while near the data it only exaggerates; 1 guides every
    step); ``seed``: item b's noise comes from its own generator seeded ``seed + b``, so an item's output does not
    depend on its batch."""

    steps: int = 16
    method: str = "heun"
    cfg_scale: float = 2.0
    seed: int = 0
    cfg_until: float = 1.0

    def check(self) -> None:
        if self.method not in METHODS:
            raise InvalidArgumentError(f"unknown ODE method {self.method!r}", f"use one of {', '.join(METHODS)}")
        if self.steps < 1:
            raise InvalidArgumentError(f"steps must be >= 1, got {self.steps}", "use e.g. 16")
        if self.cfg_scale < 0:
            raise InvalidArgumentError(f"cfg_scale must be >= 0, got {self.cfg_scale}", "use 0 (unconditional) .. ~5")
        if not 0.0 <= self.cfg_until <= 1.0:
            raise InvalidArgumentError(f"cfg_until must be within 0..1, got {self.cfg_until}",
                                       "use 1 to guide every step, or e.g. 0.7 to leave the last 30% unguided")

    @property
    def model_calls(self) -> int:
        return self.steps * (2 if self.method == "heun" else 1)


def item_noise(D: int, frames: Sequence[int], seeds: Sequence[int], device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x0 [B, D, max(frames)]``: item b's ``[D, frames[b]]`` from its own generator (seed ``seeds[b]``), zeros after."""
    out = torch.zeros(len(frames), D, max(frames), device=device, dtype=dtype)
    for b, (n, s) in enumerate(zip(frames, seeds, strict=True)):
        gen = torch.Generator(device=device).manual_seed(int(s))
        out[b, :, :n] = torch.randn(D, n, generator=gen, device=device, dtype=dtype)
    return out


def guided_velocity(model: FlowDiT, cond: Conditioning | None, scale: float, mask: torch.Tensor | None,
                    prompt: torch.Tensor | None, prompt_mask: torch.Tensor | None, until: float = 1.0) -> Callable:
    """``v(x [B, D, T], t float) -> [B, D, T]`` with classifier-free guidance ``u + scale * (c - u)`` at times
    ``t <= until`` and the conditional velocity after. Scale 1 runs the conditional pass only and scale 0 the
    unconditional one only (so both are exact); otherwise one batch of 2B while guided."""
    conditional = lambda x, t: model(x, x.new_full((x.shape[0],), t), cond, mask, prompt, prompt_mask)  # noqa: E731
    if cond is None or cond.batch_size is None or scale == 1.0:
        return conditional
    guided = _guided_pass(model, cond, scale, mask, prompt, prompt_mask)
    if until >= 1.0:
        return guided
    return lambda x, t: guided(x, t) if t <= until else conditional(x, t)


def _guided_pass(model: FlowDiT, cond: Conditioning, scale: float, mask: torch.Tensor | None,
                 prompt: torch.Tensor | None, prompt_mask: torch.Tensor | None) -> Callable:
    null = cond.null_like(model.null_cond)
    if scale == 0.0:
        return lambda x, t: model(x, x.new_full((x.shape[0],), t), null, mask, prompt, prompt_mask)
    both = Conditioning.cat([cond, null])

    def dup(v: torch.Tensor | None) -> torch.Tensor | None:
        return None if v is None else torch.cat([v, v], 0)

    m2, p2, pm2 = dup(mask), dup(prompt), dup(prompt_mask)

    def v(x: torch.Tensor, t: float) -> torch.Tensor:
        c, u = model(dup(x), x.new_full((2 * x.shape[0],), t), both, m2, p2, pm2).chunk(2, dim=0)
        return u + scale * (c - u)

    return v


def integrate(velocity: Callable, x0: torch.Tensor, steps: int, method: str,
              fix: Callable[[torch.Tensor, float], torch.Tensor] = lambda x, t: x) -> torch.Tensor:
    """Solve dx/dt = v(x, t) from t=0 to 1 in ``steps`` uniform steps (Euler or Heun); ``fix(x, t)`` re-imposes
    known frames (and zeros past each item's end) after every update."""
    ts = torch.linspace(0, 1, steps + 1, dtype=torch.float64).tolist()
    x = fix(x0, 0.0)
    for t0, t1 in itertools.pairwise(ts):
        h = t1 - t0
        d1 = velocity(x, t0)
        if method == "euler":
            x = fix(x + h * d1, t1)
        else:
            d2 = velocity(fix(x + h * d1, t1), t1)
            x = fix(x + 0.5 * h * (d1 + d2), t1)
    return x


def _batch_size(cond: Conditioning | None, prompt: torch.Tensor | None, frames, batch_size: int | None) -> int:
    return ((cond.batch_size if cond is not None else None) or (prompt.shape[0] if prompt is not None else None)
            or (len(frames) if not isinstance(frames, int) else None) or batch_size or 1)


@torch.no_grad()
def sample(model: FlowDiT, frames: int | Sequence[int], cond: Conditioning | None = None,
           params: FlowSampling | None = None, prompt: torch.Tensor | None = None,
           prompt_mask: torch.Tensor | None = None, batch_size: int | None = None,
           seeds: Sequence[int] | None = None) -> torch.Tensor:
    """Latents ``[B, D, max(frames)]`` (zeros past item b's ``frames[b]``), in the codec's latent space.

    ``prompt [B, D, Tp]``: known latents; with ``prompt_mask [B, Tp]`` (True: known) any frames (inpainting),
    without it all Tp frames (continuation of a prefix). Known frames are re-imposed on the noise-to-data path at
    every step and come back exactly. ``seeds``: one per item (default ``params.seed + b``).
    """
    params = params or FlowSampling()
    params.check()
    cfg = model.cfg
    B = _batch_size(cond, prompt, frames, batch_size)
    frames = [frames] * B if isinstance(frames, int) else list(frames)
    if len(frames) != B or min(frames) < 1:
        raise InvalidArgumentError(f"need one positive frame count per item ({B}), got {frames}", "check frames")
    T = max(frames)
    if T > cfg.max_frames:
        raise InvalidArgumentError(f"{T} frames exceed this model's window of {cfg.max_frames}",
                                   "use sample_long (sliding windows) for longer audio")
    dev, dtype = model.null_cond.device, model.null_cond.dtype
    seeds = [params.seed + b for b in range(B)] if seeds is None else list(seeds)
    lengths = torch.tensor(frames, device=dev)
    mask = None if min(frames) == T else torch.arange(T, device=dev)[None] < lengths[:, None]
    known = given = None
    if prompt is not None:
        Tp = prompt.shape[-1]
        if prompt.shape[:2] != (B, cfg.latent_dim) or Tp > T:
            raise InvalidArgumentError(f"prompt must be [B={B}, D={cfg.latent_dim}, Tp <= {T}], got {tuple(prompt.shape)}",
                                       "encode the prompt with the codec's encode_latents")
        pm = torch.ones(B, Tp, dtype=torch.bool, device=dev) if prompt_mask is None else prompt_mask.to(dev).bool()
        known = torch.zeros(B, cfg.latent_dim, T, device=dev, dtype=dtype)
        known[..., :Tp] = prompt.to(dev, dtype)
        given = torch.zeros(B, T, dtype=torch.bool, device=dev)
        given[:, :Tp] = pm
        if mask is not None:
            given &= mask
    x1_known = None if known is None else known / cfg.latent_scale
    x0 = item_noise(cfg.latent_dim, frames, seeds, dev, dtype)
    keep = None if mask is None else mask[:, None].to(dtype)

    def fix(x: torch.Tensor, t: float) -> torch.Tensor:
        if given is not None:
            x = torch.where(given[:, None], (1 - t) * x0 + t * x1_known, x)
        return x if keep is None else x * keep

    velocity = guided_velocity(model, cond, params.cfg_scale, mask, x1_known, given, params.cfg_until)
    out = integrate(velocity, x0, params.steps, params.method, fix) * cfg.latent_scale
    if given is not None:
        out = torch.where(given[:, None], known, out)  # exactly the given latents, not a rescaled copy
    return out if keep is None else out * keep


# --- long-form and streaming ----------------------------------------------------------------------------------
def plan_windows(frames: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, length)`` of the windows covering ``frames``: each ``window`` long (the last may be shorter) and
    starting ``window - overlap`` after the previous one."""
    if frames < 1 or not 0 <= overlap < window:
        raise InvalidArgumentError(f"need frames >= 1 and 0 <= overlap < window, got {frames}, {overlap}, {window}",
                                   "use e.g. window=750, overlap=75")
    out, s = [], 0
    while True:
        n = min(window, frames - s)
        out.append((s, n))
        if s + n >= frames:
            return out
        s += window - overlap


def _windows(model: FlowDiT, frames: int, window: int, overlap: int, cond: Conditioning | None,
             params: FlowSampling, prompt: torch.Tensor | None, batch_size: int | None) -> Iterator[torch.Tensor]:
    """Window latents ``[B, D, length]`` in order; window k > 0 continues window k-1's last ``overlap`` frames (its
    prompt, kept exactly) and reads its own frames of ``cond.frames``. Item b's noise in window k comes from seed ``params.seed + b + 1_000_003 * k``."""
    B = _batch_size(cond, prompt, frames, batch_size)
    prev = None
    for k, (s, n) in enumerate(plan_windows(frames, window, overlap)):
        seeds = [params.seed + b + 1_000_003 * k for b in range(B)]
        p = prompt if k == 0 else prev[..., -overlap:] if overlap else None
        c = None if cond is None else cond.frame_slice(s, s + n)  # per-frame conditioning (melody) of this window
        prev = sample(model, n, c, params, p, batch_size=B, seeds=seeds)
        yield prev


@torch.no_grad()
def sample_long(model: FlowDiT, frames: int, window: int | None = None, overlap: int = 75,
                cond: Conditioning | None = None, params: FlowSampling | None = None,
                prompt: torch.Tensor | None = None, batch_size: int | None = None,
                progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Latents ``[B, D, frames]`` for any length: windows of ``window`` frames (default the model's max_frames),
    each continuing the previous window's last ``overlap`` frames. Those frames are the new window's prompt and
    come back exactly, so the latent join is seamless (a crossfade there would be the identity); the seams the
    codec's per-window decoding makes are crossfaded on the audio (:func:`decode_long`, :func:`stream_chunks`).
    ``progress(done)``, if given, is told the frames made after each window."""
    params = params or FlowSampling()
    window = window or model.cfg.max_frames
    plan = plan_windows(frames, window, overlap)
    out = None
    for (s, n), z in zip(plan, _windows(model, frames, window, overlap, cond, params, prompt, batch_size), strict=True):
        out = z.new_zeros(z.shape[0], z.shape[1], frames) if out is None else out
        out[..., s: s + n] = z
        if progress is not None:
            progress(s + n)
    return out


def _fade_region(overlap: int, fade: int | None) -> tuple[int, int]:
    """``(offset, length)`` in frames of the audio crossfade inside an overlap: centred, so it avoids the new
    window's decoder warm-up (its start) and the old window's unfinished synthesis tail (its end)."""
    fade = overlap // 2 if fade is None else fade
    if not 0 <= fade <= overlap:
        raise InvalidArgumentError(f"fade must lie in 0..overlap ({overlap}), got {fade}", "use e.g. overlap // 2")
    return (overlap - fade) // 2, fade


def _join_decoded(codec, windows: Iterator[torch.Tensor], plan: list[tuple[int, int]], overlap: int,
                  fade: int | None) -> Iterator[torch.Tensor]:
    """Decode each window with ``codec.decode_latents`` and yield ``wav [B, 1, n]`` chunks of final samples: the
    windows are joined by an equal-gain crossfade (the two decodes carry the same signal there) of ``fade``
    frames inside each overlap; a chunk holds every sample up to the next window's crossfade."""
    a, f = _fade_region(overlap, fade)
    hop = codec.hop
    buf, buf_start = None, 0  # decoded audio not yet yielded, starting at sample buf_start
    for k, z in enumerate(windows):
        start = plan[k][0]
        wav = codec.decode_latents(z).detach().cpu().numpy()
        if buf is None:
            buf = wav
        else:
            cut = (start + a + f) * hop - buf_start
            buf = crossfade(buf[..., :cut], wav[..., a * hop:], f * hop, power=False)
        end = (plan[k + 1][0] + a) * hop if k + 1 < len(plan) else buf_start + buf.shape[-1]
        yield torch.from_numpy(np.ascontiguousarray(buf[..., : end - buf_start]))
        buf, buf_start = buf[..., end - buf_start:], end


@torch.no_grad()
def decode_long(codec, latents: torch.Tensor, window: int, overlap: int = 75, fade: int | None = None) -> torch.Tensor:
    """Offline audio ``[B, 1, T * hop]`` of ``latents [B, D, T]`` made by :func:`sample_long` with the same window
    and overlap: decoded window by window and crossfaded, exactly as :func:`stream_chunks` yields it."""
    plan = plan_windows(latents.shape[-1], window, overlap)
    chunks = _join_decoded(codec, (latents[..., s: s + n] for s, n in plan), plan, overlap, fade)
    return torch.cat(list(chunks), dim=-1)


@torch.no_grad()
def stream_chunks(model: FlowDiT, codec, frames: int, window: int = 150, overlap: int = 30,
                  cond: Conditioning | None = None, params: FlowSampling | None = None,
                  prompt: torch.Tensor | None = None, batch_size: int | None = None,
                  fade: int | None = None) -> Iterator[torch.Tensor]:
    """Yield audio ``wav [B, 1, n]`` (codec rate) window by window: sample a window, decode it, crossfade it into
    the previous one and yield the samples no later window changes. The concatenated chunks equal
    ``decode_long(codec, sample_long(...), window, overlap, fade)``. The first chunk waits for a whole window's
    sampling and decode (see :func:`stream_latency`)."""
    params = params or FlowSampling()
    plan = plan_windows(frames, window, overlap)
    yield from _join_decoded(codec, _windows(model, frames, window, overlap, cond, params, prompt, batch_size),
                             plan, overlap, fade)


def stream_latency(model: FlowDiT, codec, window: int = 150, overlap: int = 30, cond: Conditioning | None = None,
                   params: FlowSampling | None = None, ar_first_frame_s: float | None = None,
                   batch_size: int | None = None) -> dict[str, float | None]:
    """Time to the first audio of :func:`stream_chunks` (one whole window's sampling + decode) and, given the
    token-AR stream's time to its first decoded frame, the latency the flow stream adds over it."""
    params = params or FlowSampling()
    frames = 2 * window - overlap  # two windows, so the first chunk stops at the first crossfade
    t0 = time.perf_counter()
    first = next(iter(stream_chunks(model, codec, frames, window, overlap, cond, params, batch_size=batch_size)))
    took = time.perf_counter() - t0
    return {"first_chunk_s": took, "first_chunk_audio_s": first.shape[-1] / codec.sample_rate,
            "window_frames": window, "model_calls": params.model_calls, "guided_batch": _guided(cond, params),
            "token_ar_first_frame_s": ar_first_frame_s,
            "added_vs_token_ar_s": None if ar_first_frame_s is None else took - ar_first_frame_s}


def _guided(cond: Conditioning | None, params: FlowSampling) -> bool:
    return cond is not None and cond.batch_size is not None and params.cfg_scale not in (0.0, 1.0)
