"""Conditioning the generators: what a prompt becomes before a generator sees it."""
from tokenwave.conditioning.base import Conditioning
from tokenwave.conditioning.tags import TagConditioner

__all__ = ["Conditioning", "TagConditioner"]
