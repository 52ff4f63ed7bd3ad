"""tokenwave: audio generation on neural codec tokens."""
__version__ = "0.1.0"

SAMPLE_RATE = 24_000
"""The project's working sample rate in Hz (codec, datasets, generators)."""
