"""Decoder fine-tuning recipe: a codec's decoder trained further on one domain at one bitrate (or on the continuous
latents a flow generator makes), the encoder and quantizer frozen, so the codes and latents, and every generator
trained on them, stay valid. The codec recipe's reconstruction losses; no adversarial term.

With ``alignments`` (a speech set's ``alignments.jsonl``, ``tokenwave data align``) the decoder is phone-informed
(:class:`tokenwave.codec.decoders.PhoneDecoder`): every frame is also given the phone sounding there; a share of
items (``phone_dropout``) are decoded without, so it still decodes codes alone."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tokenwave import SAMPLE_RATE
from tokenwave.codec import load_codec
from tokenwave.codec.decoders import load_decoder, save_decoder, voice_vector, with_phone_decoder
from tokenwave.codec.losses import mel_distance, si_sdr
from tokenwave.codec.model import Codec
from tokenwave.conditioning.speech import PROMPT_SECONDS, alignment_inputs
from tokenwave.data.align import read_alignments
from tokenwave.data.loader import SegmentSampler
from tokenwave.data.manifest import read_manifest
from tokenwave.errors import InvalidArgumentError
from tokenwave.paths import shown_path
from tokenwave.progress import progress_bar
from tokenwave.train.codec import CodecTrainConfig, reconstruction_losses
from tokenwave.train.state import numpy_rng_state, set_numpy_rng_state
from tokenwave.train.trainer import DistInfo, set_schedule_lr, wrap_ddp


class DecoderRecipe:
    def __init__(self, codec_folder: str, data: list[str], n_q: int, tcfg: CodecTrainConfig, info: DistInfo,
                 seed: int = 0, init: str | None = None, alignments: list[str] | None = None,
                 phone_dropout: float = 0.1, voice: bool = False) -> None:
        codec = load_codec(codec_folder)
        if not isinstance(codec, Codec):
            raise InvalidArgumentError(f"{codec_folder} is not a tokenwave codec", "decoders are trained for tokenwave codecs")
        if not 0 <= n_q <= codec.n_q:
            raise InvalidArgumentError(f"n_q={n_q} is out of range", f"use 1..{codec.n_q} codebooks, or 0 for latents")
        if init is not None:  # start from a decoder already fine-tuned on these codes
            codec = load_decoder(init, codec, n_q)
        self.alignments: dict[str, dict] = {}
        if not 0.0 <= phone_dropout <= 1.0:
            raise InvalidArgumentError(f"phone_dropout must be within 0..1, got {phone_dropout}",
                                       "use e.g. 0.1: one item in ten is decoded without phones")
        if alignments:
            for path in alignments:
                self.alignments.update(read_alignments(path))
            if not self.alignments:
                raise InvalidArgumentError("the alignments hold no clips", "align the dataset: tokenwave data align --data DATASET")
            codec = with_phone_decoder(codec, sorted({p for a in self.alignments.values() for p in a["phones"]}), voice)
        elif voice:
            raise InvalidArgumentError("a decoder told the voice is phone-informed", "pass --alignments with --voice")
        self.phone_dropout = phone_dropout
        self._frames: dict[str, torch.Tensor] = {}  # clip id -> its frame inputs, made on first use
        self.codec_folder, self.n_q, self.tcfg, self.info = str(codec_folder), n_q, tcfg, info
        self.init = None if init is None else str(init)
        self.codec = codec.to(info.device)
        self.codec.encoder.requires_grad_(False).eval()
        self.codec.quantizer.requires_grad_(False).eval()
        self.decoder = self.codec.decoder
        self.model = wrap_ddp(self.decoder, info)
        self.modules = {"decoder": self.decoder}
        self.optimizers = {"gen": torch.optim.AdamW(self.decoder.parameters(), lr=tcfg.lr, betas=(0.8, 0.99))}
        cfg = self.codec.cfg
        segment = int(tcfg.segment_seconds * SAMPLE_RATE) // cfg.hop * cfg.hop + (cfg.n_fft - cfg.hop)
        self.train_data = SegmentSampler(data, "train", segment, seed=seed + info.rank)
        if self.alignments and not any(i in self.alignments for ids in self.train_data.ids.values() for i in ids):
            raise InvalidArgumentError(f"none of the training clips of {', '.join(data)} has an alignment",
                                       "pass the alignments.jsonl of the same dataset (tokenwave data align --data DATASET)")
        self.voice = voice
        if voice:  # each item is told the voice of another clip of its speaker, as TTS tells it its prompt's

            self.speaker = {r["id"]: r.get("speaker") or r["id"] for d in data for r in read_manifest(d, "train")}
            self.voices = self._voice_vectors(self.train_data)
            self.same_speaker: dict[str, list[str]] = {}
            for i in self.voices:
                self.same_speaker.setdefault(self.speaker[i], []).append(i)
        valid = SegmentSampler(data, "valid", segment, seed=seed) if info.is_main else None
        self.valid = valid.fixed(tcfg.val_clips, tcfg.val_seconds) if valid else []
        self.valid_ids = valid.fixed_ids(tcfg.val_clips) if valid else []
        self.tail = cfg.n_fft - cfg.hop
        self.base_validation = self.validate() if info.is_main else {}

    @torch.no_grad()
    def _codes_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """What the decoder is given: the first ``n_q`` codebooks' vectors, or (``n_q`` 0) the continuous latents."""
        z = self.codec.encode_latents(wav)
        if self.n_q == 0:
            return z
        q = self.codec.quantizer
        return q.decode(q.encode(z, self.n_q))

    def _clip_frames(self, clip: str, frames: int) -> torch.Tensor | None:
        """A clip's frame inputs (``[3, >= frames]``), or None when it has no alignment."""
        a = self.alignments.get(clip)
        if a is None:
            return None
        have = self._frames.get(clip)
        if have is None or have.shape[-1] < frames:
            rate = self.codec.frame_rate
            n = max(frames, int(np.ceil(float(a.get("end", a["starts"][-1])) * rate)) + 1)
            have = self._frames[clip] = alignment_inputs(self.decoder.phones, a, n, rate)
        return have

    def _phones(self, where: list[tuple[str, int]], frames: int, drop: np.ndarray | None = None) -> torch.Tensor | None:
        """``[B, 3, frames]`` frame inputs of segments starting at hop-aligned ``(clip, sample)``; an item with no
        alignment, or dropped, gets silence's id with no place (the embedding of "no phone known")."""
        if not self.alignments:
            return None
        out = torch.zeros(len(where), 3, frames, dtype=torch.long)  # id 0: padding = no phone
        for b, (clip, start) in enumerate(where):
            first = start // self.codec.hop
            fr = None if drop is not None and drop[b] else self._clip_frames(clip, first + frames)
            if fr is not None:
                out[b] = fr[:, first: first + frames]
        return out.to(self.info.device)

    @torch.no_grad()
    def _voice_of(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [1, 1, N]`` -> the voice vector of its first 3 s ``[1, latent_dim]`` (what TTS takes from a prompt)."""
        n = min(wav.shape[-1], int(PROMPT_SECONDS * SAMPLE_RATE))
        return voice_vector(self.codec, self.codec.encode(wav[..., :n].to(self.info.device), self.n_q))

    def _voice_vectors(self, sampler: SegmentSampler) -> dict[str, torch.Tensor]:
        out = {}
        with progress_bar("voices", total=sum(map(len, sampler.ids.values())), unit="clips") as bar:
            for d in sampler.domains:
                for i, wav in zip(sampler.ids[d], sampler.clips[d]):
                    out[i] = self._voice_of(torch.from_numpy(wav)[None, None])[0]
                    bar.advance()
        return out

    def _voices(self, where: list[tuple[str, int]], drop: np.ndarray) -> torch.Tensor:
        """``[B, latent_dim]``: each item's voice from another clip of its speaker (zeros, "unknown", if dropped)."""
        out = torch.zeros(len(where), self.codec.latent_dim, device=self.info.device)
        for b, (clip, _) in enumerate(where):
            if not drop[b]:
                others = [i for i in self.same_speaker[self.speaker[clip]] if i != clip] or [clip]
                out[b] = self.voices[others[int(self.train_data.rng.integers(len(others)))]]
        return out

    def train_step(self, step: int) -> dict[str, float]:
        t = self.tcfg
        set_schedule_lr(self.optimizers, t.lr, step, t.warmup, t.total_steps)
        self.decoder.train()
        wav, where = self.train_data.draw(t.batch_size, self.codec.hop if self.alignments else 1)
        wav = wav.to(self.info.device)
        z = self._codes_latents(wav)
        drop = self.train_data.rng.random(len(where)) < self.phone_dropout if self.alignments else None
        voice = self._voices(where, self.train_data.rng.random(len(where)) < self.phone_dropout) if self.voice else None
        wav_hat = self.model(z, self._phones(where, z.shape[-1], drop), voice)
        losses, total = reconstruction_losses(wav_hat[..., : -self.tail], wav[..., : -self.tail], t)
        self.optimizers["gen"].zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), 100.0)
        self.optimizers["gen"].step()
        return {k: float(v.detach()) for k, v in losses.items()} | {"loss": float(total.detach())}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.decoder.eval()
        mels, sdrs = [], []
        for (_, wav), clip in zip(self.valid, self.valid_ids):
            wav = wav.to(self.info.device)
            z = self._codes_latents(F.pad(wav, (0, self.tail)))
            voice = self._voice_of(wav) if self.voice else None  # the clip's own: validation only
            rec = self.decoder(z, self._phones([(clip, 0)], z.shape[-1]), voice)[..., : wav.shape[-1]]
            mels.append(mel_distance(rec, wav, SAMPLE_RATE))
            sdrs.append(float(si_sdr(rec, wav).mean()))
        return {"valid_loss": round(float(np.mean(mels)), 4), "mel_distance": round(float(np.mean(mels)), 4),
                "si_sdr": round(float(np.mean(sdrs)), 3)}

    def export(self, folder: Path, metrics: dict) -> None:
        extra = {"codec": shown_path(self.codec_folder), "validation": metrics, "base_validation": self.base_validation,
                 "train": asdict(self.tcfg)}
        if self.init:
            extra["init"] = shown_path(self.init)
        if self.alignments:
            extra["phone_dropout"] = self.phone_dropout
        save_decoder(folder, self.codec, self.n_q, extra)

    def rng_state(self) -> dict:
        return {"train_data": numpy_rng_state(self.train_data.rng)}

    def set_rng_state(self, state: dict) -> None:
        set_numpy_rng_state(self.train_data.rng, state["train_data"])
