"""Tag / style ids -> prefix embeddings."""
from __future__ import annotations

import torch
from torch import nn

from tokenwave.conditioning.base import Conditioning


class TagConditioner(nn.Module):
    """``ids LongTensor[B, n]`` (one id per tag slot) -> ``Conditioning(prefix=[B, n, dim])``."""

    def __init__(self, n_tags: int, dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(n_tags, dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> Conditioning:
        if ids.dim() == 1:
            ids = ids[:, None]
        return Conditioning(prefix=self.embed(ids), prefix_mask=mask)


def row_tags(row: dict) -> list[str]:
    """``field=value`` strings of a manifest row: its domain, its ``tags`` (dict or list) and its speaker."""
    out = [f"domain={row.get('domain', 'custom')}"]
    tags = row.get("tags") or {}
    if isinstance(tags, dict):
        out += [f"{k}={v}" for k, v in sorted(tags.items())]
    else:
        out += [f"tag={t}" for t in tags]
    if row.get("speaker"):
        out.append(f"speaker={row['speaker']}")
    return out


class TagVocab:
    """A fixed list of tag strings; id 0 is unknown. Encodes rows (or tag lists) to ``ids [B, n], mask [B, n]``."""

    UNKNOWN = "<unk>"

    def __init__(self, tags: list[str]) -> None:
        self.tags = [self.UNKNOWN] + sorted(set(tags) - {self.UNKNOWN})
        self.index = {t: i for i, t in enumerate(self.tags)}

    @classmethod
    def from_rows(cls, rows: list[dict]) -> TagVocab:
        return cls([t for r in rows for t in row_tags(r)])

    def __len__(self) -> int:
        return len(self.tags)

    def encode(self, tag_lists: list[list[str]]) -> tuple[torch.Tensor, torch.Tensor]:
        n = max(1, max(len(t) for t in tag_lists))
        ids = torch.zeros(len(tag_lists), n, dtype=torch.long)
        mask = torch.zeros(len(tag_lists), n, dtype=torch.bool)
        for b, tags in enumerate(tag_lists):
            for i, t in enumerate(tags):
                ids[b, n - len(tags) + i] = self.index.get(t, 0)  # left-padded, so the tokens follow directly
                mask[b, n - len(tags) + i] = True
        return ids, mask
