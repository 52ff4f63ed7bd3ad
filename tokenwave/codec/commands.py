"""``tokenwave codec encode|decode|roundtrip|tokenize|latents``: the codec on files and datasets, registered on the
main CLI app."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from tokenwave.codec import load_codec

codec_app = typer.Typer(help="Encode audio to codes (.twc) or latents, decode them, or measure a round trip.", no_args_is_help=True)
console = Console()
MODEL_HELP = "Codec: a tokenwave checkpoint folder or a local HF EnCodec/DAC/Mimi folder (default: checkpoints/codec)."
DECODER_HELP = "A decoder fine-tuned on this codec's codes (`tokenwave train decoder`), e.g. checkpoints/tts/decoder."


def _with_decoder(codec, decoder: Optional[Path], n_q: int):
    """``codec``, or with ``decoder`` a copy decoding with that fine-tuned decoder (checked for ``n_q`` codebooks)."""
    if decoder is None:
        return codec
    from tokenwave.codec.decoders import load_decoder  # lazy: keeps --help free of torch

    return load_decoder(decoder, codec, n_q=n_q)


def _load_for_codec(model: Optional[Path], path: Path, kbps: Optional[float], decoder: Optional[Path] = None):
    """Codec folder, audio file, bitrate -> (codec, n_q, wav FloatTensor[1, 1, N] at the codec's rate)."""
    import torch  # lazy: keeps --help free of torch

    from tokenwave.audio import load_audio  # lazy: keeps --help fast (numpy, soundfile)

    codec = load_codec(model)
    n_q = codec.n_q_for_kbps(kbps) if kbps else codec.n_q
    codec = _with_decoder(codec, decoder, n_q)
    wav, sr = load_audio(path, codec.sample_rate)
    return codec, n_q, torch.from_numpy(wav)[None, None]


@codec_app.command("encode")
def codec_encode(
    src: Path = typer.Argument(..., help="Audio file (any common format and rate; resampled to the codec's rate)."),
    dst: Path = typer.Argument(..., help="Output .twc code file."),
    kbps: Optional[float] = typer.Option(None, help="Bitrate: 1.5, 3 or 6 kbps with the default codec (default: highest)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
) -> None:
    """Encode audio into a .twc code file."""
    from tokenwave.codec.twc import write_twc  # lazy: keeps --help free of torch

    codec, n_q, wav = _load_for_codec(model, src, kbps)
    codes = codec.encode(wav, n_q)
    write_twc(dst, codes, codec.sample_rate, codec.hop, wav.shape[-1], codec.codebook_size)
    console.print(f"{dst}: {codes.shape[1]} codebooks x {codes.shape[2]} frames, {codec.bitrate(n_q) / 1000:g} kbps, "
                  f"{dst.stat().st_size} bytes")


@codec_app.command("decode")
def codec_decode(
    src: Path = typer.Argument(..., help="A .twc file written by `tokenwave codec encode`."),
    dst: Path = typer.Argument(..., help="Output audio file (.wav, .flac or .ogg)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    decoder: Optional[Path] = typer.Option(None, help=DECODER_HELP),
) -> None:
    """Decode a .twc code file back to audio."""
    from tokenwave.audio import save_audio  # lazy: keeps --help fast (numpy, soundfile)
    from tokenwave.codec.twc import TwcFormatError, read_twc  # lazy: keeps --help free of torch

    twc = read_twc(src)
    codec = _with_decoder(load_codec(model), decoder, twc.codes.shape[0])
    if twc.sample_rate != codec.sample_rate or twc.hop != codec.hop:
        raise TwcFormatError(f"{src} was made by a {twc.sample_rate} Hz / hop {twc.hop} codec; this one is "
                             f"{codec.sample_rate} Hz / hop {codec.hop}", "decode with the codec that encoded it (--model)")
    wav = codec.decode(twc.codes[None])[0, 0, : twc.num_samples]
    save_audio(dst, wav.numpy(), codec.sample_rate)
    console.print(f"{dst}: {len(wav) / codec.sample_rate:.2f} s at {codec.sample_rate} Hz")


@codec_app.command("roundtrip")
def codec_roundtrip(
    src: Path = typer.Argument(..., help="Audio file to encode and decode."),
    kbps: Optional[float] = typer.Option(None, help="Bitrate (default: highest)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the decoded audio here."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    decoder: Optional[Path] = typer.Option(None, help=DECODER_HELP),
) -> None:
    """Encode and decode a file; print mel distance and SI-SDR against the original."""
    from tokenwave.audio import save_audio  # lazy: keeps --help fast (numpy, soundfile)
    from tokenwave.codec.losses import mel_distance, si_sdr  # lazy: keeps --help free of torch

    codec, n_q, wav = _load_for_codec(model, src, kbps, decoder)
    rec = codec.reconstruct(wav, n_q)
    result = {"file": str(src), "kbps": codec.bitrate(n_q) / 1000, "codebooks": n_q,
              "mel_distance": round(mel_distance(rec, wav, codec.sample_rate), 4),
              "si_sdr_db": round(float(si_sdr(rec, wav)[0]), 2)}
    if out:
        save_audio(out, rec[0, 0].numpy(), codec.sample_rate)
        result["out"] = str(out)
    typer.echo(json.dumps(result))


@codec_app.command("tokenize")
def codec_tokenize(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s); repeat --data for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Tokens folder to write."),
    kbps: Optional[float] = typer.Option(None, help="Bitrate (default: highest)."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing tokens folder."),
) -> None:
    """Encode every clip of the datasets once, so generators train on codes."""
    from tokenwave.data.tokens import tokenize  # lazy: keeps --help free of torch

    codec = load_codec(model)
    n_q = codec.n_q_for_kbps(kbps) if kbps else codec.n_q
    path = tokenize([str(d) for d in data], out, codec, n_q, codec_name=str(model or "checkpoints/codec"), overwrite=overwrite)
    console.print(f"tokens: {path}")


@codec_app.command("latents")
def codec_latents(
    data: list[Path] = typer.Option(..., "--data", help="Dataset folder(s); repeat --data for several."),
    out: Path = typer.Option(..., "--out", "-o", help="Latents folder to write."),
    model: Optional[Path] = typer.Option(None, help=MODEL_HELP),
    overwrite: bool = typer.Option(False, help="Replace an existing latents folder."),
) -> None:
    """Encode every clip of the datasets once to continuous latents (75 Hz), so the flow generator trains on them."""
    from tokenwave.data.tokens import extract_latents  # lazy: keeps --help free of torch

    codec = load_codec(model)
    path = extract_latents([str(d) for d in data], out, codec, codec_name=str(model or "checkpoints/codec"), overwrite=overwrite)
    console.print(f"latents: {path}")


def register(app: typer.Typer) -> None:
    """Add ``tokenwave codec encode|decode|roundtrip|tokenize|latents``."""
    app.add_typer(codec_app, name="codec")
