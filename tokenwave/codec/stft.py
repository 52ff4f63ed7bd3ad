"""Causal STFT analysis and ISTFT synthesis at the codec frame rate, with streaming state.

Frame ``t`` covers samples ``[t*hop - (n_fft - hop), (t+1)*hop)``: the window ends where the frame ends, so the
encoder never looks ahead. Synthesis overlap-adds frames with the same placement; output sample ``s`` is final
once frame ``s // hop + n_fft // hop - 1`` is decoded (the decoder's latency, in frames, is ``n_fft // hop - 1``).
"""
from __future__ import annotations

import torch

from tokenwave.nn.streaming import StreamingModule


class CausalSTFT(StreamingModule):
    """``wav [B, 1, N]`` (N a multiple of hop) -> power-law compressed complex spectrum ``[B, 2 * (n_fft//2+1), N/hop]``."""

    def __init__(self, n_fft: int, hop: int, compress: float = 0.3) -> None:
        super().__init__()
        self.n_fft, self.hop, self.compress = n_fft, hop, compress
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def _frames(self, x: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=False, return_complex=True)
        mag = spec.abs().clamp_min(1e-7)
        spec = spec * (mag ** (self.compress - 1.0))
        return torch.cat([spec.real, spec.imag], dim=1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav[:, 0]
        past = self.n_fft - self.hop
        if not self.is_streaming:
            if x.shape[-1] % self.hop:
                raise ValueError(f"length {x.shape[-1]} is not a multiple of the hop {self.hop}")
            return self._frames(torch.nn.functional.pad(x, (past, 0)))
        buf = self.stream_state if self.stream_state is not None else x.new_zeros(x.shape[0], past)
        buf = torch.cat([buf, x], dim=-1)
        n = (buf.shape[-1] - past) // self.hop
        out = self._frames(buf[:, : past + n * self.hop]) if n > 0 else x.new_zeros(x.shape[0], self.n_fft + 2, 0)
        self.stream_state = buf[:, n * self.hop:]
        return out


class CausalISTFT(StreamingModule):
    """Log-magnitude and phase ``[B, 2 * (n_fft//2+1), T]`` -> ``wav [B, 1, T * hop]`` by windowed overlap-add.

    Offline, the last ``n_fft - hop`` samples lack the frames that would complete them and fade out; pad the
    input by :attr:`tail` samples (``Codec.reconstruct`` does) to keep them. Streaming returns each sample once
    it is final and the rest on :meth:`flush`.
    """

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.tail = n_fft - hop
        window = torch.hann_window(n_fft)
        self.register_buffer("window", window, persistent=False)
        # interior sum of squared windows: constant for hann with n_fft a multiple of 2 * hop
        self.norm = float((window**2).sum() / hop)

    def _overlap_add(self, spec: torch.Tensor) -> torch.Tensor:
        logmag, phase = spec.chunk(2, dim=1)
        mag = torch.exp(logmag.clamp(max=7.0))  # e^7 ~ 1100 covers a full-scale sine (~320)
        frames = torch.fft.irfft(torch.polar(mag, phase), n=self.n_fft, dim=1) * self.window[None, :, None]
        B, _, T = frames.shape
        out = torch.nn.functional.fold(frames, output_size=(1, (T - 1) * self.hop + self.n_fft),
                                       kernel_size=(1, self.n_fft), stride=(1, self.hop))
        return out.reshape(B, 1, -1) / self.norm

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        T = spec.shape[-1]
        if T == 0:
            return spec.new_zeros(spec.shape[0], 1, 0)
        y = self._overlap_add(spec)  # padded coordinates: sample s of the output sits at s + tail
        if not self.is_streaming:
            return y[..., self.tail: self.tail + T * self.hop]
        # streaming: state = (samples not yet final, padded samples still to drop at the start)
        if self.stream_state is None:
            acc, drop = y, self.tail
        else:
            rest, drop = self.stream_state
            acc = y.clone()
            acc[..., : rest.shape[-1]] += rest
        final = T * self.hop  # positions before the next frame's window starts get nothing more
        emit, rest = acc[..., :final], acc[..., final:]
        d = min(drop, emit.shape[-1])
        self.stream_state = (rest, drop - d)
        return emit[..., d:]

    def flush(self) -> torch.Tensor:
        """Streaming only: the samples still waiting for frames that will not come (the offline fade-out)."""
        if self.stream_state is None:
            return torch.zeros(1, 1, 0)
        (rest, drop), self.stream_state = self.stream_state, None
        return rest[..., drop:]
