"""Residual vector quantizer: vector-quantize-pytorch's ResidualVQ (EMA codebooks, k-means init, dead-code
restarts, quantizer dropout) behind the codec's ``[B, D, T]`` / ``[B, K, T]`` conventions."""
from __future__ import annotations

import logging

import torch
from einops import rearrange
from torch import nn
from vector_quantize_pytorch import ResidualVQ

from tokenwave.codec.config import CodecConfig

logging.getLogger("vector_quantize_pytorch").setLevel(logging.ERROR)
try:  # the library logs k-means notices through loguru; keep training output readable
    from loguru import logger as _loguru

    _loguru.disable("vector_quantize_pytorch")
except ImportError:  # pragma: no cover
    pass


class RVQ(nn.Module):
    def __init__(self, cfg: CodecConfig) -> None:
        super().__init__()
        self.n_q = cfg.n_q
        self.codebook_size = cfg.codebook_size
        self.rvq = ResidualVQ(dim=cfg.latent_dim, num_quantizers=cfg.n_q, codebook_size=cfg.codebook_size,
                              decay=cfg.ema_decay, kmeans_init=True, kmeans_iters=cfg.kmeans_iters,
                              threshold_ema_dead_code=cfg.dead_code_threshold, quantize_dropout=True,
                              quantize_dropout_cutoff_index=0)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``z [B, D, T] -> (z_q [B, D, T], codes [B, K, T], commitment loss)``; in training, K is drawn at random
        (quantizer dropout; dropped codebooks are -1 in ``codes``)."""
        q, idx, loss = self.rvq(rearrange(z, "b d t -> b t d"))
        return rearrange(q, "b t d -> b d t"), rearrange(idx, "b t k -> b k t"), loss.sum()

    @torch.no_grad()
    def encode(self, z: torch.Tensor, n_q: int) -> torch.Tensor:
        """``z [B, D, T] -> codes LongTensor[B, n_q, T]`` (the first n_q residual stages)."""
        residual = rearrange(z, "b d t -> b t d")
        codes = []
        for layer in self.rvq.layers[:n_q]:
            embed = layer._codebook.embed[0]  # [codebook_size, D]
            dist = torch.cdist(residual, embed[None].expand(residual.shape[0], -1, -1))
            idx = dist.argmin(-1)
            codes.append(idx)
            residual = residual - embed[idx]
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """``codes [B, K, T]`` (K <= n_q) -> ``z_q [B, D, T]``: the sum of the first K codebooks' vectors."""
        if codes.shape[1] > self.n_q or codes.shape[1] < 1:
            raise ValueError(f"codes have {codes.shape[1]} codebooks; this codec has {self.n_q}")
        out = 0
        for k in range(codes.shape[1]):
            out = out + self.rvq.layers[k]._codebook.embed[0][codes[:, k]]
        return rearrange(out, "b t d -> b d t")

    @torch.no_grad()
    def usage(self, codes: torch.Tensor) -> dict[str, list[float]]:
        """Per-codebook share of entries used and perplexity of ``codes [B, K, T]`` (ignoring dropped -1 codes)."""
        used, ppl = [], []
        for k in range(codes.shape[1]):
            c = codes[:, k].flatten()
            c = c[c >= 0]
            if c.numel() == 0:
                continue
            p = torch.bincount(c, minlength=self.codebook_size).float() / c.numel()
            used.append(float((p > 0).float().mean()))
            ppl.append(float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum())))
        return {"used": used, "perplexity": ppl}
