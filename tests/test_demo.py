import re

import pytest

from tokenwave import demo
from tokenwave.audio import load_audio
from tokenwave.paths import default_checkpoint


@pytest.mark.skipif(not (default_checkpoint("codec") / "model.safetensors").exists(), reason="no shipped codec")
def test_demo_page_has_players_and_spectrograms_for_every_domain(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DOMAIN_MINUTES", {"speech": 0.1, "music": 0.1, "sfx": 0.1})
    index = demo.render_demo(tmp_path / "demo", per_domain=2)
    page = index.read_text()
    for domain in ("speech", "music", "sfx"):
        assert f"<h2>{domain}" in page
    srcs = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(srcs) == len(imgs) >= 3 + 3 * 4  # a clip per domain + codec round trips (original, 6, 3, 1.5 kbps)
    for src in srcs:
        wav, sr = load_audio(index.parent / src)
        assert sr == 24000 and len(wav) > 0 and abs(wav).max() > 1e-3
    for img in imgs:
        assert (index.parent / img).read_bytes()[:4] == b"\x89PNG"
    assert "mel distance" in page and "checkpoints/codec" in page
