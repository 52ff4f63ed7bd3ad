"""Decoders fine-tuned for one domain and bitrate on a codec's frozen codes (``tokenwave train decoder``).

The encoder and quantizer stay as they are, so every code a generator was trained on means the same thing; only
the decoder that turns codes back into sound changes (the approach Vocos and multi-band diffusion take for
EnCodec's tokens). A decoder folder holds ``model.safetensors`` (the decoder's weights), ``config.json`` (the
codec's config, the number of codebooks it decodes, and a fingerprint of the encoder and quantizer it was trained
on) and a ``MODEL.md``. :func:`load_decoder` refuses a decoder trained on another codec's codes.

A speech decoder may also be **phone-informed** (:class:`PhoneDecoder`, ``tokenwave train decoder --alignments``):
besides the codes it is told, frame by frame, which phone sounds (the TTS model's own aligned timing at inference,
the engines' phone timings in training). Low-bitrate codes blur formants; the phone tells the decoder which
vowel or consonant it is rendering. Without timings it decodes like a plain decoder (it is trained with the
phones dropped from some items).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from tokenwave.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tokenwave.codec.config import CodecConfig
from tokenwave.codec.model import Codec, Decoder
from tokenwave.conditioning.speech import MAX_POS, PhonemeVocab
from tokenwave.errors import InvalidArgumentError

KIND = "codec-decoder"


class PhoneDecoder(Decoder):
    """A codec decoder that is also given each frame's phone: ``frames LongTensor [B, 3, T]`` (phone id, frames
    from the phone's start, frames to its end; :func:`tokenwave.conditioning.speech.frame_inputs` with
    :attr:`phones`), embedded and added after the first layer. The embeddings start at zero, so a fresh one decodes
    exactly like the decoder it is made from. ``frames`` None: decoded from the codes alone (every frame given the
    "no phone known" input: padding id, place 0, which training gives the items whose phones it drops)."""

    def __init__(self, cfg: CodecConfig, phones: list[str], voice: bool = False) -> None:
        super().__init__(cfg)
        self.phones = PhonemeVocab(phones)
        self.phone_embed = nn.Embedding(len(self.phones), cfg.dec_dim)
        self.pos_embed = nn.Embedding(MAX_POS, cfg.dec_dim)
        self.left_embed = nn.Embedding(MAX_POS, cfg.dec_dim)
        for m in (self.phone_embed, self.pos_embed, self.left_embed):
            nn.init.zeros_(m.weight)
        # ``voice``: also told the voice's timbre, the mean code vector of a prompt of it (:func:`voice_vector`)
        self.voice_proj = nn.Linear(cfg.latent_dim, cfg.dec_dim) if voice else None
        if self.voice_proj is not None:
            nn.init.zeros_(self.voice_proj.weight)
            nn.init.zeros_(self.voice_proj.bias)

    def frame_input(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [B, 3, T]`` -> ``[B, dec_dim, T]``."""
        return (self.phone_embed(frames[:, 0]) + self.pos_embed(frames[:, 1]) + self.left_embed(frames[:, 2])).transpose(1, 2)

    def forward(self, z: torch.Tensor, frames: torch.Tensor | None = None, voice: torch.Tensor | None = None) -> torch.Tensor:
        """``voice`` ``[B, latent_dim]`` (:func:`voice_vector`), for a decoder trained with voices; None: unknown."""
        if z.shape[-1] == 0:
            return z.new_zeros(z.shape[0], 1, 0)
        if frames is None:
            frames = torch.zeros(z.shape[0], 3, z.shape[-1], dtype=torch.long, device=z.device)
        elif frames.shape[0] != z.shape[0] or frames.shape[-1] != z.shape[-1] or frames.shape[1] != 3:
            raise InvalidArgumentError(f"phone timings of shape {tuple(frames.shape)} do not fit codes of "
                                       f"{z.shape[-1]} frames", "give one [3, T] column per code frame (frame_inputs)")
        add = self.frame_input(frames.to(z.device))
        if self.voice_proj is not None:
            v = z.new_zeros(z.shape[0], z.shape[1]) if voice is None else voice.to(z.device).expand(z.shape[0], -1)
            add = add + self.voice_proj(v)[:, :, None]
        elif voice is not None:
            raise InvalidArgumentError("this decoder takes no voice", "decode without one, or train one with --voice")
        return self.istft(self.head(self.net(z, add)))


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
    dec = codec.decoder
    phones = {"phones": dec.phones.symbols[2:], "voice": dec.voice_proj is not None} if isinstance(dec, PhoneDecoder) else {}
    return save_checkpoint(folder, state, codec.cfg, KIND,
                           {"n_q": n_q, "codes_fingerprint": codes_fingerprint(codec), **phones, **(extra or {})})


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
    if raw.get("phones"):
        out.decoder = PhoneDecoder(codec.cfg, raw["phones"], voice=bool(raw.get("voice")))
    out.decoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    device = next(codec.parameters()).device
    return out.to(device).eval()


def decoder_n_q(folder: str | os.PathLike) -> int:
    """The number of codebooks the decoder in ``folder`` was trained to decode (0: continuous latents)."""
    return int(load_checkpoint(folder, CodecConfig, KIND)[2]["n_q"])


def with_phone_decoder(codec: Codec, phones: list[str], voice: bool = False) -> Codec:
    """``codec`` (a new object sharing encoder and quantizer) whose decoder is a :class:`PhoneDecoder` made from
    ``codec``'s decoder (plain or phone-informed): the same weights, zero for what it lacks (phone embeddings, the
    voice projection), so the same output until it is trained. A phone-informed decoder's phone embeddings follow
    their symbols into ``phones``; phones it lacks start at zero."""
    out = Codec(codec.cfg)
    out.encoder, out.quantizer = codec.encoder, codec.quantizer
    out.decoder = PhoneDecoder(codec.cfg, phones, voice)
    wanted = out.decoder.state_dict().keys()
    state = {k: v for k, v in codec.decoder.state_dict().items() if k in wanted}
    old = decoder_phones(codec)
    if old is not None and old.symbols != out.decoder.phones.symbols:
        # another phone set (new data): each phone keeps its learnt embedding by symbol, a new one starts at zero
        table = torch.zeros_like(out.decoder.phone_embed.weight)
        for i, sym in enumerate(out.decoder.phones.symbols):
            if sym in old.index:
                table[i] = state["phone_embed.weight"][old.index[sym]]
        state["phone_embed.weight"] = table
    missing, _ = out.decoder.load_state_dict(state, strict=False)
    assert all(k.split(".")[0] in ("phone_embed", "pos_embed", "left_embed", "voice_proj") for k in missing)
    return out.to(next(codec.parameters()).device)


def voice_vector(codec: Codec, codes: torch.Tensor) -> torch.Tensor:
    """A voice's timbre as a phone-informed decoder with voices takes it: the mean over frames of the code vectors
    of a prompt of it, ``codes [B, K, T] -> [B, latent_dim]``."""
    return codec.quantizer.decode(codes).mean(-1)


def decoder_voice(codec) -> bool:
    """Whether ``codec``'s decoder is told the voice (a phone-informed decoder trained with ``--voice``)."""
    dec = getattr(codec, "decoder", None)
    return isinstance(dec, PhoneDecoder) and dec.voice_proj is not None


def decoder_phones(codec) -> PhonemeVocab | None:
    """The phone vocabulary of ``codec``'s decoder when it is phone-informed, else None."""
    dec = getattr(codec, "decoder", None)
    return dec.phones if isinstance(dec, PhoneDecoder) else None


__all__ = ["KIND", "PhoneDecoder", "codes_fingerprint", "decoder_n_q", "decoder_phones", "decoder_voice",
           "load_decoder", "save_decoder", "voice_vector", "with_phone_decoder"]
