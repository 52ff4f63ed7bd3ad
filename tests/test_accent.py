"""The accent of a voice prompt (tokenwave.speech.accent) and TTS timed in it: detection from engine speech in a known
accent, abstention on speech no accent fits, typed errors, and the pipeline's accent choices (given, a built-in
voice's name, a recording with its transcript, the reference)."""
import numpy as np
import pytest

from tokenwave.audio import resample
from tokenwave.data.speech import trim_silence
from tokenwave.errors import InvalidArgumentError
from tokenwave.speech import (accents, check_accent, detect_accent, espeak_accents, espeak_timings, text_timings,
                              timing_of_voice)
from tokenwave.speech.accent import MIN_MATCH
from tokenwave.tasks import Sampling
from tokenwave.tasks.tts import TTS

import task_models as tm
from task_models import SR, tiny_codec

TEXT = "Gratitude and treachery are merely the two extremities of the same procession."


def spoken(accent: str, variant: str, rate: int, pitch: int, text: str = TEXT) -> np.ndarray:
    """espeak-ng speech as the speech datasets hold it: ``accent+variant`` at ``rate`` and ``pitch``, 24 kHz, trimmed."""
    audio, sr, _, _ = espeak_timings(text, f"{espeak_accents()[accent]}+{variant}", rate, pitch)
    return trim_silence(resample(audio, sr, SR), SR)


@pytest.mark.parametrize("accent, variant, rate, pitch, timing", [("en-029", "m3", 176, 35, "m3"),
                                                                 ("en-us", "f2", 150, 60, "f2"),
                                                                 ("en-gb-x-gbcwmd", "m5", 190, 45, "")])
def test_detects_the_accent_of_engine_speech_in_any_voice_rate_and_pitch(accent, variant, rate, pitch, timing):
    m = detect_accent(spoken(accent, variant, rate, pitch), SR, TEXT)
    assert m.accent == accent, m.scores
    assert set(m.scores) == set(accents()) and m.score == max(m.scores.values()) >= MIN_MATCH
    assert abs(m.rate - rate) <= 0.1 * rate  # the fitted rate is near the one spoken
    assert m.variant == timing  # m5 times its stresses as espeak-ng's default does; m3 and f2 their own way


def test_speech_no_accent_fits_gets_none():
    # the right words in another rhythm: the same speech with its second half slowed down
    wav = spoken("en-us", "m1", 170, 50)
    half = len(wav) // 2
    slowed = np.concatenate([wav[:half], resample(wav[half:], SR, int(SR * 1.6))])
    m = detect_accent(slowed, SR, TEXT)
    assert m.accent is None and m.score < MIN_MATCH and m.rate is None and m.variant is None
    # and the wrong words entirely
    assert detect_accent(spoken("en-029", "m3", 176, 35, "Dogs bark at the moon all night long."), SR, TEXT).accent is None


def test_accent_errors_and_names():
    with pytest.raises(InvalidArgumentError, match="transcript is empty"):
        detect_accent(np.zeros(SR * 2, np.float32), SR, "  ")
    with pytest.raises(InvalidArgumentError, match="too little to tell its accent"):
        detect_accent(spoken("en-us", "m1", 170, 50)[: SR // 5], SR, TEXT)
    with pytest.raises(InvalidArgumentError, match="unknown accent 'en-mars'.*en-029"):
        check_accent("en-mars")
    assert check_accent("en-gb-x-rp") == "en-gb-x-rp"
    assert timing_of_voice("en-029+f2") == ("en-029", "f2")
    assert timing_of_voice("espeak-ng:en-gb-x-rp+m3") == ("en-gb-x-rp", "m3")
    assert timing_of_voice("en-us") == ("en-us", None)
    assert timing_of_voice("kal") == (None, None) and timing_of_voice("alice") == (None, None)


def test_text_timings_follow_the_accent():
    text = "I can't ask for a bath after dark."
    ref = text_timings(text)
    assert text_timings(text, accent=None) == ref  # the reference voice, as before
    rp = text_timings(text, accent="en-gb-x-rp")
    assert rp != ref and rp == text_timings(text, accent="en-gb-x-rp")  # deterministic
    assert rp["phones"] != ref["phones"]  # the accents phone it differently (non-rhotic "dark")
    f4 = text_timings(text, accent="en-gb-x-rp", variant="f4")  # a variant's own stress timing: the same phones,
    spoken = [p for p in f4["phones"] if p != "_"]                # stressed ones longer
    assert spoken == [p for p in rp["phones"] if p != "_"] and f4["end"] > rp["end"]
    with pytest.raises(InvalidArgumentError, match="unknown accent"):
        text_timings(text, accent="en-mars")


@pytest.fixture(scope="module")
def aligned_tts(tmp_path_factory):
    codec = tiny_codec()
    folder = tmp_path_factory.mktemp("tts-aligned")
    tm.tts_model(folder, codec, max_frames=120, aligned=True, voices=("alice", "en-gb-x-rp+f2"))
    return TTS(folder, codec)


def test_tts_times_speech_in_the_voices_accent(aligned_tts, tmp_path):
    tts, text = aligned_tts, "I can't ask for a bath after dark."
    (ref,) = tts.plan([text])
    (rp,) = tts.plan([text], accent="en-gb-x-rp")
    (rp_f2,) = tts.plan([text], accent="en-gb-x-rp", variant="f2")
    assert rp.frames == round(text_timings(text, accent="en-gb-x-rp")["end"] * 75) != ref.frames
    assert rp_f2.frames == round(text_timings(text, accent="en-gb-x-rp", variant="f2")["end"] * 75)
    # a built-in voice named for an accent speaks in it, with its variant's timing; one without (alice) in the
    # reference; a given accent wins
    out = tts.synthesize(text, "en-gb-x-rp+f2", Sampling(seed=1), watermark=False)
    assert out.metadata["accent"] == "en-gb-x-rp" and out.metadata["accent_from"] == "voice name"
    assert out.metadata["accent_variant"] == "f2" and len(out.wav) == rp_f2.frames * tts.codec.hop
    out = tts.synthesize(text, "alice", Sampling(seed=1), watermark=False)
    assert out.metadata["accent"] is None and len(out.wav) == ref.frames * tts.codec.hop
    out = tts.synthesize(text, "alice", Sampling(seed=1), watermark=False, accent="en-gb-x-rp")
    assert out.metadata["accent_from"] == "given" and len(out.wav) == rp.frames * tts.codec.hop
    with pytest.raises(InvalidArgumentError, match="unknown accent"):
        tts.synthesize(text, "alice", accent="en-mars")


def test_tts_detects_a_recordings_accent_from_its_transcript(aligned_tts):
    tts, text = aligned_tts, "I can't ask for a bath after dark."
    voice = (spoken("en-029", "m3", 176, 35), SR)
    out = tts.synthesize(text, voice, Sampling(seed=2), watermark=False, consent_check=False, prompt_text=TEXT)
    assert out.metadata["accent"] == "en-029" and out.metadata["accent_from"] == "prompt"
    assert out.metadata["accent_fit"] >= MIN_MATCH and out.metadata["accent_variant"] == "m3"
    (plan,) = tts.plan([text], accent="en-029", variant="m3")
    assert len(out.wav) == plan.frames * tts.codec.hop
    # without its transcript a recording is timed in the reference accent, and so is one no accent fits
    plain = tts.synthesize(text, voice, Sampling(seed=2), watermark=False, consent_check=False)
    assert plain.metadata["accent"] is None and plain.metadata["accent_from"] == "reference"
    wrong = tts.synthesize(text, voice, Sampling(seed=2), watermark=False, consent_check=False,
                           prompt_text="Dogs bark at the moon all night long.")
    assert wrong.metadata["accent"] is None and wrong.metadata["accent_fit"] < MIN_MATCH
    assert np.array_equal(wrong.wav, plain.wav)
    with pytest.raises(InvalidArgumentError, match="transcript is empty"):
        tts.synthesize(text, voice, consent_check=False, prompt_text=" ")
