"""HF backends on tiny random models saved with save_pretrained (no hub access); real weights load the same way."""
import pytest
import torch

transformers = pytest.importorskip("transformers")

from tokenwave.codec import UnknownModelError, load_codec  # noqa: E402
from tokenwave.codec.base import AudioCodec  # noqa: E402
from tokenwave.codec.hf import HFCodec, HFCodecError  # noqa: E402
from tokenwave.errors import InvalidArgumentError  # noqa: E402

TINY = {
    "encodec": lambda: transformers.EncodecModel(transformers.EncodecConfig(
        hidden_size=32, num_filters=4, num_residual_layers=1, codebook_size=1024, codebook_dim=32, num_lstm_layers=1,
        target_bandwidths=[1.5, 3.0, 6.0], upsampling_ratios=[8, 5, 4, 2], sampling_rate=24000)),
    "dac": lambda: transformers.DacModel(transformers.DacConfig(
        encoder_hidden_size=8, decoder_hidden_size=32, n_codebooks=4, codebook_size=64, codebook_dim=4, hidden_size=32,
        downsampling_ratios=[2, 4, 5, 8], upsampling_ratios=[8, 5, 4, 2], sampling_rate=24000, hop_length=320)),
    "mimi": lambda: transformers.MimiModel(transformers.MimiConfig(
        hidden_size=32, num_filters=4, num_residual_layers=1, codebook_size=64, codebook_dim=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, head_dim=16, intermediate_size=64, num_quantizers=8,
        num_semantic_quantizers=1, sliding_window=50, upsample_groups=32, vector_quantization_hidden_dimension=32)),
}


@pytest.fixture(scope="module", params=sorted(TINY))
def hf_folder(request, tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp(request.param)
    TINY[request.param]().save_pretrained(folder)
    return request.param, folder


def test_hf_codec_interface(hf_folder):
    kind, folder = hf_folder
    codec = load_codec(folder)
    assert isinstance(codec, HFCodec) and codec.kind == kind
    assert isinstance(codec, AudioCodec)  # every member of the written contract is there
    wav = torch.randn(1, 1, codec.sample_rate) * 0.1
    codes = codec.encode(wav)
    frames = -(-wav.shape[-1] // codec.hop)
    assert codes.dtype == torch.long and codes.shape[0] == 1 and abs(codes.shape[-1] - frames) <= 1
    assert codes.shape[1] == codec.n_q and int(codes.max()) < codec.codebook_size
    assert torch.equal(codec.encode(wav), codes)  # deterministic
    out = codec.decode(codes)
    assert out.dim() == 3 and out.shape[:2] == (1, 1) and abs(out.shape[-1] - wav.shape[-1]) <= codec.hop
    assert torch.isfinite(out).all()
    z = codec.encode_latents(wav)
    assert z.dim() == 3 and z.shape[1] == codec.latent_dim and abs(z.shape[-1] - codes.shape[-1]) <= 1
    assert codec.decode_latents(z).shape[-1] == out.shape[-1]
    assert codec.reconstruct(wav).shape == wav.shape
    assert codec.bitrate(codec.n_q) == pytest.approx(codec.n_q * codec.frame_rate * (codec.codebook_size - 1).bit_length())


def test_hf_codec_fewer_codebooks(hf_folder):
    kind, folder = hf_folder
    codec = load_codec(folder)
    wav = torch.randn(1, 1, codec.sample_rate) * 0.1
    n = 4 if kind == "encodec" else 2  # EnCodec only has its target bandwidths: 4 codebooks = 3 kbps here
    codes = codec.encode(wav, n)
    assert codes.shape[1] == n
    assert codec.decode(codes).shape[-1] == codec.decode(codec.encode(wav)).shape[-1]
    if kind == "encodec":
        with pytest.raises(InvalidArgumentError):
            codec.encode(wav, 3)


def test_not_a_codec_folder(tmp_path):
    with pytest.raises(UnknownModelError):
        load_codec(tmp_path / "missing")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(HFCodecError):
        HFCodec.load(tmp_path)
