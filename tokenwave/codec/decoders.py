"""Decoders fine-tuned for one domain and bitrate on a codec's frozen codes (``tokenwave train decoder``).

The encoder and quantizer stay as they are, so every code a generator was trained on means the same thing; only
the decoder that turns codes back into sound changes (the approach Vocos and multi-band diffusion take for
EnCodec's tokens). A decoder folder holds ``model.safetensors`` (the decoder's weights), ``config.json`` (the
codec's config, the number of codebooks it decodes, and a fingerprint of the encoder and quantizer it was trained
on) and a ``MODEL.md``. :func:`load_decoder` refuses a decoder trained on another codec's codes.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from tokenwave.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tokenwave.codec.config import CodecConfig
from tokenwave.codec.model import Codec
from tokenwave.errors import InvalidArgumentError

KIND = "codec-decoder"


def codes_fingerprint(codec: Codec) -> str:
    """A hash of everything that decides the codes (encoder and quantizer weights and buffers)."""
    h = hashlib.sha256()
    for part in (codec.encoder, codec.quantizer):
        for name, t in sorted(part.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def save_decoder(folder: str | os.PathLike, codec: Codec, n_q: int, extra: dict | None = None, half: bool = True) -> Path:
    """Write ``codec``'s decoder as a decoder checkpoint for codes of ``n_q`` codebooks (0: continuous latents, a
    flow generator's output); weights in float16 by default: they load as float32, and the difference is far below
    the decoder's own error."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in codec.decoder.state_dict().items()}
    return save_checkpoint(folder, state, codec.cfg, KIND,
                           {"n_q": n_q, "codes_fingerprint": codes_fingerprint(codec), **(extra or {})})


def _input(n_q: int) -> str:
    return "continuous latents" if n_q == 0 else f"{n_q}-codebook codes"


def load_decoder(folder: str | os.PathLike, codec, n_q: int | None = None) -> Codec:
    """``codec`` with its decoder replaced by the one in ``folder`` (a new object: the encoder and quantizer are
    shared, ``codec`` itself is unchanged). ``n_q``: what it will be given (codebooks, 0 for latents); a decoder
    trained on another input is refused."""
    if not isinstance(codec, Codec):
        raise InvalidArgumentError(f"the decoder in {folder} needs a tokenwave codec, got {type(codec).__name__}",
                                   "use the codec the decoder was trained on (its config.json names it)")
    state, cfg, raw = load_checkpoint(folder, CodecConfig, KIND)
    if raw.get("codes_fingerprint") != codes_fingerprint(codec) or cfg != codec.cfg:
        raise CheckpointError(f"the decoder in {folder} was trained on another codec's codes",
                              f"load it with the codec it was trained on ({raw.get('codec', 'see its config.json')})")
    if n_q is not None and int(raw.get("n_q", -1)) != n_q:
        raise CheckpointError(f"the decoder in {folder} was trained on {_input(int(raw.get('n_q', -1)))}, "
                              f"not the {_input(n_q)} it would be given here",
                              "use a decoder trained for this input (`tokenwave train decoder --kbps ...` or --latents)")
    out = Codec(codec.cfg)
    out.encoder, out.quantizer = codec.encoder, codec.quantizer
    out.decoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    device = next(codec.parameters()).device
    return out.to(device).eval()


def decoder_n_q(folder: str | os.PathLike) -> int:
    """The number of codebooks the decoder in ``folder`` was trained to decode (0: continuous latents)."""
    return int(load_checkpoint(folder, CodecConfig, KIND)[2]["n_q"])


__all__ = ["KIND", "codes_fingerprint", "decoder_n_q", "load_decoder", "save_decoder"]
