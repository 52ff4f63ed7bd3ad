import os
import tempfile

import numpy as np
import pytest

# what the code measures about this machine (the server's stream capacity) goes to a throw-away cache, never the user's
os.environ["TOKENWAVE_CACHE"] = tempfile.mkdtemp(prefix="tokenwave-test-cache-")


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = 24000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def make_tone():
    return tone
