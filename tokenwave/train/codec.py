"""Codec training recipe: multi-scale mel + multi-resolution STFT + waveform L1 + commitment losses, then an
adversarial multi-scale STFT discriminator with feature matching from ``adv_start`` on."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from tokenwave import SAMPLE_RATE
from tokenwave.codec.config import CodecConfig
from tokenwave.codec.discriminator import MultiScaleSTFTDiscriminator, discriminator_loss, generator_losses
from tokenwave.codec.losses import complex_stft_loss, mel_distance, mel_loss, si_sdr, stft_loss
from tokenwave.codec.model import Codec
from tokenwave.data.loader import SegmentSampler
from tokenwave.train.state import numpy_rng_state, set_numpy_rng_state
from tokenwave.train.trainer import DistInfo, set_schedule_lr, wrap_ddp

FULL_BAND_HZ = 0.95 * SAMPLE_RATE / 2  # a clip holding frequencies up to here is full band (the rest is the filter's roll-off)

PRESETS = {
    "default": CodecConfig(),
    "tiny": CodecConfig(enc_dim=32, enc_depth=1, dec_dim=32, dec_depth=1, latent_dim=8, codebook_size=64, kmeans_iters=2),
}


@dataclass
class CodecTrainConfig:
    segment_seconds: float = 1.0
    batch_size: int = 8
    lr: float = 5e-4
    mel_weight: float = 15.0
    stft_weight: float = 2.0
    wave_weight: float = 5.0
    complex_weight: float = 30.0
    commit_weight: float = 1.0
    adv_start: int = 10_000
    adv_weight: float = 1.0
    fm_weight: float = 2.0
    disc_channels: int = 16
    warmup: int = 500
    total_steps: int = 20_000  # the learning rate decays (cosine) to 10% at this step
    val_clips: int = 4
    val_seconds: float = 4.0
    init: str | None = None  # the codec folder fine-tuned from (None: trained from scratch)


def reconstruction_losses(x: torch.Tensor, y: torch.Tensor, t: CodecTrainConfig, bandwidth: torch.Tensor | None = None
                          ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The codec's reconstruction terms (multi-scale log-mel L1, multi-resolution STFT, waveform L1, compressed
    complex STFT) and their weighted sum, for ``x`` decoded against ``y`` (both ``[B, 1, N]``).

    ``bandwidth [B]`` (Hz): what each clip's original recording holds. The spectral terms then count only the bins
    below it, and the waveform term only the full-band clips, so a clip recorded at 16 kHz teaches the low band and
    leaves the codec free to keep the high band it learns from full-band clips. None: every clip is full band."""
    if bandwidth is None:
        wave = (x - y).abs().mean()
    else:
        full = (bandwidth >= FULL_BAND_HZ).to(x.dtype)
        wave = ((x - y).abs().mean(dim=(1, 2)) * full).sum() / full.sum().clamp_min(1.0)
    losses = {"mel": mel_loss(x, y, SAMPLE_RATE, bandwidth), "stft": stft_loss(x, y, bandwidth, SAMPLE_RATE),
              "wave": wave, "complex": complex_stft_loss(x, y, bandwidth=bandwidth, sample_rate=SAMPLE_RATE)}
    total = t.mel_weight * losses["mel"] + t.stft_weight * losses["stft"] + t.wave_weight * losses["wave"] \
        + t.complex_weight * losses["complex"]
    return losses, total


class CodecRecipe:
    def __init__(self, data: list[str], cfg: CodecConfig, tcfg: CodecTrainConfig, info: DistInfo, seed: int = 0,
                 init: str | None = None) -> None:
        """``init``: a codec folder to fine-tune (its architecture and weights; ``cfg`` is then unused), e.g. the
        shipped codec on new recordings; None trains ``cfg`` from scratch."""
        self.codec = (Codec(cfg) if init is None else Codec.load(init)).to(info.device)
        tcfg = replace(tcfg, init=str(init)) if init is not None else tcfg  # the trainer validates an init at step 0
        self.cfg, self.tcfg, self.info, self.seed = self.codec.cfg, tcfg, info, seed
        cfg = self.cfg
        self.model = wrap_ddp(self.codec, info)
        self.disc = MultiScaleSTFTDiscriminator(channels=tcfg.disc_channels).to(info.device)
        self.disc_ddp = wrap_ddp(self.disc, info)
        self.modules = {"codec": self.codec, "disc": self.disc}
        self.optimizers = {
            "gen": torch.optim.AdamW(self.codec.parameters(), lr=tcfg.lr, betas=(0.8, 0.99)),
            "disc": torch.optim.AdamW(self.disc.parameters(), lr=tcfg.lr, betas=(0.8, 0.99)),
        }
        segment = int(tcfg.segment_seconds * SAMPLE_RATE) // cfg.hop * cfg.hop + (cfg.n_fft - cfg.hop)
        workers = min(16, os.cpu_count() or 1)  # decoding Opus-carried clips at start: 16 threads on a GPU host
        self.train_data = SegmentSampler(data, "train", segment, seed=seed + info.rank, workers=workers)
        if info.device.type == "cuda":
            self.train_data.keep_on(info.device)  # batches gathered on the GPU, bit-identical to the host's
        self.valid = SegmentSampler(data, "valid", segment, seed=seed, workers=workers).fixed(
            tcfg.val_clips, tcfg.val_seconds) if info.is_main else []
        self.tail = cfg.n_fft - cfg.hop

    def train_step(self, step: int) -> dict[str, float]:
        t = self.tcfg
        set_schedule_lr(self.optimizers, t.lr, step, t.warmup, t.total_steps)
        self.model.train()
        wav, bandwidth = self.train_data.sample_banded(t.batch_size)
        full = bandwidth >= FULL_BAND_HZ  # on the host: no step waits on the GPU to decide its losses
        full_idx = full.nonzero().squeeze(1).to(self.info.device)
        wav = wav.to(self.info.device)
        bandwidth = None if bool(full.all()) else bandwidth.to(self.info.device)  # all full band: the plain losses
        # the same draw on every rank and on a resume: from the seed and the step, not a per-rank RNG
        bypass = bool(np.random.default_rng((self.seed, step)).random() < self.cfg.quantizer_bypass)
        wav_hat, _, commit = self.model(wav, bypass=bypass)
        x, y = wav_hat[..., : -self.tail], wav[..., : -self.tail]  # the ISTFT tail lacks its future frames
        losses, total = reconstruction_losses(x, y, t, bandwidth)
        losses["commit"] = commit
        total = total + t.commit_weight * commit
        # the discriminator sees full-band clips only: a band-limited real clip would teach it that real audio has
        # no high band, and the codec to erase it
        adversarial = step >= t.adv_start and bool(full.any())
        if adversarial:
            xa, ya = (x, y) if bandwidth is None else (x.index_select(0, full_idx), y.index_select(0, full_idx))
            d_loss = discriminator_loss(self.disc_ddp(ya), self.disc_ddp(xa.detach()))
            self.optimizers["disc"].zero_grad(set_to_none=True)
            d_loss.backward()
            self.optimizers["disc"].step()
            adv, fm = generator_losses(self.disc_ddp(ya), self.disc_ddp(xa))
            losses.update(adv=adv, fm=fm, disc=d_loss)
            total = total + t.adv_weight * adv + t.fm_weight * fm
        self.optimizers["gen"].zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.codec.parameters(), 100.0)
        self.optimizers["gen"].step()
        return {k: float(v.detach()) for k, v in losses.items()} | {"loss": float(total.detach())}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.codec.eval()
        out: dict[str, float] = {}
        for n_q in (2, 4, self.cfg.n_q):
            mels, sdrs = [], []
            for _, wav in self.valid:
                wav = wav.to(self.info.device)
                rec = self.codec.reconstruct(wav, n_q)
                mels.append(mel_distance(rec, wav, SAMPLE_RATE))
                sdrs.append(float(si_sdr(rec, wav).mean()))
            kbps = self.codec.bitrate(n_q) / 1000
            out[f"mel_distance_{kbps:g}kbps"] = round(float(np.mean(mels)), 4)
            out[f"si_sdr_{kbps:g}kbps"] = round(float(np.mean(sdrs)), 3)
        codes = torch.cat([self.codec.encode(w.to(self.info.device)) for _, w in self.valid], dim=-1)
        usage = self.codec.quantizer.usage(codes)
        out["codebook_perplexity_mean"] = round(float(np.mean(usage["perplexity"])), 1)
        out["codebook_used_mean"] = round(float(np.mean(usage["used"])), 3)
        out["valid_loss"] = out[f"mel_distance_{kbps:g}kbps"]  # all codebooks: what --keep-best keeps
        return out

    def export(self, folder: Path, metrics: dict) -> None:
        self.codec.save(folder, extra={"validation": metrics, "train": asdict(self.tcfg)})

    def rng_state(self) -> dict:
        return {"train_data": numpy_rng_state(self.train_data.rng)}

    def set_rng_state(self, state: dict) -> None:
        set_numpy_rng_state(self.train_data.rng, state["train_data"])
