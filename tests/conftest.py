import numpy as np
import pytest


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = 24000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def make_tone():
    return tone
