"""Trained generator folders (tokenwave.models): each format's writer and reader round-trip exactly (same weights,
same outputs, byte-identical files when re-saved), and a model refuses a codec other than the one it was trained
on, named by content hash, with the fix in the error."""
import dataclasses
import json
import shutil

import pytest
import torch

from tokenwave.checkpoint import CheckpointError
from tokenwave.codec import Codec, load_codec
from tokenwave.codec.decoders import load_decoder, save_decoder
from tokenwave.conditioning import TagConditioner, TagVocab
from tokenwave.conditioning.melody import MelodyConditioner
from tokenwave.flow.config import FlowConfig
from tokenwave.flow.model import FlowDiT
from tokenwave.lm.config import LMConfig
from tokenwave.lm.model import TokenLM
from tokenwave.models.folder import (CODEC_HASH, CodecMismatchError, MissingModelError, check_codec,
                                     checkpoint_kind, codec_folder_hash, data_codec_hash)
from tokenwave.models.tagged import Generator, tag_cooccurrence
from tokenwave.models.tts import TTSFolder, TTSModel
from tokenwave.paths import default_checkpoint
from tokenwave.tasks import load_task
from tokenwave.tasks.tts import TTS
from tokenwave.train.tagged import InitModel

import task_models as tm
from task_models import PHONES, ROWS


@pytest.fixture(scope="module")
def codec():
    return tm.tiny_codec()


@pytest.fixture(scope="module")
def other_codec():
    """A codec whose codes differ: the tiny codec with one encoder weight changed."""
    c = tm.tiny_codec()
    with torch.no_grad():
        next(c.encoder.parameters()).add_(0.01)
    return c


def same_files(a, b, names):
    return all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


# --- TTS folders ------------------------------------------------------------------------------------------------
def tts_folder(codec) -> TTSFolder:
    cfg = LMConfig(K=2, codebook_size=codec.codebook_size, dim=32, depth=1, heads=2, max_len=512)
    symbols = list("abcdefghij")
    torch.manual_seed(0)
    model = TTSModel(cfg, len(symbols) + 2, len(PHONES) + 2)
    tm.randomise(model, 0)
    g = torch.Generator().manual_seed(1)
    voices = {n: torch.randint(0, codec.codebook_size, (2, 40), generator=g) for n in ("bob", "alice")}
    return TTSFolder(model.eval(), {"phonemes": symbols, "phones": PHONES, "duration": [1.0, 4.0],
                                    "train": {"max_frames": 60}}, voices)


def tts_batch(codec):
    g = torch.Generator().manual_seed(2)
    codes = torch.randint(0, codec.codebook_size, (2, 2, 12), generator=g)
    phonemes = [torch.randint(2, 12, (n,), generator=g) for n in (5, 7)]
    prompts = [torch.randint(0, codec.codebook_size, (2, n), generator=g) for n in (6, 9)]
    aligned = [torch.stack([torch.randint(2, len(PHONES) + 2, (12,), generator=g), torch.zeros(12, dtype=torch.long),
                            torch.ones(12, dtype=torch.long)]) for _ in range(2)]
    return codes, torch.tensor([12, 10]), phonemes, prompts, aligned


def test_tts_folder_round_trip(codec, tmp_path):
    made = tts_folder(codec)
    made.save(tmp_path / "a", codec.content_hash())
    read = TTSFolder.load(tmp_path / "a", codec)
    state, again = made.model.state_dict(), read.model.state_dict()
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)
    assert read.voices.keys() == made.voices.keys()
    assert all(torch.equal(read.voices[k], made.voices[k]) for k in made.voices)
    assert all(v.dtype == torch.long for v in read.voices.values())
    assert read.phonemes.symbols == made.phonemes.symbols and read.phones.symbols == made.phones.symbols
    assert read.extra["voices"] == ["alice", "bob"] and read.extra[CODEC_HASH] == codec.content_hash()
    assert not read.model.training
    with torch.no_grad():  # the same outputs: the training loss of one batch, bit for bit
        assert torch.equal(made.model(*tts_batch(codec)), read.model(*tts_batch(codec)))
    # what the reader gives, the writer writes back unchanged (the recorded codec hash kept)
    read.save(tmp_path / "b", None)
    assert same_files(tmp_path / "a", tmp_path / "b", ["config.json", "model.safetensors", "voices.safetensors"])


def test_tts_task_reads_the_folder(codec, tmp_path):
    """The TTS task loads through the reader: its network, vocabularies and voices are the folder's."""
    made = tts_folder(codec)
    made.save(tmp_path / "tts", codec.content_hash())
    tts = TTS(tmp_path / "tts", codec)
    assert tts.voices == ["alice", "bob"] and torch.equal(tts.builtin["bob"], made.voices["bob"])
    assert tts.vocab.symbols == made.phonemes.symbols and tts.phones.symbols == made.phones.symbols
    assert all(torch.equal(a, b) for a, b in zip(tts.model.state_dict().values(), made.model.state_dict().values()))


# --- token-LM and flow folders --------------------------------------------------------------------------------
def generator(kind: str, codec, melody: bool) -> Generator:
    torch.manual_seed(0)
    rows = [{**r, "domain": "music"} for r in ROWS]
    vocab = TagVocab.from_rows(rows)
    if kind == "lm":
        net = TokenLM(LMConfig(K=2, codebook_size=codec.codebook_size, dim=32, depth=1, heads=2, max_len=80))
    else:
        net = FlowDiT(FlowConfig(latent_dim=codec.latent_dim, dim=32, depth=1, heads=2, max_frames=200, patch=2))
    tags = TagConditioner(len(vocab), 32)
    mel = MelodyConditioner(32) if melody else None
    for i, m in enumerate((net, tags, mel)):
        if m is not None:
            tm.randomise(m, i)
    return Generator(kind, None, net.eval(), {"train": {"frames": 40}, "cooccur": tag_cooccurrence(rows)}, vocab,
                     tags.eval(), None if mel is None else mel.eval())


def outputs(g: Generator, codec) -> torch.Tensor:
    """The generator's output for fixed inputs: the token LM's logits, the flow model's velocity."""
    ids, mask = g.vocab.encode([["domain=music", "family=rain"], ["domain=music"]])
    cond = g.tags(ids, mask)
    if g.melody is not None:
        cond.frames = g.melody(torch.tensor([[0, 3, 5, 12, 7, 7]]).expand(2, -1))
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        if g.kind == "lm":
            return g.model(torch.randint(0, codec.codebook_size, (2, 2, 6), generator=gen), cond)[0]  # logits
        return g.model(torch.randn(2, codec.latent_dim, 6, generator=gen), torch.tensor([0.3, 0.8]), cond)


@pytest.mark.parametrize("kind,melody", [("lm", True), ("flow", False)])
def test_generator_folder_round_trip(codec, tmp_path, kind, melody):
    made = generator(kind, codec, melody)
    made.save(tmp_path / "a", codec.content_hash())
    read = Generator.load(tmp_path / "a", codec)
    assert read.kind == kind and read.folder == tmp_path / "a" and read.window == 40
    assert read.vocab.tags == made.vocab.tags and read.extra["cooccur"] == made.extra["cooccur"]
    assert (read.melody is not None) == melody and not read.model.training
    for a, b in ((made.model, read.model), (made.tags, read.tags), (made.melody, read.melody)):
        if a is not None:
            sa, sb = a.state_dict(), b.state_dict()
            assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    out = outputs(made, codec)
    assert torch.equal(out, outputs(read, codec)) and torch.isfinite(out).all()
    read.save(tmp_path / "b", None)
    files = ["config.json", "model.safetensors", "tags.safetensors"] + (["melody.safetensors"] if melody else [])
    assert same_files(tmp_path / "a", tmp_path / "b", files)
    assert (tmp_path / "b" / "melody.safetensors").exists() == melody


def test_generator_reader_refuses_what_is_not_a_generator(codec, tmp_path):
    made = tts_folder(codec)
    made.save(tmp_path / "tts", codec.content_hash())
    with pytest.raises(MissingModelError, match="holds a 'tts' model, not a music/sfx generator"):
        Generator.load(tmp_path / "tts")
    g = generator("lm", codec, False)
    g.save(tmp_path / "lm", None)
    with pytest.raises(CheckpointError, match="'lm' checkpoint, not a 'flow' one"):
        Generator.load(tmp_path / "lm", kind="flow")
    (tmp_path / "lm" / "tags.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no tag conditioner") as err:
        Generator.load(tmp_path / "lm")
    assert "tokenwave train lm" in err.value.one_line()
    with pytest.raises(CheckpointError, match="no model in"):
        checkpoint_kind(tmp_path / "nothing")


def test_fine_tuning_reads_through_the_reader_without_drawing_from_the_seed(codec, tmp_path):
    made = generator("lm", codec, True)
    made.save(tmp_path / "lm", None)
    torch.manual_seed(0)
    init = InitModel.read(tmp_path / "lm", TokenLM)
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))  # reading built modules, but the run's seed is as it was
    assert init.tags == made.vocab.tags and torch.equal(init.tag_embed, made.tags.embed.weight)
    assert init.melody.keys() == made.melody.state_dict().keys() and init.cfg == made.model.cfg


# --- the codec a model was trained on ------------------------------------------------------------------------
def test_content_hash_names_the_codes_not_the_decoder(codec, other_codec, tmp_path):
    h = codec.content_hash()
    assert len(h) == 16 and h == tm.tiny_codec().content_hash()  # the same weights, the same hash
    codec.encode(torch.randn(1, 1, 4 * codec.hop) * 0.3, 2)
    assert codec.content_hash() == h  # encoding changes nothing it hashes
    assert other_codec.content_hash() != h  # one encoder weight changed
    tuned = tm.tiny_codec()
    tm.randomise(tuned.decoder, 7)
    save_decoder(tmp_path / "dec", tuned, 2)
    assert load_decoder(tmp_path / "dec", codec, 2).content_hash() == h  # a fine-tuned decoder keeps it
    codec.save(tmp_path / "codec")
    assert codec_folder_hash(tmp_path / "codec") == h == load_codec(tmp_path / "codec").content_hash()
    tiny = tm.CODEC_PRESETS["tiny"]
    wider = Codec(dataclasses.replace(tiny, dec_depth=tiny.dec_depth + 1))
    wider.encoder.load_state_dict(codec.encoder.state_dict())
    wider.quantizer.load_state_dict(codec.quantizer.state_dict())
    assert wider.content_hash() != h  # the config is part of it


def test_a_model_refuses_another_codec_with_the_fix_named(codec, other_codec, tmp_path):
    tm.tts_model(tmp_path / "tts", codec)
    tm.tagged_model(tmp_path / "music", codec, melody=True, domain="music", flow=True)
    want, have = codec.content_hash(), other_codec.content_hash()
    for load in (lambda: TTS(tmp_path / "tts", other_codec),
                 lambda: load_task("music", tmp_path / "music", other_codec),
                 lambda: Generator.load(tmp_path / "music" / "flow", other_codec)):
        with pytest.raises(CodecMismatchError) as err:
            load()
        msg = err.value.one_line()
        assert want in msg and have in msg, msg  # both codecs named
        assert "pass the codec it was trained on" in msg and "retrain with this codec" in msg
        assert "tokenwave codec tokenize" in msg
    # the codec it was trained on, with a decoder fine-tuned on top, is accepted
    tuned = tm.tiny_codec()
    tm.randomise(tuned.decoder, 8)
    assert TTS(tmp_path / "tts", tuned).codec is tuned
    assert load_task("music", tmp_path / "music", tuned, generator="flow").generator == "flow"


def test_folders_without_the_hash_keep_loading(codec, other_codec, tmp_path):
    """A folder written before the hash was recorded: one trained on the shipped codec is checked against it, one
    naming another codec or none is not checked."""
    tm.tagged_model(tmp_path / "m", codec, melody=False)
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg[CODEC_HASH]
    for name, refused in (("checkpoints/codec", True), ("runs/my-codec/model", False), (None, False)):
        cfg["tokens"] = {"codec": name, "K": 2}
        (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
        if refused:  # tiny codecs are not the shipped one
            with pytest.raises(CodecMismatchError, match=codec_folder_hash(default_checkpoint("codec"))):
                Generator.load(tmp_path / "m", other_codec)
        else:
            assert Generator.load(tmp_path / "m", other_codec).kind == "lm"
    assert Generator.load(tmp_path / "m").kind == "lm"  # no codec given: nothing to check


def test_shipped_models_name_the_shipped_codec():
    shipped = codec_folder_hash(default_checkpoint("codec"))
    codec = load_codec(None)
    assert codec.content_hash() == shipped
    for name in ("tts", "music", "music/flow", "sfx", "sfx/flow"):
        folder = default_checkpoint(name)
        raw = json.loads((folder / "config.json").read_text())
        assert raw[CODEC_HASH] == shipped, name
        check_codec(folder, raw, codec)  # passes
        del raw[CODEC_HASH]
        check_codec(folder, raw, codec)  # as it would without the field: trained on checkpoints/codec
    with pytest.raises(CodecMismatchError, match="checkpoints/codec"):
        check_codec(default_checkpoint("tts"), json.loads((default_checkpoint("tts") / "config.json").read_text()),
                    tm.tiny_codec())


def test_data_codec_hash(codec, tmp_path):
    """What the writer records: the hash tokens.json holds, else the hash of the codec folder it names."""
    assert data_codec_hash({"codec": "anything", CODEC_HASH: "0123456789abcdef"}) == "0123456789abcdef"
    codec.save(tmp_path / "codec")
    assert data_codec_hash({"codec": str(tmp_path / "codec")}) == codec.content_hash()
    assert data_codec_hash({"codec": "checkpoints/codec"}) == codec_folder_hash(default_checkpoint("codec"))
    assert data_codec_hash({"codec": str(tmp_path / "missing")}) is None and data_codec_hash({}) is None
    shutil.rmtree(tmp_path / "codec")


def test_hf_codec_hash_is_stable_and_follows_the_weights(tmp_path):
    """A Hugging Face codec folder hashes the same wherever it is loaded from, and differently once a weight moves."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.EncodecModel(transformers.EncodecConfig(
        hidden_size=32, num_filters=4, num_residual_layers=1, codebook_size=1024, codebook_dim=32, num_lstm_layers=1,
        target_bandwidths=[1.5, 3.0, 6.0], upsampling_ratios=[8, 5, 4, 2], sampling_rate=24000))
    model.save_pretrained(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    a, b = load_codec(tmp_path / "a"), load_codec(tmp_path / "b")
    assert len(a.content_hash()) == 16 and a.content_hash() == b.content_hash()  # the path is not part of it
    with torch.no_grad():
        next(b.model.parameters()).add_(0.01)
    assert a.content_hash() != b.content_hash()
