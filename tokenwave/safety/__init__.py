"""Safety: ``tokenwave.safety.watermark`` (spread-spectrum embed/detect, on every output by default) and
``tokenwave.safety.consent`` (voice-consent registry and opt-out list checked before voice cloning)."""
from tokenwave.safety.watermark import DEFAULT_KEY, WatermarkResult, WatermarkStream, detect_watermark, embed_watermark

__all__ = ["DEFAULT_KEY", "WatermarkResult", "WatermarkStream", "detect_watermark", "embed_watermark"]
