"""Eval metrics with known answers: identical signals score perfectly, a known SNR gives a known SI-SDR, and
shifting or degrading a signal worsens every score monotonically."""
import numpy as np
import pytest

from tokenwave.eval.asr import cer, normalize_text, number_words, wer
from tokenwave.eval.clap import retrieval_recall
from tokenwave.eval.fidelity import mel_distance, si_sdr, stft_distance
from tokenwave.eval.frechet import frechet_distance
from tokenwave.eval.listen import mean_interval, wilson_interval
from tokenwave.eval.melody import chroma_cosine
from tokenwave.eval.speaker import equal_error_rate
from tokenwave.eval.tagger import content_accuracy, content_labels, tag_accuracy, tag_kl

SR = 24000


def melody_audio(melody, sr=SR, harmonics=(1.0, 0.3)):
    """A harmonic tone following a MIDI pitch per 75 Hz frame (0 = silence)."""
    f = np.repeat([440 * 2 ** ((m - 69) / 12) if m > 0 else 0 for m in melody], sr // 75)
    phase = 2 * np.pi * np.cumsum(f) / sr
    wav = sum(a * np.sin((k + 1) * phase) for k, a in enumerate(harmonics)) * (f > 0)
    return (0.3 * wav).astype(np.float32)


def speechlike(seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * env * (np.sin(2 * np.pi * 150 * t) + 0.3 * rng.standard_normal(len(t)))).astype(np.float32)


def add_noise(x, snr_db, seed=0):
    n = np.random.default_rng(seed).standard_normal(len(x)).astype(np.float32)
    n *= np.sqrt(np.mean(x ** 2) / np.mean(n ** 2) / 10 ** (snr_db / 10))
    return x + n


def test_identical_signals_score_perfectly():
    x = speechlike()
    assert mel_distance(x, x, SR) == pytest.approx(0.0, abs=1e-6)
    assert stft_distance(x, x) == pytest.approx(0.0, abs=1e-4)
    assert si_sdr(x, x) > 60


@pytest.mark.parametrize("snr", [0.0, 10.0, 20.0])
def test_si_sdr_matches_known_snr(snr):
    x = speechlike(seed=1)
    assert abs(si_sdr(x, add_noise(x, snr)) - snr) < 0.5


def test_more_noise_and_more_shift_are_monotonically_worse():
    x = speechlike(seed=2)
    noisy = [add_noise(x, s) for s in (30, 20, 10, 0)]
    sdr = [si_sdr(x, y) for y in noisy]
    mel = [mel_distance(x, y, SR) for y in noisy]
    assert sdr == sorted(sdr, reverse=True) and mel == sorted(mel)
    noise = np.random.default_rng(3).standard_normal(SR).astype(np.float32)
    x = np.convolve(noise, np.hanning(9), mode="same")  # broadband: no period for a shift to land back on
    shifted = [np.roll(x, k) for k in (0, 1, 2, 4, 16)]
    sdr = [si_sdr(x, y) for y in shifted]
    assert sdr == sorted(sdr, reverse=True)


def test_chroma_cosine_known_answers():
    rng = np.random.default_rng(0)
    melody = np.repeat(rng.integers(57, 80, size=12), 30)  # 12 notes of 0.4 s
    wav = melody_audio(melody)
    assert chroma_cosine(melody, wav, SR) > 0.95                      # a tone that follows the melody
    assert chroma_cosine(wav, wav, SR) == pytest.approx(1.0)           # a waveform against itself
    assert chroma_cosine(list(melody), melody_audio(melody + 1), SR) < 0.1  # a semitone up matches no frame
    scores = [chroma_cosine(melody, np.roll(wav, k * SR // 75), SR) for k in (0, 6, 15)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.5
    rests = melody.copy()
    rests[:60] = 0  # rests are left out of the average
    assert chroma_cosine(rests, melody_audio(rests), SR) > 0.95


def test_frechet_distance_and_kl_known_answers():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    d = [frechet_distance(a, a + shift) for shift in (0.0, 0.5, 1.0, 2.0)]
    assert d == sorted(d)
    assert d[2] == pytest.approx(8.0, rel=1e-6)  # a mean shift of 1 in 8 dims adds |mu|^2 = 8
    p = {"genre": np.array([0.7, 0.2, 0.1])}
    assert tag_kl([p], [p]) == pytest.approx(0.0, abs=1e-9)
    kls = [tag_kl([p], [{"genre": q}]) for q in (np.array([0.6, 0.3, 0.1]), np.array([0.3, 0.3, 0.4]), np.array([0.01, 0.01, 0.98]))]
    assert kls == sorted(kls)


def test_tag_accuracy_eer_and_recall_known_answers():
    acc = tag_accuracy([{"domain": "music", "mode": "major"}, {"domain": "music", "mode": "minor"}],
                       [{"domain": "music", "mode": "major"}, {"domain": "music", "mode": "major"}])
    assert acc == {"domain": 1.0, "mode": 0.5, "mean": 0.75}
    assert content_accuracy(acc) == 0.5  # a generated clip is not credited for being music when asked for music
    sfx = {"domain": "sfx", "tags": {"family": "rain"}}
    assert content_labels(sfx) == {"family": "rain"}
    assert content_labels({"domain": "sfx", "tags": {}}) == {"domain": "sfx"}  # nothing else to score
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 16))
    emb = np.repeat(centres, 5, axis=0) + 0.05 * rng.standard_normal((20, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    spk = [f"s{i}" for i in range(4) for _ in range(5)]
    assert equal_error_rate(emb, spk)["eer"] == 0.0
    noise = rng.standard_normal((400, 16))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    assert 0.35 < equal_error_rate(noise, [f"s{i % 20}" for i in range(400)])["eer"] < 0.65
    eye = np.eye(10)
    assert retrieval_recall(eye, eye)["recall@1"] == 1.0
    assert retrieval_recall(eye, eye[::-1])["recall@1"] == 0.0


def test_text_normalisation_and_error_rates():
    assert number_words(1984) == "one thousand nine hundred eighty four"
    assert normalize_text("On May 21st, I ate 3 apples & 2.5 pears (50%)!") == \
        "on may twenty first i ate three apples and two point five pears fifty percent"
    assert normalize_text("Don't stop-believing!") == "don't stop believing"
    assert cer("Hello, World!", "hello world") == 0.0
    assert wer("I have 3 cats.", "i have three cats") == 0.0
    assert wer("the cat sat", "the cat sat down") == pytest.approx(1 / 3)
    assert wer("the cat sat", "a dog sat") == pytest.approx(2 / 3)
    assert cer("abcd", "abxd") == pytest.approx(0.25)
    errs = [cer("the quick brown fox", h) for h in ("the quick brown fox", "the quick brown box", "the quack brawn box", "")]
    assert errs == sorted(errs) and errs[-1] == 1.0


def test_confidence_intervals():
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    m = mean_interval([4, 5, 3, 4])
    assert m["mean"] == 4.0 and m["ci95"][0] == pytest.approx(4 - 3.1824 * np.std([4, 5, 3, 4], ddof=1) / 2, rel=1e-3)
