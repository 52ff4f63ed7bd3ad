import json
from pathlib import Path

import numpy as np
import pytest

from tokenwave.errors import InvalidArgumentError
from tokenwave.safety.consent import (NoConsentError, OptedOutVoiceError, VoiceRegistry, VoiceRegistryError,
                                      check_voice_prompt)

SR = 16000


class BandEnvelopeEncoder:
    """A deterministic stand-in speaker encoder: the log spectral envelope in 32 bands less its linear trend."""

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        spec = np.abs(np.fft.rfft(wav.reshape(-1, 512) * np.hanning(512), axis=1)) ** 2
        bands = np.array_split(spec.mean(0)[4:], 32)
        e = np.log10(np.array([b.mean() for b in bands]) + 1e-9)
        e = e - np.polyval(np.polyfit(np.arange(32), e, 1), np.arange(32))
        return (e / np.linalg.norm(e)).astype(np.float32)


def voice(speaker: int, take: int, seconds: float = 1.0) -> np.ndarray:
    """Speaker = pitch and formants; take = a different utterance (pitch contour, envelope, noise)."""
    srng, trng = np.random.default_rng(speaker), np.random.default_rng(1000 + 31 * speaker + take)
    f0 = srng.uniform(80, 250) * trng.uniform(0.97, 1.03)
    formants = srng.uniform([300, 900, 2000], [900, 2200, 3500])
    t = np.arange(int(seconds * SR)) / SR
    x = np.zeros_like(t)
    for k in range(1, int(6000 / f0)):
        amp = sum(np.exp(-(((k * f0) - f) / 120.0) ** 2) for f in formants) + 0.003
        x += amp * np.sin(2 * np.pi * k * f0 * t + trng.uniform(0, 6))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * trng.uniform(2, 5) * t)
    x += 0.003 * trng.standard_normal(len(t))
    x = x[: len(x) // 512 * 512]
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


CONSENT = "I agree that my voice may be cloned for the tokenwave demo."
ENROLLED, HELD_OUT = [0, 1, 2, 3], [10, 11, 12, 13, 14, 15]


@pytest.fixture
def registry(tmp_path):
    reg = VoiceRegistry(tmp_path / "voices.sqlite", BandEnvelopeEncoder(), threshold=0.93)  # this encoder's EER point
    for s in ENROLLED:
        reg.add(f"spk{s}", voice(s, 0), SR, CONSENT, recorded_by="tester", date="2026-01-15")
    yield reg
    reg.close()


def test_new_takes_of_enrolled_speakers_are_allowed(registry):
    for s in ENROLLED:
        check = registry.check(voice(s, 7), SR)
        assert check.allowed and check.voice == f"spk{s}" and check.similarity > 0.9


def test_held_out_speakers_are_refused(registry):
    for s in HELD_OUT:
        with pytest.raises(NoConsentError, match="matches no consented voice"):
            registry.check(voice(s, 0), SR)


def test_opt_out_blocks_even_with_consent(registry):
    registry.optout("spk1-person", voice(1, 3), SR, reason="asked to be removed")
    with pytest.raises(OptedOutVoiceError, match="the voice is on the opt-out list"):
        registry.check(voice(1, 5), SR)
    assert registry.check(voice(2, 5), SR).allowed  # others unaffected
    with pytest.raises(OptedOutVoiceError):  # and the speaker cannot be re-registered under another name
        registry.add("again", voice(1, 9), SR, CONSENT, recorded_by="tester")


def test_revoked_voice_no_longer_allows_cloning(registry):
    registry.revoke("spk0", "withdrew consent")
    assert registry.voice("spk0").status == "revoked"
    with pytest.raises(NoConsentError):
        registry.check(voice(0, 4), SR)


def test_operator_can_disable_the_check_and_it_is_recorded(registry):
    result = check_voice_prompt(voice(12, 0), SR, registry, enabled=False)
    assert result.allowed and not result.checked
    assert result.as_metadata()["consent_checked"] is False


def test_records_hold_consent_details_and_persist(tmp_path):
    path = tmp_path / "v.sqlite"
    with VoiceRegistry(path, BandEnvelopeEncoder()) as reg:
        rec = reg.add("alice", voice(5, 0), SR, CONSENT, recorded_by="Bob", date="2026-02-01")
    with VoiceRegistry(path, BandEnvelopeEncoder()) as reg:
        (again,) = reg.voices()
    assert again == rec and again.recorded_by == "Bob" and again.date == "2026-02-01" and len(again.audio_sha256) == 64


def test_bad_records_are_refused(registry):
    with pytest.raises(InvalidArgumentError, match="consent statement"):
        registry.add("x", voice(20, 0), SR, "", recorded_by="t")
    with pytest.raises(InvalidArgumentError, match="date"):
        registry.add("x", voice(20, 0), SR, CONSENT, recorded_by="t", date="15/01/2026")
    with pytest.raises(VoiceRegistryError, match="already registered"):
        registry.add("spk0", voice(20, 0), SR, CONSENT, recorded_by="t")
    with pytest.raises(VoiceRegistryError, match="no voice named"):
        registry.revoke("nobody")


def test_registry_refuses_another_encoders_embeddings(registry):
    class Other:
        def embed(self, wav, sr):
            return np.ones(8, np.float32) / np.sqrt(8)

    registry._encoder = Other()
    with pytest.raises(VoiceRegistryError, match="32-d"):
        registry.check(voice(0, 1), SR)


@pytest.fixture(scope="module")
def held_out_speech(tmp_path_factory):
    """A speech corpus with held-out speakers: data/speech if built, else 6 minutes rendered here (seconds)."""
    root = Path(__file__).resolve().parent.parent / "data" / "speech"
    if (root / "manifest.jsonl").exists():
        return root
    from tokenwave.data.speech import build_speech

    return build_speech(tmp_path_factory.mktemp("speech") / "speech", minutes=6, seed=0)


def _real_encoder_or_skip(root):
    from tokenwave.paths import default_checkpoint

    if not (default_checkpoint("eval/speaker") / "config.json").exists():
        pytest.skip("speaker encoder checkpoint not shipped yet")
    from tokenwave.eval.speaker import load_speaker_encoder

    return load_speaker_encoder(), root


def test_real_encoder_with_held_out_speakers(tmp_path, held_out_speech):
    """With the shipped speaker encoder: speakers enrolled from one test clip pass with another of their clips;
    held-out speakers that were never enrolled are refused."""
    from tokenwave.audio import load_audio

    encoder, root = _real_encoder_or_skip(held_out_speech)
    rows = [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]
    train = {r["speaker"] for r in rows if r["split"] == "train"}
    test = [r for r in rows if r["split"] == "test" and r["speaker"] not in train]
    by_spk: dict = {}
    for r in test:
        by_spk.setdefault(r["speaker"], []).append(r)
    spks = sorted(s for s, v in by_spk.items() if len(v) >= 2)
    assert len(spks) >= 3
    enrolled, refused = spks[:-2], spks[-2:]
    with VoiceRegistry(tmp_path / "v.sqlite", encoder) as reg:
        for s in enrolled:
            reg.add(s, load_audio(root / by_spk[s][0]["path"], SR)[0], SR, CONSENT, recorded_by="test")
        for s in enrolled:
            assert reg.match(load_audio(root / by_spk[s][1]["path"], SR)[0], SR).voice == s
        for s in refused:
            assert not reg.match(load_audio(root / by_spk[s][0]["path"], SR)[0], SR).allowed


def test_cli_voices(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import tokenwave.safety.commands as safety_commands
    from tokenwave.audio import save_audio
    from tokenwave.cli import app

    monkeypatch.setattr(safety_commands, "_registry", lambda registry, encoder: VoiceRegistry(registry, BandEnvelopeEncoder()))
    save_audio(tmp_path / "a.wav", voice(0, 0), SR)
    save_audio(tmp_path / "b.wav", voice(1, 0), SR)
    reg = str(tmp_path / "v.sqlite")
    runner = CliRunner()
    res = runner.invoke(app, ["voices", "add", "alice", str(tmp_path / "a.wav"), "--consent", CONSENT,
                              "--recorded-by", "Bob", "--registry", reg])
    assert res.exit_code == 0, res.output
    assert runner.invoke(app, ["voices", "optout", "carol", str(tmp_path / "b.wav"), "--registry", reg]).exit_code == 0
    res = runner.invoke(app, ["voices", "add", "carol2", str(tmp_path / "b.wav"), "--consent", CONSENT,
                              "--recorded-by", "Bob", "--registry", reg])
    assert isinstance(res.exception, OptedOutVoiceError)
    assert runner.invoke(app, ["voices", "revoke", "alice", "--registry", reg]).exit_code == 0
    listed = json.loads(runner.invoke(app, ["voices", "list", "--json", "--registry", reg]).output)
    assert listed["voices"][0]["status"] == "revoked" and listed["optouts"][0]["name"] == "carol"


def test_refusals_name_no_person_and_give_no_score(registry):
    """A refusal says only which rule refused (no registered name, no similarity to climb), on every path."""
    registry.optout("spk1-person", voice(1, 3), SR, reason="asked to be removed")
    refusals = []
    with pytest.raises(NoConsentError) as err:
        registry.check(voice(HELD_OUT[0], 0), SR)
    refusals.append(err.value)
    assert err.value.message == "the voice prompt matches no consented voice"
    with pytest.raises(OptedOutVoiceError) as err:
        registry.check(voice(1, 5), SR)
    refusals.append(err.value)
    assert err.value.message == "the voice is on the opt-out list"
    with pytest.raises(OptedOutVoiceError) as err:
        registry.add("again", voice(1, 9), SR, CONSENT, recorded_by="tester")
    refusals.append(err.value)
    assert err.value.message == "the voice is on the opt-out list"
    for e in refusals:
        text = e.one_line()
        assert "spk" not in text and not any(c.isdigit() for c in text), text
