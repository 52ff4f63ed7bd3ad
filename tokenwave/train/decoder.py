"""Decoder fine-tuning recipe: a codec's decoder trained further on one domain at one bitrate (or on the continuous
latents a flow generator makes), the encoder and quantizer frozen, so the codes and latents, and every generator
trained on them, stay valid. The codec recipe's reconstruction losses; no adversarial term."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tokenwave import SAMPLE_RATE
from tokenwave.codec.decoders import save_decoder
from tokenwave.codec.losses import mel_distance, si_sdr
from tokenwave.codec.model import Codec
from tokenwave.data.loader import SegmentSampler
from tokenwave.errors import InvalidArgumentError
from tokenwave.paths import shown_path
from tokenwave.train.codec import CodecTrainConfig, reconstruction_losses
from tokenwave.train.state import numpy_rng_state, set_numpy_rng_state
from tokenwave.train.trainer import DistInfo, set_schedule_lr, wrap_ddp


class DecoderRecipe:
    def __init__(self, codec_folder: str, data: list[str], n_q: int, tcfg: CodecTrainConfig, info: DistInfo,
                 seed: int = 0) -> None:
        from tokenwave.codec import load_codec

        codec = load_codec(codec_folder)
        if not isinstance(codec, Codec):
            raise InvalidArgumentError(f"{codec_folder} is not a tokenwave codec", "decoders are trained for tokenwave codecs")
        if not 0 <= n_q <= codec.n_q:
            raise InvalidArgumentError(f"n_q={n_q} is out of range", f"use 1..{codec.n_q} codebooks, or 0 for latents")
        self.codec_folder, self.n_q, self.tcfg, self.info = str(codec_folder), n_q, tcfg, info
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
        self.valid = SegmentSampler(data, "valid", segment, seed=seed).fixed(tcfg.val_clips, tcfg.val_seconds) if info.is_main else []
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

    def train_step(self, step: int) -> dict[str, float]:
        t = self.tcfg
        set_schedule_lr(self.optimizers, t.lr, step, t.warmup, t.total_steps)
        self.decoder.train()
        wav = self.train_data.sample(t.batch_size).to(self.info.device)
        wav_hat = self.model(self._codes_latents(wav))
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
        for _, wav in self.valid:
            wav = wav.to(self.info.device)
            rec = self.decoder(self._codes_latents(F.pad(wav, (0, self.tail))))[..., : wav.shape[-1]]
            mels.append(mel_distance(rec, wav, SAMPLE_RATE))
            sdrs.append(float(si_sdr(rec, wav).mean()))
        return {"valid_loss": round(float(np.mean(mels)), 4), "mel_distance": round(float(np.mean(mels)), 4),
                "si_sdr": round(float(np.mean(sdrs)), 3)}

    def export(self, folder: Path, metrics: dict) -> None:
        save_decoder(folder, self.codec, self.n_q, {"codec": shown_path(self.codec_folder), "validation": metrics,
                                                     "base_validation": self.base_validation, "train": asdict(self.tcfg)})

    def rng_state(self) -> dict:
        return {"train_data": numpy_rng_state(self.train_data.rng)}

    def set_rng_state(self, state: dict) -> None:
        set_numpy_rng_state(self.train_data.rng, state["train_data"])
