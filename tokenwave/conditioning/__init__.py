"""Conditioning the generators: what a prompt becomes before a generator sees it."""
from tokenwave.conditioning.base import Conditioning
from tokenwave.conditioning.tags import TagConditioner, TagVocab, row_tags

__all__ = ["Conditioning", "TagConditioner", "TagVocab", "row_tags"]
