"""Task pipelines (TTS, music, sfx) on tiny random models: shapes, determinism, prompts and melodies change the
output, streaming equals offline, and bad requests fail with typed errors."""
import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from tokenwave.conditioning import TagVocab
from tokenwave.conditioning.melody import load_melody, melody_from_audio, pitch_classes
from tokenwave.errors import AudioFileError, InvalidArgumentError, TokenwaveError
from tokenwave.tasks import Sampling, load_task, read_prompt, split_sentences
from tokenwave.tasks.base import MissingModelError
from tokenwave.tasks.sources import Chunker, LMSource, StepDecoder
from tokenwave.tasks.tagged import CAPTION_TAGS, main_field, set_tags, tag_cooccurrence, vote_captions
from tokenwave.tasks.tts import PAUSE_SECONDS, TTS, UnknownVoiceError, trim_silence

import task_models as tm
from task_models import ROWS, SR, tiny_codec
from task_models import voice_file as _voice_file


@pytest.fixture(scope="module")
def codec():
    return tiny_codec()


@pytest.fixture(scope="module")
def tts_model(tmp_path_factory, codec):
    folder = tmp_path_factory.mktemp("tts")
    tm.tts_model(folder, codec)
    return folder


@pytest.fixture(scope="module")
def sfx_model(tmp_path_factory, codec):
    folder = tmp_path_factory.mktemp("sfx")
    tm.tagged_model(folder, codec, melody=False)
    return folder


@pytest.fixture(scope="module")
def music_model(tmp_path_factory, codec):
    folder = tmp_path_factory.mktemp("music")
    tm.tagged_model(folder, codec, melody=True, domain="music", flow=True)
    return folder


# --- TTS -------------------------------------------------------------------------------------------------------
def test_tts_shapes_determinism_and_voice_changes_output(tts_model, codec, tmp_path):
    tts = TTS(tts_model, codec)
    assert tts.voices == ["alice", "bob"]
    a = tts.synthesize("Hello there. How are you?", "alice", Sampling(seed=3), watermark=False)
    b = tts.synthesize("Hello there. How are you?", "alice", Sampling(seed=3), watermark=False)
    c = tts.synthesize("Hello there. How are you?", "bob", Sampling(seed=3), watermark=False)
    d = tts.synthesize("Hello there. How are you?", _voice_file(tmp_path / "v.wav"), Sampling(seed=3), watermark=False,
                       consent_check=False)
    assert a.sample_rate == SR and a.wav.dtype == np.float32
    # two sentences, each frames(phonemes) * hop samples, and one pause between them
    phon = tts.phoneme_ids(split_sentences("Hello there. How are you?"))
    expect = sum(tts.frames_for(p, 1.0) * codec.hop for p in phon) + int(0.15 * SR)
    assert len(a.wav) == expect
    assert np.array_equal(a.wav, b.wav)
    assert not np.array_equal(a.wav, c.wav) and not np.array_equal(a.wav, d.wav)
    assert np.abs(a.wav).max() <= 1.0


def test_tts_stream_equals_offline_and_text_changes_output(tts_model, codec):
    tts = TTS(tts_model, codec)
    chunks = list(tts.stream("One sentence. And another one!", "bob", Sampling(seed=5)))
    assert len(chunks) > 4  # audio arrives in pieces, not at the end
    offline = tts.synthesize("One sentence. And another one!", "bob", Sampling(seed=5), watermark=False)
    assert np.array_equal(np.concatenate(chunks), offline.wav)
    other = tts.synthesize("Something else entirely.", "bob", Sampling(seed=5), watermark=False)
    assert len(other.wav) != len(offline.wav) or not np.array_equal(other.wav, offline.wav)


def test_tts_speaks_texts_with_wordless_pieces(tts_model, codec):
    """A spaced ellipsis once made a sentence of its own that phonemizes to nothing, which phonemizer dropped from
    its output: the sentences and their phonemes no longer lined up and synthesis failed."""
    from tokenwave.speech import phonemize

    assert phonemize(["hello", ". . .", "", "world"])[1:3] == ["", ""]
    assert phonemize(["hello", ". . .", "world"])[2] == phonemize(["world"])[0]
    tts = TTS(tts_model, codec)
    out = tts.synthesize("Anyway, my money is still on use strict vars . . .", "alice", Sampling(seed=1), watermark=False)
    phon = tts.phoneme_ids(split_sentences("Anyway, my money is still on use strict vars . . ."))
    assert len(phon) == 1 and len(out.wav) == tts.frames_for(phon[0], 1.0) * codec.hop


def test_tts_takes_the_models_measured_sampling_defaults(tts_model, codec, tmp_path):
    """generators.json's ``sampling.lm`` (benchmarks/sampling.py --task tts --apply) fills the controls a request
    leaves unset; a request's own controls win; a broken file is a clear error."""
    import shutil

    from tokenwave.checkpoint import CheckpointError

    shutil.copytree(tts_model, tmp_path / "tuned")
    (tmp_path / "tuned" / "generators.json").write_text(json.dumps({"sampling": {"lm": {"temperature": 0.5, "top_k": 10}}}))
    plain, tuned = TTS(tts_model, codec), TTS(tmp_path / "tuned", codec)
    a = tuned.synthesize("Hello there.", "alice", Sampling(seed=3), watermark=False)
    assert (a.metadata["temperature"], a.metadata["top_k"], a.metadata["cfg_scale"]) == (0.5, 10, 2.0)
    same = plain.synthesize("Hello there.", "alice", Sampling(seed=3, temperature=0.5, top_k=10), watermark=False)
    assert np.array_equal(a.wav, same.wav)
    assert not np.array_equal(a.wav, plain.synthesize("Hello there.", "alice", Sampling(seed=3), watermark=False).wav)
    mine = tuned.synthesize("Hello there.", "alice", Sampling(seed=3, temperature=1.0), watermark=False)
    assert (mine.metadata["temperature"], mine.metadata["top_k"]) == (1.0, 10)
    (tmp_path / "tuned" / "generators.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="generators.json is not valid JSON"):
        TTS(tmp_path / "tuned", codec)


def test_tts_speed_changes_length(tts_model, codec):
    tts = TTS(tts_model, codec)
    slow = tts.synthesize("A short line.", "alice", Sampling(seed=0), speed=0.5, watermark=False)
    fast = tts.synthesize("A short line.", "alice", Sampling(seed=0), speed=2.0, watermark=False)
    assert len(slow.wav) > len(fast.wav)


def test_aligned_tts_follows_espeak_timing(codec, tmp_path):
    """An aligned model's sentence lasts as long as espeak-ng's reference voice says it (scaled by speed), each frame
    is told its phone, and streaming still equals offline."""
    from tokenwave.speech import text_timings

    tm.tts_model(tmp_path, codec, max_frames=120, aligned=True)
    tts = TTS(tmp_path, codec)
    assert tts.phones is not None
    text = "The cat sat on the mat."
    (plan,) = tts.plan([text], 1.0)
    assert plan.frames == round(text_timings(text)["end"] * 75) and plan.aligned.shape == (3, plan.frames)
    assert (plan.aligned[0] > 1).float().mean() > 0.9  # the phones are in the model's vocabulary
    (slow,) = tts.plan([text], 0.6)
    assert slow.frames > 1.4 * plan.frames
    res = tts.synthesize(text, "alice", Sampling(seed=3), watermark=False)
    assert len(res.wav) == plan.frames * codec.hop
    streamed = np.concatenate(list(tts.stream(text, "alice", Sampling(seed=3))))
    assert np.array_equal(streamed, res.wav)
    other = tts.synthesize("Dogs bark at night.", "alice", Sampling(seed=3), watermark=False)
    assert len(other.wav) != len(res.wav)


def test_tts_bad_requests(tts_model, codec, tmp_path):
    tts = TTS(tts_model, codec)
    with pytest.raises(InvalidArgumentError, match="empty"):
        tts.synthesize("   ", "alice")
    with pytest.raises(InvalidArgumentError, match="empty"):
        tts.synthesize("?!", "alice")
    with pytest.raises(UnknownVoiceError, match="unknown voice 'carol'"):
        tts.synthesize("Hi.", "carol")
    with pytest.raises(AudioFileError, match="under 1.5 s"):
        tts.synthesize("Hi.", _voice_file(tmp_path / "short.wav", seconds=0.8), consent_check=False)
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioFileError):
        tts.synthesize("Hi.", str(bad), consent_check=False)
    with pytest.raises(InvalidArgumentError, match="speed"):
        tts.synthesize("Hi.", "alice", speed=5.0)
    with pytest.raises(InvalidArgumentError, match="over the 2000 limit"):
        tts.synthesize("word " * 500, "alice")
    with pytest.raises(MissingModelError, match="no tts model"):
        TTS(tmp_path / "nothing", codec)


class _PitchEmbedder:
    """A stand-in speaker encoder: the spectrum's shape below 1 kHz (tones of different pitch differ)."""

    def embed(self, wav, sr):
        spec = np.abs(np.fft.rfft(wav[:sr], n=sr))[:1000]
        bands = spec.reshape(50, 20).sum(1)
        return (bands / np.linalg.norm(bands)).astype(np.float32)


def test_tts_voice_recordings_need_consent_and_opt_outs_win(tts_model, codec, tmp_path):
    from tokenwave.audio import load_audio
    from tokenwave.safety.consent import NoConsentError, OptedOutVoiceError, VoiceRegistry

    tts = TTS(tts_model, codec)
    alice, bob = _voice_file(tmp_path / "alice.wav", freq=180), _voice_file(tmp_path / "bob.wav", freq=320)
    registry = VoiceRegistry(tmp_path / "voices.sqlite", encoder=_PitchEmbedder())
    with pytest.raises(NoConsentError, match="no consented voice"):
        tts.synthesize("Hi.", str(alice), registry=registry)
    registry.add("alice", *load_audio(alice), consent="I agree to my voice being cloned.", recorded_by="test")
    out = tts.synthesize("Hi.", str(alice), registry=registry, watermark=False)
    assert out.metadata["consent"]["consent_voice"] == "alice" and out.metadata["voice_kind"] == "recording"
    with pytest.raises(NoConsentError):
        tts.synthesize("Hi.", str(bob), registry=registry)
    registry.optout("alice-optout", *load_audio(alice), reason="asked to be removed")
    with pytest.raises(OptedOutVoiceError):
        tts.synthesize("Hi.", str(alice), registry=registry)
    unchecked = tts.synthesize("Hi.", str(bob), registry=registry, consent_check=False, watermark=False)
    assert unchecked.metadata["consent"]["consent_checked"] is False
    assert tts.synthesize("Hi.", "alice", watermark=False).metadata["voice_kind"] == "built-in"


def test_sentence_split_and_silence_trim():
    assert split_sentences("Hi there. Second one!  Third?\nFourth") == ["Hi there.", "Second one!", "Third?", "Fourth"]
    # pieces without words (a spaced ellipsis, a dash) join a neighbour: every sentence has something to say
    assert split_sentences("Still on use strict vars . . .") == ["Still on use strict vars . . ."]
    assert split_sentences("... Wait. Go!\n--\nNow.") == ["... Wait.", "Go! --", "Now."]
    long = ", ".join(["a clause of words"] * 20) + "."
    parts = split_sentences(long, max_chars=80)
    assert all(len(p) <= 80 for p in parts) and " ".join(parts).replace(" ", "") == long.replace(" ", "")
    wav = np.concatenate([np.zeros(SR), 0.5 * np.ones(SR // 2), np.zeros(SR)]).astype(np.float32)
    trimmed = trim_silence(wav, SR)
    assert abs(len(trimmed) - SR // 2) <= int(0.02 * SR)


# --- music / sfx -----------------------------------------------------------------------------------------------
def test_read_prompt_reads_tags_and_keeps_fields_of_the_anchor():
    rows = [{**r, "domain": "sfx"} for r in ROWS]
    vocab = TagVocab.from_rows(rows).tags
    co = tag_cooccurrence(rows)
    assert read_prompt("heavy rain, with an echo", vocab, "sfx", co) == \
        ["domain=sfx", "family=rain", "intensity=heavy", "reverb=yes"]
    # "slow" names footsteps' pace; rain has no pace field, so it is dropped once rain is the anchor
    assert read_prompt("slow rain without reverb", vocab, "sfx", co) == ["domain=sfx", "family=rain", "reverb=no"]
    assert read_prompt("slow steps on gravel", vocab, "sfx", co) == \
        ["domain=sfx", "family=footsteps", "pace=slow", "surface=gravel"]
    music = ["domain=music", "key=D", "key=A", "mode=major", "mode=minor", "genre=reel", "instrument=violin"]
    assert read_prompt("a reel in D major on fiddle", music, "music") == \
        ["domain=music", "genre=reel", "instrument=violin", "key=D", "mode=major"]
    assert "key=A" not in read_prompt("a lively air", music, "music")  # the article "a" is not the key A
    for said in ("a reel in a drawing room", "a melancholy reel in a minor key", "A reel in a hall"):
        assert not any(t.startswith("key=") for t in read_prompt(said, music, "music")), said
    assert "key=A" in read_prompt("a reel in A minor", music, "music")
    assert "key=D" in read_prompt("a reel in d major", music, "music")  # other keys in any case
    # the training paraphrases' words for a value are read as it; a value's own name wins over another's word for it
    music += ["instrument=fiddle", "instrument=reed organ", "instrument=string ensemble", "genre=chorale",
              "genre=tune"]
    assert read_prompt("a hymn on an old harmonium", music, "music") == \
        ["domain=music", "genre=chorale", "instrument=reed organ"]
    assert "instrument=string ensemble" in read_prompt("lush strings swelling", music, "music")
    assert "instrument=violin" in read_prompt("a reel on violin", music, "music")
    assert "instrument=fiddle" in read_prompt("a reel on fiddle", music, "music")
    assert not any(t.startswith("genre=") for t in read_prompt("a sorrowful melody", music, "music"))
    # a real recording's album called "music" is not read from every prompt that says music
    assert read_prompt("dreamy music on a harp", music + ["album=music", "album=Legacy Soundtrack", "instrument=harp"],
                       "music") == \
        ["domain=music", "instrument=harp"]


def test_sfx_duration_determinism_and_prompt_changes_output(sfx_model, codec):
    sfx = load_task("sfx", sfx_model, codec)
    a = sfx.generate("heavy rain", 1.0, Sampling(seed=1), watermark=False)
    b = sfx.generate("heavy rain", 1.0, Sampling(seed=1), watermark=False)
    c = sfx.generate("a high bell", 1.0, Sampling(seed=1), watermark=False)
    assert len(a.wav) == 75 * codec.hop and np.array_equal(a.wav, b.wav)
    assert not np.array_equal(a.wav, c.wav)
    assert a.metadata["tags"] == ["domain=sfx", "family=rain", "intensity=heavy"]
    long = sfx.generate("heavy rain", 2.5, Sampling(seed=1), watermark=False)  # past the 40-frame window
    assert len(long.wav) == round(2.5 * 75) * codec.hop


def test_tag_controls_replace_what_the_prompt_says_and_unknown_ones_are_refused(sfx_model, codec):
    vocab = TagVocab.from_rows([{**r, "domain": "sfx"} for r in ROWS]).tags
    read = ["domain=sfx", "family=rain", "intensity=heavy"]
    # a control replaces its field, adds a new one, "field=" drops one; values match whatever their case
    assert set_tags(read, ["intensity=light", "reverb=yes"], vocab) == \
        ["domain=sfx", "family=rain", "intensity=light", "reverb=yes"]
    assert set_tags(read, ["intensity="], vocab) == ["domain=sfx", "family=rain"]
    assert set_tags(read, ["FAMILY=Bell"], vocab) == ["domain=sfx", "family=bell", "intensity=heavy"]
    assert set_tags(read, None, vocab) == read
    for bad, message in [("colour=blue", "no tag field 'colour'.*use one of family, intensity"),
                         ("family=jazz", "family=jazz is not a value.*use one of bell, footsteps, rain"),
                         ("rain", "not field=value"), ("domain=music", "no tag field 'domain'")]:
        with pytest.raises(InvalidArgumentError, match=message):
            set_tags(read, [bad], vocab)
    with pytest.raises(InvalidArgumentError, match="17 tags given, over the 16 limit"):
        set_tags(read, ["reverb=yes"] * 17, vocab)
    sfx = load_task("sfx", sfx_model, codec)
    assert sfx.tag_fields()["family"] == ["bell", "footsteps", "rain"] and "domain" not in sfx.tag_fields()
    a = sfx.generate("heavy rain", 1.0, Sampling(seed=1), watermark=False, tags=["family=bell"])
    plain = sfx.generate("heavy bell", 1.0, Sampling(seed=1), watermark=False)
    # the controls win over the prompt, whose other tags stay (a prompt naming a bell keeps only a bell's fields)
    assert a.metadata["tags"] == ["domain=sfx", "family=bell", "intensity=heavy"]
    assert plain.metadata["tags"] == ["domain=sfx", "family=bell"]
    assert a.metadata["tag_controls"] == ["family=bell"] and "tag_controls" not in plain.metadata
    same = sfx.generate("heavy rain", 1.0, Sampling(seed=1), watermark=False, tags=["family=rain"])
    assert np.array_equal(same.wav, sfx.generate("heavy rain", 1.0, Sampling(seed=1), watermark=False).wav)
    assert not np.array_equal(a.wav, same.wav)


def test_music_melody_changes_output_and_continuation(music_model, codec, tmp_path):
    music = load_task("music", music_model, codec)
    assert music.supports_melody
    plain = music.generate("a reel", 1.0, Sampling(seed=2), watermark=False)
    up = music.generate("a reel", 1.0, Sampling(seed=2), melody=[60, 62, 64, 65, 67] * 15, watermark=False)
    down = music.generate("a reel", 1.0, Sampling(seed=2), melody=[67, 65, 64, 62, 60] * 15, watermark=False)
    assert not np.array_equal(plain.wav, up.wav) and not np.array_equal(up.wav, down.wav)
    clip = tmp_path / "clip.wav"
    sf.write(clip, plain.wav, SR)
    cont = music.generate("a reel", 1.0, Sampling(seed=2), continue_from=str(clip), watermark=False)
    assert len(cont.wav) == 75 * codec.hop and cont.metadata["continued"]


def test_flow_generator_renders_music_and_sfx(music_model, codec, tmp_path):
    """The flow generator through the same task: durations past its window, seeds, prompts, melody, continuation,
    the default named by generators.json, and a flow-only folder."""
    music = load_task("music", music_model, codec, generator="flow")
    assert music.generator == "flow" and set(music.generators) == {"lm", "flow"} and music.supports_melody
    a = music.generate("a reel", 2.0, Sampling(seed=3, steps=4), watermark=False)  # 150 frames: windows of 60
    b = music.generate("a reel", 2.0, Sampling(seed=3, steps=4), watermark=False)
    c = music.generate("a reel", 2.0, Sampling(seed=4, steps=4), watermark=False)
    assert len(a.wav) == 150 * codec.hop and np.array_equal(a.wav, b.wav) and not np.array_equal(a.wav, c.wav)
    assert a.metadata["generator"] == "flow" and a.metadata["model"].endswith("flow")
    other = music.generate("a high bell", 2.0, Sampling(seed=3, steps=4), watermark=False)
    assert not np.array_equal(a.wav, other.wav)
    up = music.generate("a reel", 2.0, Sampling(seed=3, steps=4), melody=[60, 62, 64, 65, 67] * 30, watermark=False)
    assert not np.array_equal(a.wav, up.wav)
    # the melody reaches every window, not only the first: change the second half only
    half = music.generate("a reel", 2.0, Sampling(seed=3, steps=4), melody=[60] * 75 + [67] * 75, watermark=False)
    same = music.generate("a reel", 2.0, Sampling(seed=3, steps=4), melody=[60] * 150, watermark=False)
    n = 40 * codec.hop  # the first window's first 40 frames come before any overlap or crossfade
    assert np.array_equal(half.wav[:n], same.wav[:n]) and not np.array_equal(half.wav[-n:], same.wav[-n:])
    heun = music.generate("a reel", 2.0, Sampling(seed=3, steps=4, solver="heun"), watermark=False)
    assert not np.array_equal(a.wav, heun.wav)
    # a guidance interval: unguided late steps change the output; reaching every step is the default
    early = music.generate("a reel", 2.0, Sampling(seed=3, steps=4, cfg_until=0.3), watermark=False)
    assert early.metadata["cfg_until"] == 0.3 and a.metadata["cfg_until"] == 1.0
    assert not np.array_equal(a.wav, early.wav)
    assert np.array_equal(a.wav, music.generate("a reel", 2.0, Sampling(seed=3, steps=4, cfg_until=0.8), watermark=False).wav)
    with pytest.raises(InvalidArgumentError, match="cfg_until must be within 0..1"):
        music.generate("a reel", 1.0, Sampling(cfg_until=2.0))
    clip = tmp_path / "clip.wav"
    sf.write(clip, a.wav, SR)
    cont = music.generate("a reel", 1.0, Sampling(seed=3, steps=4), continue_from=str(clip), watermark=False)
    assert len(cont.wav) == 75 * codec.hop and cont.metadata["continued"]
    # the LM stays reachable per request; generators.json names the default
    assert music.generate("a reel", 1.0, Sampling(seed=3), generator="lm", watermark=False).metadata["generator"] == "lm"
    assert load_task("music", music_model, codec).generator == "lm"
    (tmp_path / "pick").mkdir()
    import shutil

    shutil.copytree(music_model, tmp_path / "pick" / "music")
    (tmp_path / "pick" / "music" / "generators.json").write_text('{"default": "flow", "default_with_melody": "lm"}')
    picked = load_task("music", tmp_path / "pick" / "music", codec)
    assert picked.generator == "flow"
    assert picked.generate("a reel", 1.0, Sampling(steps=2), watermark=False).metadata["generator"] == "flow"
    # a melody goes to the generator measured better at following one, unless the request names one
    assert picked.generate("a reel", 1.0, melody=[60] * 75, watermark=False).metadata["generator"] == "lm"
    assert picked.generate("a reel", 1.0, Sampling(steps=2), melody=[60] * 75, watermark=False,
                           generator="flow").metadata["generator"] == "flow"
    # measured sampling defaults for melody requests fill the unset controls only, and only with a melody
    (tmp_path / "pick" / "music" / "generators.json").write_text(
        '{"default": "flow", "default_with_melody": "lm", "sampling_with_melody": {"lm": {"cfg_scale": 3.0, "temperature": 0.7}}}')
    picked = load_task("music", tmp_path / "pick" / "music", codec)
    tuned = picked.generate("a reel", 1.0, Sampling(seed=1), melody=[60] * 75, watermark=False)
    assert (tuned.metadata["cfg_scale"], tuned.metadata["temperature"], tuned.metadata["top_k"]) == (3.0, 0.7, 100)
    explicit = Sampling(seed=1, cfg_scale=3.0, temperature=0.7)
    assert np.array_equal(tuned.wav, picked.generate("a reel", 1.0, explicit, melody=[60] * 75, watermark=False).wav)
    mine = picked.generate("a reel", 1.0, Sampling(seed=1, temperature=1.0), melody=[60] * 75, watermark=False)
    assert (mine.metadata["cfg_scale"], mine.metadata["temperature"]) == (3.0, 1.0)
    plain = picked.generate("a reel", 1.0, Sampling(seed=1, steps=2), watermark=False).metadata
    assert (plain["cfg_scale"], plain["temperature"]) == (2.0, 0.9)
    solo = load_task("music", music_model / "flow", codec)
    assert solo.generator == "flow" and solo.lm is None
    with pytest.raises(InvalidArgumentError, match="has no lm generator"):
        load_task("music", music_model / "flow", codec, generator="lm")
    with pytest.raises(InvalidArgumentError, match="unknown solver"):
        music.generate("a reel", 1.0, Sampling(solver="rk4"))


def test_melody_readers(tmp_path):
    import pretty_midi

    pm = pretty_midi.PrettyMIDI()
    inst = pretty_midi.Instrument(0)
    for i, p in enumerate([60, 64, 67]):
        inst.notes.append(pretty_midi.Note(100, p, i * 0.5, i * 0.5 + 0.5))
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "t.mid"))
    mel = load_melody(tmp_path / "t.mid")
    assert mel[10] == 0 and mel[40] == 4 and mel[80] == 7
    t = np.arange(SR) / SR
    a4 = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    assert (melody_from_audio(a4, SR)[5:-5] == 9).all()  # A
    assert pitch_classes([0, 61, -1]).tolist() == [12, 1, 12]


def test_the_main_tag_comes_from_the_nearest_training_captions_when_a_prompt_names_none(codec, tmp_path, monkeypatch):
    """A text-conditioned sound-effect model given a prompt that names no family takes it from its training captions
    nearest the prompt (their summed cosine, at least CAPTION_MIN_COSINE each), reports it apart, and keeps the tags
    the training data had beside it (the task's flow model, with no captions of its own, reads the LM's); a family
    named in the prompt, or set as a control, wins; a prompt far from every caption, or a task that does not read
    captions (music), takes nothing."""
    tm.tagged_model(tmp_path / "sfx", codec, melody=False, text=True, flow=True)
    sfx = load_task("sfx", tmp_path / "sfx", codec=codec, generator="lm")
    assert main_field(sfx.vocab.tags, sfx.generators["lm"].extra["cooccur"]) == "family"
    req = sfx.prepare("a drizzle on the window", 1.0, Sampling(seed=1))
    assert req.from_captions == ["family=rain"] and "family=rain" in req.tags
    assert sfx.read_prompt("a drizzle on the window") == req.tags
    out = sfx.generate("a drizzle on the window", 1.0, Sampling(seed=1), watermark=False)
    assert out.metadata["tags_from_captions"] == ["family=rain"] and out.metadata["tags"] == req.tags
    info: dict = {}
    sfx.stream("a drizzle on the window", 1.0, Sampling(seed=1), info=info)
    assert info["tags_from_captions"] == ["family=rain"]
    named = sfx.prepare("a drizzle of bells on the window", 1.0)  # named: read, nothing taken
    assert "family=bell" in named.tags and named.from_captions == []
    controlled = sfx.prepare("a drizzle on the window", 1.0, tags=["family=footsteps"])
    assert "family=footsteps" in controlled.tags and controlled.from_captions == []
    assert sfx.prepare("a recipe for lemon cake", 1.0).tags == ["domain=sfx"]  # no caption close enough
    flow = sfx.prepare("a drizzle on the window", 1.0, generator="flow")  # no captions of its own: the LM's
    assert sfx.generators["flow"].captions is None and flow.from_captions == ["family=rain"]
    monkeypatch.setitem(CAPTION_TAGS, "sfx", False)
    assert sfx.prepare("a drizzle on the window", 1.0).tags == ["domain=sfx"]


def test_caption_votes_sum_cosines_over_the_close_captions_that_name_a_value():
    near = [("a", 0.5), ("b", 0.45), ("c", 0.44), ("d", 0.3), ("e", 0.9)]
    values = {"a": "rain", "b": "wind", "c": "wind", "d": "rain", "e": None}
    assert vote_captions(near, values, 0.4) == ("wind", pytest.approx(0.89))
    assert vote_captions(near, values, 0.46) == ("rain", 0.5)
    assert vote_captions(near, values, 0.6) is None and vote_captions([], values, 0.0) is None
    assert main_field(["domain=sfx", "family=rain", "family=bell", "reverb=yes", "reverb=no", "pitch=high"],
                      {"__required__": ["family", "reverb"]}) == "family"
    assert main_field(["domain=sfx", "family=rain"], {"__required__": []}) is None
    assert main_field(["domain=sfx", "reverb=yes", "reverb=no"], {"__required__": ["reverb"]}) is None


def test_tagged_bad_requests(sfx_model, music_model, codec):
    sfx = load_task("sfx", sfx_model, codec)
    for d in (0, -1, 301, 3 * 3600):
        with pytest.raises(InvalidArgumentError, match="duration"):
            sfx.generate("rain", d)
    with pytest.raises(InvalidArgumentError, match="empty"):
        sfx.generate("  ", 1.0)
    with pytest.raises(InvalidArgumentError, match="melody"):
        sfx.generate("rain", 1.0, melody=[60] * 75)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        sfx.generate("rain", 1.0, Sampling(temperature=-1))
    with pytest.raises(InvalidArgumentError, match="unknown task"):
        load_task("karaoke")


class RecordingSource:
    """The offline code source, recording each call ``(frames, seed, prompt)`` and each close."""

    def __init__(self, lm) -> None:
        self.inner, self.calls, self.closed = LMSource(lm), [], 0

    def __call__(self, cond, frames, params, prompt=None):
        self.calls.append((frames, params.seed, prompt))
        try:
            yield from self.inner(cond, frames, params, prompt)
        finally:
            self.closed += 1


def test_tts_loop_takes_its_codes_from_a_source(tts_model, codec):
    """TTS.stream's one loop asks its source for each sentence's frames with seed + i; the audio is the default
    source's; closing the stream closes the source it was reading."""
    tts = TTS(tts_model, codec)
    text = "One sentence. And another one!"
    src = RecordingSource(tts.lm)
    streamed = np.concatenate(list(tts.stream(text, "bob", Sampling(seed=5), source=src)))
    assert np.array_equal(streamed, tts.synthesize(text, "bob", Sampling(seed=5), watermark=False).wav)
    utt = tts.prepare(text, "bob", Sampling(seed=5))
    assert [(f, seed) for f, seed, _ in src.calls] == [(p.frames, 5 + i) for i, p in enumerate(utt.plans)]
    assert src.closed == 2 and all(prompt is None for *_, prompt in src.calls)
    src = RecordingSource(tts.lm)
    chunks = tts.stream(text, "bob", Sampling(seed=5), source=src)
    next(chunks)
    chunks.close()
    assert len(src.calls) == 1 and src.closed == 1


def test_a_later_sentence_decodes_in_settled_chunks_once_the_utterance_sent_enough(tts_model, codec):
    """Each sentence's decoder is told the frames the utterance sent before it (the pauses' included): a sentence
    after 1.6 s of the utterance decodes 16-frame chunks from its first frame on, one before that ramps 2, 4, 8, and
    the audio is the same (to float rounding) as with every sentence ramped on its own."""
    tts = TTS(tts_model, codec)
    text = "A first sentence. Then a second one. And a third one. And a fourth, the last."
    utt = tts.prepare(text, "bob", Sampling(seed=2), speed=0.5)
    made = []

    def recording(codec, phones=None, voice=None, sent=0):
        dec = StepDecoder(codec, phones, voice, sent=sent)
        made.append((sent, dec))
        return dec

    sizes = []
    orig = StepDecoder._decode

    def decode(self, codes):
        sizes.append((self, codes.shape[-1]))
        return orig(self, codes)

    StepDecoder._decode = decode
    try:
        wav = np.concatenate(list(tts.render(utt, None, recording)))
        fresh = np.concatenate(list(tts.render(utt, None, lambda codec, phones=None, voice=None, sent=0:
                                               StepDecoder(codec, phones, voice))))
    finally:
        StepDecoder._decode = orig
    pause = int(PAUSE_SECONDS * tts.sample_rate) // tts.codec.hop
    assert [s for s, _ in made] == [sum(p.frames + pause for p in utt.plans[:i]) for i in range(len(utt.plans))]
    assert made[1][0] < Chunker.SETTLED <= made[-1][0]  # (the tiny model's sentences are short)
    for sent, dec in made:
        got = [n for d, n in sizes if d is dec]
        if sent < Chunker.SETTLED:  # ramped: 2, 4, then 8 (16 once the utterance sent 1.6 s)
            assert got[:2] == [2, 4] and (got[2] == 8) == (sent + 6 < Chunker.SETTLED)
        else:  # settled from the start (the last chunk may be short: the sentence's end)
            assert len(got) >= 2 and got[:-1] == [16] * (len(got) - 1)
    assert len(wav) == len(fresh) and np.abs(wav - fresh).max() < 1e-5


def test_tagged_loop_slides_windows_and_streams_like_generate(sfx_model, music_model, codec):
    """TaggedTask.codes: each window past the first continues the last frames made before it (its forced frames
    left out of the output) with seed + i; TaggedTask.stream (its codes decoded as they come) equals generate (the
    same codes decoded at once) to float rounding, with a melody and a continued clip too; closing a stream closes
    its source."""
    sfx = load_task("sfx", sfx_model, codec)
    req = sfx.prepare("heavy rain", 1.2, Sampling(seed=1))  # 90 frames: three windows of 40
    src = RecordingSource(sfx.lm)
    codes = torch.cat(list(sfx.codes(req, src)), -1)
    assert codes.shape == (2, req.frames) and len(src.calls) >= 3 and src.closed == len(src.calls)
    made = 0
    for i, (frames, seed, prompt) in enumerate(src.calls):
        n_ctx = 0 if prompt is None else prompt.shape[-1]
        assert seed == 1 + i and (n_ctx > 0) == (i > 0)
        assert n_ctx == 0 or torch.equal(prompt, codes[:, made - n_ctx: made])
        made += frames - n_ctx
    assert made == req.frames

    def close(a: np.ndarray, b: np.ndarray) -> bool:
        return len(a) == len(b) and np.abs(np.clip(a, -1, 1) - b).max() < 1e-5

    assert close(np.concatenate(list(sfx.stream("heavy rain", 1.2, Sampling(seed=1)))),
                 sfx.generate("heavy rain", 1.2, Sampling(seed=1), watermark=False).wav)
    music = load_task("music", music_model, codec, generator="lm")
    clip = ((0.3 * np.sin(2 * np.pi * 220 * np.arange(SR) / SR)).astype(np.float32), SR)
    for kw in ({"melody": [60, 62, 64, 65, 67] * 15}, {"continue_from": clip}):
        info = {}
        wav = np.concatenate(list(music.stream("a reel", 1.0, Sampling(seed=2), generator="lm", info=info, **kw)))
        file = music.generate("a reel", 1.0, Sampling(seed=2), generator="lm", watermark=False, **kw)
        assert close(wav, file.wav) and info["tags"] == file.metadata["tags"]
    src = RecordingSource(sfx.lm)
    chunks = sfx.stream("heavy rain", 1.2, Sampling(seed=1), source=src)
    next(chunks)
    chunks.close()
    assert len(src.calls) == 1 and src.closed == 1
    flow = load_task("music", music_model, codec, generator="flow")  # whole windows: one chunk, the file's audio
    (one,) = list(flow.stream("a reel", 1.0, Sampling(seed=3, steps=4)))
    file = flow.generate("a reel", 1.0, Sampling(seed=3, steps=4), watermark=False).wav
    assert np.array_equal(np.clip(one, -1, 1), file)
    with pytest.raises(InvalidArgumentError, match="takes no code source"):
        next(flow.stream("a reel", 1.0, source=src))


def test_watermark_is_on_by_default_and_recorded(sfx_model, codec):
    from tokenwave.safety.watermark import detect_watermark

    sfx = load_task("sfx", sfx_model, codec)
    marked = sfx.generate("heavy rain", 3.0, Sampling(seed=1))
    plain = sfx.generate("heavy rain", 3.0, Sampling(seed=1), watermark=False)
    assert marked.metadata["watermark"] is True and plain.metadata["watermark"] is False
    assert not np.array_equal(marked.wav, plain.wav)
    assert detect_watermark(marked.wav, SR).p_value < detect_watermark(plain.wav, SR).p_value


# --- CLI -------------------------------------------------------------------------------------------------------
def _cli(*args, env=None):
    """Run ``tokenwave ARGS`` in this process (the command-line entry point, its exit code and output) with the
    environment ``env``; much faster than a subprocess that imports torch again."""
    import contextlib
    import io
    import os
    from types import SimpleNamespace

    from tokenwave.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    saved_env, saved_argv = dict(os.environ), sys.argv
    os.environ.update(env or {})
    sys.argv = ["tokenwave", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory, tts_model, sfx_model, music_model, codec):
    """A checkpoints folder holding the tiny models, so the CLI's defaults find them."""
    import shutil

    root = tmp_path_factory.mktemp("ckpt")
    codec.save(root / "codec")
    for name, src in (("tts", tts_model), ("sfx", sfx_model), ("music", music_model)):
        shutil.copytree(src, root / name)
    return {"TOKENWAVE_CHECKPOINTS": str(root)}


def test_cli_tasks_write_audio_and_metadata(cli_env, tmp_path, codec):
    out = tmp_path / "rain.wav"
    run = _cli("sfx", "heavy rain on a tin roof", "--duration", 1, "-o", out, "--seed", 4, env=cli_env)
    assert run.returncode == 0, run.stderr
    wav, sr = sf.read(out)
    meta = json.loads((tmp_path / "rain.wav.json").read_text())
    assert sr == SR and len(wav) == 75 * codec.hop and meta["watermark"] is True
    assert meta["seed"] == 4 and "family=rain" in meta["tags"]
    run = _cli("tts", "Hello world.", "--voice", "bob", "-o", tmp_path / "hi.wav", "--no-watermark", env=cli_env)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "hi.wav.json").read_text())["watermark"] is False
    run = _cli("tts", "--list-voices", env=cli_env)
    assert run.stdout.split() == ["alice", "bob"]
    run = _cli("tts", "--list-accents", env=cli_env)
    assert {"en-us", "en-gb-x-rp", "en-029"} <= set(run.stdout.split())
    run = _cli("tts", "Hello world.", "--voice", "bob", "--accent", "en-029", "-o", tmp_path / "acc.wav", env=cli_env)
    assert run.returncode == 0 and "accent: en-029 (as asked)" in run.stdout, run.stderr
    assert json.loads((tmp_path / "acc.wav.json").read_text())["accent"] == "en-029"
    run = _cli("music", "a reel", "--duration", 0.5, "-o", tmp_path / "m.wav", env=cli_env)
    assert run.returncode == 0, run.stderr
    run = _cli("music", "a reel", "--duration", 0.5, "--generator", "flow", "--steps", 3, "-o", tmp_path / "f.wav",
               env=cli_env)
    assert run.returncode == 0, run.stderr
    meta = json.loads((tmp_path / "f.wav.json").read_text())
    assert meta["generator"] == "flow" and meta["steps"] == 3 and len(sf.read(tmp_path / "f.wav")[0]) == round(0.5 * 75) * codec.hop
    run = _cli("sfx", "rain", "--tag", "family=bell", "--tag", "pitch=high", "--duration", 0.5, "-o", tmp_path / "t.wav",
               env=cli_env)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "t.wav.json").read_text())["tags"] == ["domain=sfx", "family=bell", "pitch=high"]
    run = _cli("sfx", "--list-tags", env=cli_env)
    assert run.returncode == 0 and "family: bell, footsteps, rain" in run.stdout, run.stderr


@pytest.mark.parametrize("args, message", [
    (("tts", ""), "the text is empty"),
    (("tts", "Hi.", "--voice", "nobody"), "unknown voice 'nobody'"),
    (("tts", "Hi.", "--voice", "missing.wav"), "unknown voice 'missing.wav'"),
    (("tts", "Hi.", "--accent", "en-mars"), "unknown accent 'en-mars'"),
    (("sfx", "rain", "--duration", "0"), "duration must be positive"),
    (("sfx", "rain", "--duration", "600"), "over the 300 s limit"),
    (("music", "a reel", "--duration", "10800"), "duration 10800 s is over the 300 s limit"),
    (("music", "a reel", "--duration", "0"), "at most 300 s"),
    (("music", ""), "the prompt is empty"),
    (("music", "a reel " * 1429), "the prompt has 10002 characters, over the 500 limit"),
    (("music", "a reel", "--melody", __file__), "is neither a MIDI file nor audio"),
    (("sfx", "rain", "--generator", "flow"), "has no flow generator"),
    (("sfx", "rain", "--generator", "gan"), "unknown generator 'gan'"),
    (("tts", "Hi.", "--generator", "flow"), "text-to-speech has no 'flow' generator"),
    (("music", "a reel", "--cfg-until", "1.5"), "cfg_until must be within 0..1, got 1.5"),
    (("sfx", "rain", "--tag", "colour=blue"), "this model has no tag field 'colour'"),
    (("sfx", "rain", "--tag", "family=jazz"), "family=jazz is not a value this model was trained on"),
])
def test_cli_errors_are_one_line_with_a_fix(cli_env, tmp_path, args, message):
    run = _cli(*args, "-o", tmp_path / "x.wav", env=cli_env)
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) <= 2
    assert not (tmp_path / "x.wav").exists()


def test_errors_are_tokenwave_errors():
    assert issubclass(UnknownVoiceError, TokenwaveError) and issubclass(MissingModelError, TokenwaveError)


def test_phonemizing_is_safe_from_concurrent_requests():
    """espeak keeps global state: unguarded calls from several threads garble each other's phonemes (a server's
    concurrent TTS requests did); phonemize takes turns."""
    import threading

    from tokenwave.speech import phonemize

    texts = ["One sentence here.", "And another one!", "A third, for good measure."]
    ref = phonemize(texts)
    bad = []

    def run():
        for _ in range(15):
            if phonemize(texts) != ref:
                bad.append(1)

    threads = [threading.Thread(target=run) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not bad
