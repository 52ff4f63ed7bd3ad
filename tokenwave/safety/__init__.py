"""Safety: ``tokenwave.safety.watermark`` (spread-spectrum embed/detect, on every output by default) and
``tokenwave.safety.consent`` (voice-consent registry and opt-out list checked before voice cloning)."""
from __future__ import annotations

import importlib

__all__ = ["DEFAULT_KEY", "WatermarkResult", "WatermarkStream", "detect_watermark", "embed_watermark"]


def __getattr__(name: str):
    """Loaded on first use, so registering the safety commands keeps ``tokenwave --help`` fast."""
    if name in __all__:
        return getattr(importlib.import_module("tokenwave.safety.watermark"), name)
    raise AttributeError(f"module 'tokenwave.safety' has no attribute {name!r}")
