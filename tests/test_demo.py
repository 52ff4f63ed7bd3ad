import re

import pytest

from tokenwave import demo
from tokenwave.audio import load_audio
from tokenwave.paths import default_checkpoint


@pytest.mark.skipif(not (default_checkpoint("codec") / "model.safetensors").exists(), reason="no shipped codec")
def test_demo_page_has_players_and_spectrograms_for_every_domain(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DOMAIN_MINUTES", {"speech": 0.1, "music": 0.1, "sfx": 0.1})
    monkeypatch.setattr(demo, "TASK_SECONDS", 2.0)
    monkeypatch.setattr(demo, "TASK_EXAMPLES", {k: v[:1] if k != "music" else [v[0], v[-1]]
                                                for k, v in demo.TASK_EXAMPLES.items()})
    index = demo.render_demo(tmp_path / "demo", per_domain=2)
    page = index.read_text()
    for domain in ("speech", "music", "sfx"):
        assert f"<h2>{domain}" in page
    shipped = [t for t in ("tts", "music", "sfx") if (default_checkpoint(t) / "config.json").exists()]
    for task in shipped:
        assert f"<h2>{task} <small>(checkpoints/{task}" in page
    srcs = re.findall(r'<audio controls preload="none" src="([^"]+)"', page)
    imgs = re.findall(r'<img src="([^"]+)"', page)
    tasks_cards = sum(2 if t == "music" else 1 for t in shipped)
    # task renders + a clip per domain + codec round trips (original, 6, 3, 1.5 kbps)
    assert len(srcs) == len(imgs) >= tasks_cards + 3 + 3 * 4
    if shipped:
        from tokenwave.safety.watermark import detect_watermark

        first = next(s for s in srcs if s.startswith(f"audio/{shipped[0]}-"))
        assert detect_watermark(*load_audio(index.parent / first)).present  # demo renders are watermarked
    for src in srcs:
        wav, sr = load_audio(index.parent / src)
        assert sr == 24000 and len(wav) > 0 and abs(wav).max() > 1e-3
    for img in imgs:
        assert (index.parent / img).read_bytes()[:4] == b"\x89PNG"
    assert "mel distance" in page and "checkpoints/codec" in page
