import struct

import pytest
import torch

from tokenwave.codec import AudioCodec, Codec, load_codec
from tokenwave.codec.losses import mel_distance, si_sdr
from tokenwave.codec.streaming import StreamingDecoder, StreamingEncoder
from tokenwave.codec.twc import HEADER, TwcFormatError, decode_twc, encode_twc, read_twc, write_twc
from tokenwave.errors import InvalidArgumentError
from tokenwave.train.codec import PRESETS


@pytest.fixture(scope="module")
def codec():
    import random

    torch.manual_seed(0)
    random.seed(0)  # training passes draw the quantizer bypass from Python's RNG
    c = Codec(PRESETS["tiny"])
    c.train()
    c(torch.randn(4, 1, 24000) * 0.1)  # k-means init of the codebooks
    for _ in range(8):
        c(torch.randn(4, 1, 24000) * 0.1)
    return c.eval()


def test_shapes_rates_and_bitrate():
    c = Codec()  # default config: the DESIGN's operating points
    assert c.sample_rate == 24000 and c.frame_rate == 75 and c.hop == 320 and c.n_q == 8
    assert [c.bitrate(k) for k in (2, 4, 8)] == [1500, 3000, 6000]
    assert [c.n_q_for_kbps(k) for k in (1.5, 3, 6)] == [2, 4, 8]
    with pytest.raises(InvalidArgumentError):
        c.n_q_for_kbps(5)
    assert isinstance(c, AudioCodec)  # every member of the written contract is there


def test_encode_decode_shapes_and_determinism(codec):
    wav = torch.randn(2, 1, 24000 + 77) * 0.1
    codes = codec.encode(wav)
    assert codes.dtype == torch.long and codes.shape == (2, codec.n_q, 76)
    assert codes.min() >= 0 and codes.max() < codec.codebook_size
    out = codec.decode(codes)
    assert out.shape == (2, 1, 76 * 320)
    assert torch.equal(codec.encode(wav), codes)
    assert torch.equal(codec.decode(codes), out)
    z = codec.encode_latents(wav)
    assert z.shape == (2, codec.latent_dim, 76)
    assert codec.decode_latents(z).shape == out.shape
    rec = codec.reconstruct(wav)
    assert rec.shape == wav.shape


def test_fewer_codebooks_are_prefixes_and_worse(codec):
    wav = torch.randn(1, 1, 24000) * 0.1
    full = codec.encode(wav)
    for k in range(1, codec.n_q):
        assert torch.equal(codec.encode(wav, k), full[:, :k])
    # quantisation error of the latents shrinks monotonically as codebooks are added
    with torch.no_grad():
        z = codec.encode_latents(wav)
    errs = [float((codec.codes_to_latents(full[:, :k]) - z).pow(2).mean()) for k in range(1, codec.n_q + 1)]
    assert all(b <= a + 1e-7 for a, b in zip(errs, errs[1:]))
    for k in (1, 2, 4):
        out = codec.decode(full[:, :k])
        assert torch.isfinite(out).all() and out.shape[-1] == full.shape[-1] * 320


def test_streaming_equals_offline(codec):
    torch.manual_seed(1)
    wav = torch.randn(1, 1, 12345) * 0.1
    codes = codec.encode(wav)
    with StreamingEncoder(codec) as enc:
        parts, i = [], 0
        for n in [1, 319, 320, 321, 4000, 999, 6385]:
            parts.append(enc.push(wav[..., i: i + n]))
            i += n
        parts.append(enc.flush())
    assert torch.equal(torch.cat(parts, -1), codes)
    offline = codec.decode(codes)
    with StreamingDecoder(codec) as dec:
        outs, t = [], 0
        for n in [1, 1, 2, 3, 5, 8, 13, 6]:
            outs.append(dec.push(codes[..., t: t + n]))
            t += n
        outs.append(dec.flush())
    streamed = torch.cat(outs, -1)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max() < 1e-4
    # latency: after k frames, all but the ISTFT overlap is out
    with StreamingDecoder(codec) as dec:
        got = dec.push(codes[..., :10]).shape[-1]
    assert got == 10 * 320 - (codec.cfg.n_fft - codec.hop)


def test_twc_roundtrip_and_corruption(tmp_path, codec):
    codes = codec.encode(torch.randn(1, 1, 9000) * 0.1)
    path = write_twc(tmp_path / "a.twc", codes, 24000, 320, 9000, codec.codebook_size)
    back = read_twc(path)
    assert torch.equal(back.codes, codes[0]) and back.num_samples == 9000 and back.sample_rate == 24000
    data = path.read_bytes()
    assert len(data) == HEADER.size + (codes.shape[1] * codes.shape[2] * 6 + 7) // 8 + 4  # 64 entries: 6 bits
    with pytest.raises(TwcFormatError, match="truncated"):
        decode_twc(data[:-5])
    with pytest.raises(TwcFormatError, match="too short"):
        decode_twc(data[:10])
    flipped = bytearray(data)
    flipped[HEADER.size + 3] ^= 0x10
    with pytest.raises(TwcFormatError, match="checksum"):
        decode_twc(bytes(flipped))
    with pytest.raises(TwcFormatError, match="magic"):
        decode_twc(b"RIFF" + data[4:])
    newer = bytearray(data)
    struct.pack_into("<H", newer, 4, 9)
    with pytest.raises(TwcFormatError, match="version"):
        decode_twc(bytes(newer))
    full = torch.randint(0, 1024, (1, 8, 50))
    assert torch.equal(decode_twc(encode_twc(full, 24000, 320, 16000, 1024)).codes, full[0])


def test_save_load_roundtrip(tmp_path, codec):
    codec.save(tmp_path / "ck")
    again = load_codec(tmp_path / "ck")
    wav = torch.randn(1, 1, 5000) * 0.1
    assert torch.equal(again.encode(wav), codec.encode(wav))


def test_bad_inputs(codec):
    with pytest.raises(InvalidArgumentError):
        codec.encode(torch.zeros(24000))
    with pytest.raises(InvalidArgumentError):
        codec.decode(torch.full((1, 2, 5), 10_000))
    with pytest.raises(InvalidArgumentError):
        codec.encode(torch.zeros(1, 1, 320), n_q=99)


def test_metrics_known_answers():
    torch.manual_seed(0)
    ref = torch.randn(1, 1, 24000)
    assert float(si_sdr(ref, ref)) > 60
    noise = torch.randn(1, 1, 24000)
    noise = noise / noise.norm() * ref.norm() / 10 ** (10 / 20)  # 10 dB SNR
    assert abs(float(si_sdr(ref + noise, ref)) - 10) < 0.5
    assert float(si_sdr(3.0 * ref, ref)) > 60  # scale-invariant
    assert mel_distance(ref, ref, 24000) == 0
    assert mel_distance(ref + noise, ref, 24000) < mel_distance(ref + 3 * noise, ref, 24000)
