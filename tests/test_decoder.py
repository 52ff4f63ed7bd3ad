"""Decoders fine-tuned on a codec's frozen codes (`tokenwave train decoder`): the codes stay the same, the
reconstruction improves, the weights load only onto the codec they were trained on, and TTS uses its own."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from task_models import PHONES, SR, randomise, tagged_model, tiny_codec
from task_models import tts_model as make_tts_model

from tokenwave.checkpoint import CheckpointError
from tokenwave.codec import load_codec
from tokenwave.codec.decoders import (PhoneDecoder, codes_fingerprint, decoder_n_q, decoder_phones, decoder_voice,
                                      load_decoder, save_decoder, voice_vector, with_phone_decoder)
from tokenwave.codec.streaming import StreamingDecoder
from tokenwave.data.sfx import build_sfx
from tokenwave.errors import InvalidArgumentError
from tokenwave.tasks import load_task
from tokenwave.tasks.base import Sampling
from tokenwave.tasks.tts import TTS


def tw(*args, ok=True):
    run = subprocess.run([sys.executable, "-m", "tokenwave", *map(str, args)], capture_output=True, text=True)
    assert (run.returncode == 0) == ok, run.stderr[-2000:]
    return run


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("codec") / "codec"
    tiny_codec().save(folder)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory, codec_dir):
    data = build_sfx(tmp_path_factory.mktemp("d") / "sfx", minutes=0.5, seed=0)
    out = tmp_path_factory.mktemp("run") / "dec"
    kbps = load_codec(codec_dir).bitrate(2) / 1000
    tw("train", "decoder", "--codec", codec_dir, "--data", data, "--out", out, "--kbps", kbps, "--steps", 40,
       "--batch-size", 4, "--segment", 0.25, "--lr", 3e-3, "--val-every", 40, "--ckpt-every", 40, "--log-every", 10,
       "--val-clips", 2, "--threads", 1)
    return out


def test_decoder_training_keeps_the_codes_and_improves_the_reconstruction(trained, codec_dir):
    log = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    losses = [e["loss"] for e in log if "loss" in e]
    assert losses[-1] < losses[0]
    cfg = json.loads((trained / "model" / "config.json").read_text())
    assert cfg["kind"] == "codec-decoder" and cfg["n_q"] == 2 == decoder_n_q(trained / "model")
    assert cfg["validation"]["mel_distance"] < cfg["base_validation"]["mel_distance"]  # better than where it started
    assert all(v.dtype == torch.float16 for v in load_file(str(trained / "model" / "model.safetensors")).values())

    base = load_codec(codec_dir)
    before = {k: v.clone() for k, v in base.decoder.state_dict().items()}
    tuned = load_decoder(trained / "model", base)
    wav = torch.randn(1, 1, SR // 2) * 0.3
    assert torch.equal(tuned.encode(wav, 2), base.encode(wav, 2))  # same encoder and quantizer: same codes
    assert codes_fingerprint(tuned) == codes_fingerprint(base) == cfg["codes_fingerprint"]
    codes = base.encode(wav, 2)
    assert not torch.allclose(tuned.decode(codes), base.decode(codes), atol=1e-4)
    assert all(torch.equal(before[k], v) for k, v in base.decoder.state_dict().items())  # the base codec is untouched


def test_a_decoder_loads_only_onto_the_codec_it_was_trained_on(trained, codec_dir, tmp_path):
    other = load_codec(codec_dir)
    randomise(other.encoder, 7)
    with pytest.raises(CheckpointError, match="another codec's codes"):
        load_decoder(trained / "model", other)
    with pytest.raises(InvalidArgumentError, match="needs a tokenwave codec"):
        load_decoder(trained / "model", object())
    run = tw("codec", "roundtrip", tmp_path / "missing.wav", "--model", codec_dir, "--decoder", tmp_path, ok=False)
    assert "checkpoint" in run.stderr
    # nor onto another input: this one decodes 2 codebooks, not 1, nor continuous latents
    base = load_codec(codec_dir)
    for n_q, said in ((1, "not the 1-codebook codes"), (0, "not the continuous latents")):
        with pytest.raises(CheckpointError, match=said):
            load_decoder(trained / "model", base, n_q=n_q)
    assert decoder_n_q(trained / "model") == 2 and load_decoder(trained / "model", base, n_q=2) is not base


def test_cli_roundtrip_with_a_decoder(trained, codec_dir, tmp_path):
    import soundfile as sf

    t = np.arange(SR) / SR
    sf.write(tmp_path / "x.wav", (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), SR)
    kbps = load_codec(codec_dir).bitrate(2) / 1000
    plain = json.loads(tw("codec", "roundtrip", tmp_path / "x.wav", "--model", codec_dir, "--kbps", kbps).stdout)
    tuned = json.loads(tw("codec", "roundtrip", tmp_path / "x.wav", "--model", codec_dir, "--kbps", kbps,
                          "--decoder", trained / "model").stdout)
    assert plain["codebooks"] == tuned["codebooks"] == 2
    assert plain["mel_distance"] != tuned["mel_distance"]


def test_tts_decodes_with_its_own_decoder(tmp_path):
    codec = tiny_codec()
    make_tts_model(tmp_path / "tts", codec)
    plain = TTS(tmp_path / "tts", codec)
    a = plain.synthesize("Hello there.", "alice", Sampling(seed=3), watermark=False)
    variant = tiny_codec()
    randomise(variant.decoder, 5)
    save_decoder(tmp_path / "other", variant, n_q=3)
    (tmp_path / "other").rename(tmp_path / "tts" / "decoder")  # a decoder of 3 codebooks for a 2-codebook model
    with pytest.raises(CheckpointError, match="3-codebook codes"):
        TTS(tmp_path / "tts", codec)
    save_decoder(tmp_path / "tts" / "decoder", variant, n_q=2)
    tts = TTS(tmp_path / "tts", codec)
    assert tts.codec is not codec and tts.codec.encoder is codec.encoder
    b = tts.synthesize("Hello there.", "alice", Sampling(seed=3), watermark=False)
    assert len(a.wav) == len(b.wav) and not np.allclose(a.wav, b.wav, atol=1e-4)
    # the same tokens, decoded by the fine-tuned decoder (float16 weights, so not bit-exact)
    codes = torch.randint(0, codec.codebook_size, (1, 2, 20))
    assert torch.allclose(tts.codec.decode(codes), variant.decode(codes), atol=1e-2)


def test_latent_decoder_for_flow_output(codec_dir, tmp_path):
    """``--latents``: a decoder of the continuous latents (what a flow generator makes), trained the same way."""
    data = build_sfx(tmp_path / "sfx", minutes=0.5, seed=1)
    out = tmp_path / "lat"
    tw("train", "decoder", "--codec", codec_dir, "--data", data, "--out", out, "--latents", "--steps", 30,
       "--batch-size", 4, "--segment", 0.25, "--lr", 3e-3, "--val-every", 30, "--ckpt-every", 30, "--log-every", 10,
       "--val-clips", 2, "--threads", 1)
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["n_q"] == 0 and cfg["validation"]["mel_distance"] < cfg["base_validation"]["mel_distance"]
    base = load_codec(codec_dir)
    tuned = load_decoder(out / "model", base)
    z = base.encode_latents(torch.randn(1, 1, SR // 2) * 0.3)
    assert not torch.allclose(tuned.decode_latents(z), base.decode_latents(z), atol=1e-4)


def test_tagged_task_decodes_each_generator_with_its_own_decoder(tmp_path):
    """A decoder in the flow model's folder decodes the flow generator's output only; the token LM keeps the codec's."""
    codec = tiny_codec()
    tagged_model(tmp_path / "music", codec, melody=True, domain="music", flow=True)
    before = {g: load_task("music", tmp_path / "music", codec, generator=g).generate(
        "a reel", 1.0, Sampling(seed=3, steps=4), watermark=False).wav for g in ("lm", "flow")}
    variant = tiny_codec()
    randomise(variant.decoder, 5)
    save_decoder(tmp_path / "music" / "flow" / "decoder", variant, n_q=0)
    task = load_task("music", tmp_path / "music", codec, generator="flow")
    assert set(task.decoders) == {"flow"} and task.decoder_for(task.generators["lm"]) is codec
    flow = task.generate("a reel", 1.0, Sampling(seed=3, steps=4), watermark=False).wav
    lm = task.generate("a reel", 1.0, Sampling(seed=3, steps=4), generator="lm", watermark=False).wav
    assert np.array_equal(lm, before["lm"])
    assert len(flow) == len(before["flow"]) and not np.allclose(flow, before["flow"], atol=1e-4)


# --- phone-informed decoders (`tokenwave train decoder --alignments`) ------------------------------------------------
def _frames(vocab, T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(0, 16, (1, T), generator=g)
    return torch.stack([torch.randint(2, len(vocab), (1, T), generator=g), pos, pos.flip(-1)], 1)


def test_phone_decoder_starts_as_its_decoder_hears_the_phones_and_streams(codec_dir, tmp_path):
    base = load_codec(codec_dir)
    phoned = with_phone_decoder(base, PHONES)
    assert isinstance(phoned.decoder, PhoneDecoder) and phoned.encoder is base.encoder
    assert decoder_phones(phoned).symbols[2:] == sorted(PHONES) and decoder_phones(base) is None
    codes = base.encode(torch.randn(1, 1, SR // 2) * 0.3, 2)
    T = codes.shape[-1]
    frames = _frames(phoned.decoder.phones, T, 0)
    # zero phone embeddings: exactly the decoder it was made from, with or without phones
    assert torch.allclose(phoned.decode(codes, frames), base.decode(codes), atol=1e-6)
    for m in (phoned.decoder.phone_embed, phoned.decoder.pos_embed, phoned.decoder.left_embed):
        randomise(m, 3)
    heard = phoned.decode(codes, frames)
    assert not torch.allclose(heard, phoned.decode(codes, _frames(phoned.decoder.phones, T, 1)), atol=1e-4)
    assert not torch.allclose(heard, phoned.decode(codes), atol=1e-4)
    # no phones: every frame gets the "no phone known" input training gives dropped items
    assert torch.equal(phoned.decode(codes), phoned.decode(codes, torch.zeros_like(frames)))
    # streaming in uneven chunks, each with its frames' phones, equals offline
    with StreamingDecoder(phoned) as dec:
        outs, t = [], 0
        for n in (1, 2, 5, 8, T - 16):
            outs.append(dec.push(codes[..., t: t + n], frames[..., t: t + n]))
            t += n
        outs.append(dec.flush())
    assert (torch.cat(outs, -1) - heard).abs().max() < 1e-4
    # errors: a plain decoder is given phones; phones that do not fit the codes
    with pytest.raises(InvalidArgumentError, match="takes no phone timings"):
        base.decode(codes, frames)
    with pytest.raises(InvalidArgumentError, match="do not fit codes of"):
        phoned.decode(codes, frames[..., :-1])
    # saved and loaded: the same phones, the same sound (float16 weights)
    save_decoder(tmp_path / "pd", phoned, n_q=2)
    loaded = load_decoder(tmp_path / "pd", base, n_q=2)
    assert isinstance(loaded.decoder, PhoneDecoder) and loaded.decoder.phones.symbols == phoned.decoder.phones.symbols
    assert torch.allclose(loaded.decode(codes, frames), heard, atol=2e-2)


def test_a_phone_decoder_moved_to_another_phone_set_keeps_each_phones_embedding(codec_dir):
    """New data with another phone set (``--init`` a phone-informed decoder): each phone keeps what it learnt, a
    new phone starts at zero, so the same phones sound the same."""
    base = load_codec(codec_dir)
    phoned = with_phone_decoder(base, PHONES, voice=True)
    for m in (phoned.decoder.phone_embed, phoned.decoder.pos_embed, phoned.decoder.voice_proj):
        randomise(m, 5)
    more = sorted(PHONES[1:] + ["x", "zz"])  # one phone gone, two new ones
    moved = with_phone_decoder(phoned, more, voice=True)
    old, new = phoned.decoder.phones, moved.decoder.phones
    for sym in new.symbols:
        row = moved.decoder.phone_embed.weight[new.index[sym]]
        if sym in old.index:
            assert torch.equal(row, phoned.decoder.phone_embed.weight[old.index[sym]])
        else:
            assert not row.any()
    codes = base.encode(torch.randn(1, 1, SR // 2) * 0.3, 2)
    T = codes.shape[-1]
    shared = [p for p in more if p in old.index]
    g = torch.Generator().manual_seed(0)
    said = [shared[i] for i in torch.randint(0, len(shared), (T,), generator=g)]
    pos = torch.randint(0, 16, (1, T), generator=g)

    def frames(vocab):
        return torch.stack([torch.tensor([vocab.encode(said)]), pos, pos.flip(-1)], 1)

    frames_old, frames_new = frames(old), frames(new)
    assert not torch.equal(frames_old[:, 0], frames_new[:, 0])  # the same phones under other ids
    voice = torch.randn(1, base.latent_dim)
    assert torch.allclose(moved.decode(codes, frames_new, voice), phoned.decode(codes, frames_old, voice), atol=1e-5)


def test_a_decoder_told_the_voice(codec_dir, tmp_path):
    """``--voice``: the voice's vector (a prompt's mean code vector) shifts every frame; the projection starts at
    zero (the phone decoder it is made from), no voice is the zero vector, streaming still equals offline."""
    base = load_codec(codec_dir)
    plain = with_phone_decoder(base, PHONES)
    voiced = with_phone_decoder(plain, PHONES, voice=True)
    assert decoder_voice(voiced) and not decoder_voice(plain) and not decoder_voice(base)
    wav = torch.randn(1, 1, SR // 2) * 0.3
    codes = base.encode(wav, 2)
    frames = _frames(voiced.decoder.phones, codes.shape[-1], 0)
    a, b = voice_vector(base, codes), voice_vector(base, base.encode(torch.randn(1, 1, SR // 2), 2))
    assert a.shape == (1, base.latent_dim)
    assert torch.allclose(voiced.decode(codes, frames, a), plain.decode(codes, frames), atol=1e-6)
    randomise(voiced.decoder.voice_proj, 5)
    heard = voiced.decode(codes, frames, a)
    assert not torch.allclose(heard, voiced.decode(codes, frames, b), atol=1e-4)
    assert torch.equal(voiced.decode(codes, frames), voiced.decode(codes, frames, torch.zeros_like(a)))
    with StreamingDecoder(voiced) as dec:
        outs = [dec.push(codes[..., :7], frames[..., :7], a), dec.push(codes[..., 7:], frames[..., 7:], a), dec.flush()]
    assert (torch.cat(outs, -1) - heard).abs().max() < 1e-4
    with pytest.raises(InvalidArgumentError, match="takes no voice"):
        plain.decode(codes, frames, a)
    save_decoder(tmp_path / "vd", voiced, n_q=2)
    loaded = load_decoder(tmp_path / "vd", base, n_q=2)
    assert decoder_voice(loaded) and torch.allclose(loaded.decode(codes, frames, a), heard, atol=2e-2)


@pytest.fixture(scope="module")
def aligned_speech(tmp_path_factory):
    from tokenwave.data.align import align_dataset
    from tokenwave.data.speech import build_speech

    data = build_speech(tmp_path_factory.mktemp("sp") / "speech", minutes=0.4, seed=0)
    align_dataset(data)
    return data


def test_phone_decoder_recipe_gives_each_segment_its_clips_phones(aligned_speech, codec_dir, tmp_path):
    """Training segments start on frame boundaries and each frame is given the phone its clip's alignment says
    sounds at the frame's centre; dropped items and unaligned clips get "no phone known"."""
    from tokenwave.data.align import read_alignments
    from tokenwave.train.codec import CodecTrainConfig
    from tokenwave.train.decoder import DecoderRecipe
    from tokenwave.train.trainer import DistInfo

    al = read_alignments(aligned_speech / "alignments.jsonl")
    tcfg = CodecTrainConfig(segment_seconds=0.5, batch_size=6, lr=1e-3, total_steps=4, warmup=1, val_clips=2)
    rec = DecoderRecipe(str(codec_dir), [str(aligned_speech)], 2, tcfg, DistInfo(),
                        alignments=[str(aligned_speech / "alignments.jsonl")])
    hop, vocab = rec.codec.hop, rec.decoder.phones
    assert set(vocab.symbols[2:]) == {p for a in al.values() for p in a["phones"]}
    wav, where = rec.train_data.draw(6, hop)
    frames = rec._phones(where, 10)
    assert frames.shape == (6, 3, 10) and all(start % hop == 0 for _, start in where)
    for b, (clip, start) in enumerate(where):
        if clip not in al:
            assert not frames[b].any()
            continue
        starts = np.asarray(al[clip]["starts"])
        for j in range(10):
            centre = (start // hop + j + 0.5) / rec.codec.frame_rate
            phone = al[clip]["phones"][max(0, int(np.searchsorted(starts, centre, side="right")) - 1)]
            assert vocab.symbols[int(frames[b, 0, j])] == phone
    dropped = rec._phones(where, 10, drop=np.ones(6, dtype=bool))
    assert not dropped.any()
    losses = [rec.train_step(step)["loss"] for step in range(4)]
    assert all(np.isfinite(losses))
    rec.export(tmp_path / "model", rec.validate())
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["phones"] == vocab.symbols[2:] and cfg["phone_dropout"] == 0.1
    assert isinstance(load_decoder(tmp_path / "model", load_codec(codec_dir), 2).decoder, PhoneDecoder)
    # --voice: each item is told the voice of another clip of its speaker; dropped items none
    voiced = DecoderRecipe(str(codec_dir), [str(aligned_speech)], 2, tcfg, DistInfo(), voice=True,
                           alignments=[str(aligned_speech / "alignments.jsonl")])
    assert decoder_voice(voiced.codec)
    _, where = voiced.train_data.draw(6, hop)
    vs = voiced._voices(where, np.zeros(6, dtype=bool))
    for b, (clip, _) in enumerate(where):
        match = [i for i, v in voiced.voices.items() if torch.equal(v, vs[b])]
        assert match and all(voiced.speaker[i] == voiced.speaker[clip] for i in match)
        assert clip not in match or len(voiced.same_speaker[voiced.speaker[clip]]) == 1
    assert not voiced._voices(where, np.ones(6, dtype=bool)).any()
    assert np.isfinite(voiced.train_step(0)["loss"])
    with pytest.raises(InvalidArgumentError, match="pass --alignments with --voice"):
        DecoderRecipe(str(codec_dir), [str(aligned_speech)], 2, tcfg, DistInfo(), voice=True)
    # bad requests: a share outside 0..1; alignments of other clips
    with pytest.raises(InvalidArgumentError, match="phone_dropout must be within 0..1"):
        DecoderRecipe(str(codec_dir), [str(aligned_speech)], 2, tcfg, DistInfo(), phone_dropout=1.5,
                      alignments=[str(aligned_speech / "alignments.jsonl")])
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"id": "not-a-clip", "phones": ["_"], "starts": [0.0], "end": 1.0}) + "\n")
    with pytest.raises(InvalidArgumentError, match="none of the training clips"):
        DecoderRecipe(str(codec_dir), [str(aligned_speech)], 2, tcfg, DistInfo(), alignments=[str(other)])


def test_tts_gives_a_phone_decoder_the_plans_phones(codec_dir, tmp_path):
    """An aligned TTS model's phone-informed decoder hears each sentence's espeak-ng timing: the sound changes with
    the phone embeddings, a stream still equals the file, and the resynthesis floor takes a clip's alignment."""
    codec = load_codec(codec_dir)
    make_tts_model(tmp_path / "tts", codec, max_frames=120, aligned=True)
    text = "The cat sat on the mat. Dogs bark."
    plain = TTS(tmp_path / "tts", codec).synthesize(text, "alice", Sampling(seed=3), watermark=False).wav
    phoned = with_phone_decoder(codec, PHONES[:-3])  # its own vocabulary, not the model's
    save_decoder(tmp_path / "tts" / "decoder", phoned, n_q=2)
    tts = TTS(tmp_path / "tts", codec)
    (plan, _) = tts.plan(["The cat sat on the mat.", "Dogs bark."])
    assert plan.decoder_frames.shape == (3, plan.frames)
    assert [tts.decoder_phones.symbols[i] for i in plan.decoder_frames[0]] == \
        [p if p in PHONES[:-3] else "<unk>" for p in (tts.phones.symbols[i] for i in plan.aligned[0])]
    assert np.allclose(tts.synthesize(text, "alice", Sampling(seed=3), watermark=False).wav, plain, atol=1e-2)
    for m in (phoned.decoder.phone_embed, phoned.decoder.pos_embed, phoned.decoder.left_embed):
        randomise(m, 4)
    save_decoder(tmp_path / "tts" / "decoder", phoned, n_q=2)
    tts = TTS(tmp_path / "tts", codec)
    res = tts.synthesize(text, "alice", Sampling(seed=3), watermark=False).wav
    assert len(res) == len(plain) and not np.allclose(res, plain, atol=1e-2)
    assert np.array_equal(np.concatenate(list(tts.stream(text, "alice", Sampling(seed=3)))), res)
    # decoder=False: the codec's own decoder despite the folder's; decoder=DIR: that one
    own = TTS(tmp_path / "tts", codec, decoder=False)
    assert own.codec is codec and own.decoder_phones is None
    assert np.array_equal(own.synthesize(text, "alice", Sampling(seed=3), watermark=False).wav, plain)
    save_decoder(tmp_path / "elsewhere", phoned, n_q=2)
    assert np.array_equal(TTS(tmp_path / "tts", codec, decoder=tmp_path / "elsewhere").synthesize(
        text, "alice", Sampling(seed=3), watermark=False).wav, res)
    # a decoder also told the voice: it gets the prompt's voice vector (so the sound changes with its projection)
    voiced = with_phone_decoder(phoned, PHONES[:-3], voice=True)
    randomise(voiced.decoder.voice_proj, 6)
    save_decoder(tmp_path / "voiced", voiced, n_q=2)
    told = TTS(tmp_path / "tts", codec, decoder=tmp_path / "voiced")
    assert told.decoder_voice and not tts.decoder_voice
    spoken = told.synthesize(text, "alice", Sampling(seed=3), watermark=False).wav
    assert len(spoken) == len(res) and not np.allclose(spoken, res, atol=1e-2)
    assert np.array_equal(np.concatenate(list(told.stream(text, "alice", Sampling(seed=3)))), spoken)
    wav = (0.3 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)).astype(np.float32)
    timing = {"phones": ["_", "a", "s", "_"], "starts": [0.0, 0.2, 0.5, 0.8], "end": 1.0}
    with_phones, alone = tts.resynthesize(wav, timing), tts.resynthesize(wav)
    assert len(with_phones) == len(alone) == len(wav) and not np.allclose(with_phones, alone, atol=1e-3)
