"""Sampling one token per slot from logits: temperature (0 = greedy), top-k, top-p, a seeded generator."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from tokenwave.errors import InvalidArgumentError


@dataclass
class SamplingParams:
    """Controls for token sampling. ``codebook_temperatures[k]`` overrides ``temperature`` for codebook k
    (0 = greedy, e.g. for the higher RVQ levels). ``cfg_scale``: 1 = conditional only, 0 = unconditional,
    > 1 = classifier-free guidance ``uncond + scale * (cond - uncond)``."""

    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    codebook_temperatures: list[float] | None = field(default=None)
    cfg_scale: float = 3.0
    seed: int = 0

    def check(self, K: int) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0 <= self.top_p <= 1:
            raise InvalidArgumentError("temperature and top-k must be >= 0 and top-p within [0, 1]",
                                       "e.g. temperature 1.0, top-k 250, top-p 0")
        if self.codebook_temperatures is not None and len(self.codebook_temperatures) != K:
            raise InvalidArgumentError(f"codebook_temperatures needs {K} values, got {len(self.codebook_temperatures)}",
                                       f"give one temperature per codebook ({K})")
        if self.cfg_scale < 0:
            raise InvalidArgumentError(f"cfg_scale must be >= 0, got {self.cfg_scale}", "use 0 (unconditional) .. ~5")

    def slot_temperatures(self, book: torch.Tensor) -> torch.Tensor:
        """Temperature of each slot given its codebook ``book [...]``."""
        if self.codebook_temperatures is None:
            return torch.full(book.shape, float(self.temperature), device=book.device)
        return torch.tensor(self.codebook_temperatures, dtype=torch.float32, device=book.device)[book]


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Set logits outside the top-k / nucleus (top-p) to -inf; ``logits [..., V]``."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p and top_p < 1.0:
        sorted_logits, idx = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > top_p  # keep the smallest prefix whose mass reaches top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, idx, sorted_logits)
    return logits


def sample(logits: torch.Tensor, temperature: torch.Tensor, top_k: int, top_p: float,
           generator: torch.Generator | None) -> torch.Tensor:
    """``logits [..., V]``, per-row ``temperature [...]`` -> tokens ``[...]``; rows with temperature 0 are greedy."""
    shape = logits.shape[:-1]
    flat = logits.reshape(-1, logits.shape[-1]).float()
    temp = temperature.reshape(-1).to(flat.device)
    greedy = flat.argmax(-1)
    scaled = filter_logits(flat / temp.clamp_min(1e-5)[:, None], top_k, top_p)
    probs = scaled.softmax(-1)
    drawn = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return torch.where(temp > 0, drawn, greedy).reshape(shape)


def draw(logits: torch.Tensor, temperature: torch.Tensor, params: SamplingParams,
         generator: torch.Generator) -> torch.Tensor:
    """``logits [..., V]``, per-row ``temperature [...]`` -> tokens ``[...]``, as :func:`sample` but faster with top-k.

    Temperature, top-p and the draw work on the k best logits only instead of the whole vocabulary (the same
    distribution, except that a tie at the k-th value keeps exactly k); greedy rows take the argmax as ``sample``
    does. The decoding loops (offline and the server's engine) draw with it."""
    return draw_each(logits[None], temperature[None], params, [generator])[0]


def draw_each(logits: torch.Tensor, temperature: torch.Tensor, params: SamplingParams,
              generators: list[torch.Generator]) -> torch.Tensor:
    """:func:`draw` for ``A`` items at once, each with its own generator: ``logits [A, ..., V]``, ``temperature
    [A, ...]`` -> tokens ``[A, ...]``. Item ``i`` gets exactly ``draw(logits[i], temperature[i], params,
    generators[i])``: the same uniforms from its own generator (none when all its rows are greedy), the top-k
    taken row by row (the server's engine samples every stream of a step in one call)."""
    A, V = logits.shape[0], logits.shape[-1]
    if not params.top_k or params.top_k >= V:
        return torch.stack([sample(lg, t, params.top_k, params.top_p, g)
                            for lg, t, g in zip(logits, temperature, generators)])
    flat = logits.reshape(-1, V).float()
    temp = temperature.reshape(-1).to(flat.device)
    hot = temp > 0
    all_hot = bool(hot.all())
    greedy = None if all_hot else flat.argmax(-1)
    item_hot = hot.view(A, -1).any(1).tolist()
    if not any(item_hot):
        return greedy.reshape(logits.shape[:-1])
    top_p = params.top_p if 0 < params.top_p < 1 else 0.0
    vals, idx = torch.topk(flat, params.top_k, dim=-1, sorted=bool(top_p))
    scaled = vals / temp.clamp_min(1e-5)[:, None]
    if top_p:  # vals are sorted: keep the smallest prefix whose mass reaches top_p
        probs = scaled.softmax(-1)
        scaled = scaled.masked_fill(probs.cumsum(-1) - probs > top_p, float("-inf"))
    # Gumbel-max: argmax(logit / T + Gumbel noise) is a draw from softmax(logit / T) (uniforms are cheaper to
    # draw than multinomial's exponentials); an item whose rows are all greedy draws none
    rows = flat.shape[0] // A
    shape = (rows, params.top_k)
    parts = [torch.rand(shape, generator=g, device=scaled.device) if h
             else torch.ones(shape, device=scaled.device) for g, h in zip(generators, item_hot)]
    uniform = (parts[0] if A == 1 else torch.cat(parts)).clamp_min(1e-20)
    gumbel = -(-uniform.log()).log()
    drawn = idx.gather(-1, (scaled + gumbel).argmax(-1, keepdim=True))[:, 0]
    tok = drawn if greedy is None else torch.where(hot, drawn, greedy)
    return tok.reshape(logits.shape[:-1])
