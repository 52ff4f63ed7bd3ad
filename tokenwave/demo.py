"""`make demo`: build a small corpus of each domain and write ``demo/index.html`` with players and spectrograms."""
from __future__ import annotations

import html
import os
import time
from pathlib import Path

import torch

from tokenwave.audio import load_audio, save_audio
from tokenwave.codec import load_codec
from tokenwave.codec.losses import mel_distance
from tokenwave.data.manifest import audio_path, read_manifest
from tokenwave.data.music import build_music
from tokenwave.data.sfx import build_sfx
from tokenwave.data.speech import build_speech
from tokenwave.fileio import atomic_write_text
from tokenwave.plots import spectrogram_grid
from tokenwave.tasks import Pipeline, Sampling
from tokenwave.tasks.base import MissingModelError

DOMAIN_MINUTES = {"speech": 0.5, "music": 0.5, "sfx": 0.5}
BUILDERS = {"speech": build_speech, "music": build_music, "sfx": build_sfx}


def _build(domain: str, out: Path, minutes: float, seed: int) -> None:
    BUILDERS[domain](out, minutes=minutes, seed=seed, overwrite=True)


def _label(row: dict) -> str:
    if row["domain"] == "speech":
        return f"{row.get('speaker', '')}: “{row.get('text', '')}”"
    return row.get("caption") or row["id"]


def _codec_section(out: Path, seed: int) -> str:
    """One held-out clip per domain through the default codec at 6 / 3 / 1.5 kbps, beside the original."""
    codec = load_codec()
    cards = []
    for domain in DOMAIN_MINUTES:
        ds = out / "data" / domain
        rows = read_manifest(ds)
        row = next((r for r in rows if r["split"] == "test"), rows[-1])  # a tiny build may hold no test clip
        wav, sr = load_audio(audio_path(ds, row), codec.sample_rate)
        x = torch.from_numpy(wav[: 6 * sr])[None, None]
        versions = [("original", x)] + [(f"{k:g} kbps", codec.reconstruct(x, codec.n_q_for_kbps(k))) for k in (6, 3, 1.5)]
        for name, y in versions:
            slug = f"codec-{domain}-{name.replace(' ', '').replace('.', '_')}"
            audio = save_audio(out / "audio" / f"{slug}.wav", y[0, 0].numpy(), sr)
            png = spectrogram_grid([(f"{domain} {name}: {_label(row)}", y[0, 0].numpy(), sr)], out / "img" / f"{slug}.png", cols=1)
            dist = "" if name == "original" else f" — mel distance {mel_distance(y, x, sr):.3f}"
            cards.append(f'<div class="card"><p class="cap">{html.escape(domain)} [{row["split"]}], {html.escape(name)}{dist}</p>'
                         f'<audio controls preload="none" src="{os.path.relpath(audio, out)}"></audio>'
                         f'<img src="{os.path.relpath(png, out)}" alt="spectrogram"></div>')
    return "<h2>codec round trips <small>(test clips where the demo build has one; checkpoints/codec)</small></h2>\n" + "\n".join(cards)


TASK_SECONDS = 6.0  # music / sfx render length
TASK_EXAMPLES = {
    "tts": [("The quick brown fox jumps over the lazy dog.", None), ("Streaming audio starts playing in a moment.", 1)],
    "music": [("lively irish fiddle reel in D major", None), ("slow bach chorale on church organ in G major", None),
              ("moderate german folk song on clarinet in F major", "melody")],
    "sfx": [("heavy rain on a tin roof with distant thunder", None), ("slow steps on gravel, with a long echo", None),
            ("a ringing bell, high pitched", None)],
}


def _card(out: Path, slug: str, caption: str, wav, sr: int) -> str:
    audio = save_audio(out / "audio" / f"{slug}.wav", wav, sr)
    png = spectrogram_grid([(caption, wav, sr)], out / "img" / f"{slug}.png", cols=1)
    return (f'<div class="card"><p class="cap">{html.escape(caption)}</p><audio controls preload="none" '
            f'src="{os.path.relpath(audio, out)}"></audio><img src="{os.path.relpath(png, out)}" alt="spectrogram"></div>')


def _tasks_section(out: Path, seed: int) -> str:
    """A few renders of each task on the embedded default models (checkpoints/tts, music, sfx)."""
    pipe = Pipeline.load()
    parts = []
    for task, examples in TASK_EXAMPLES.items():
        try:
            model = pipe.task(task)
        except MissingModelError as e:
            parts.append(f"<h2>{task}</h2><p>not shipped: {html.escape(str(e))}</p>")
            continue
        cards = []
        if task != "tts":  # the first prompt again on each other generator the task ships (lm / flow)
            examples = examples + [(examples[0][0], g) for g in sorted(model.generators) if g != model.generator]
        for i, (prompt, extra) in enumerate(examples):
            t0 = time.perf_counter()
            if task == "tts":
                voice = model.voices[(extra or 0) * 7 % len(model.voices)]
                res = model.synthesize(prompt, voice, Sampling(seed=seed))
                accent = res.metadata.get("accent")
                caption = f"“{prompt}” — voice {voice}" + (f", timed in its {accent} accent" if accent else "")
            else:
                melody = None
                if extra == "melody":  # a rising and falling C-major scale, 19 frames (a quarter second) per note
                    melody = [p for p in (60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62) for _ in range(19)]
                res = model.generate(prompt, TASK_SECONDS, Sampling(seed=seed), melody=melody,
                                     generator=extra if extra in model.generators else None)
                caption = (f"{prompt}{' (following a scale melody)' if melody else ''} — tags "
                           f"{', '.join(res.metadata['tags'][1:]) or 'none read'}; {res.metadata['generator']} generator")
            took = time.perf_counter() - t0
            cards.append(_card(out, f"{task}-{i}", f"{caption} [{res.duration:.1f} s in {took:.1f} s]", res.wav,
                               res.sample_rate))
        parts.append(f"<h2>{task} <small>(checkpoints/{task}, seed {seed}, watermarked)</small></h2>\n" + "\n".join(cards))
    return "\n".join(parts)


def render_demo(out: str | os.PathLike = "demo", per_domain: int = 4, seed: int = 0, rebuild: bool = False) -> Path:
    """Build (or reuse) small datasets under ``out/data`` and write ``out/index.html``."""
    out = Path(out)
    sections = []
    for domain, minutes in DOMAIN_MINUTES.items():
        ds = out / "data" / domain
        if rebuild or not (ds / "manifest.jsonl").exists():
            _build(domain, ds, minutes, seed)
        rows = read_manifest(ds)
        picked = [r for s in ("train", "test") for r in rows if r["split"] == s][:per_domain - 1]
        picked += [r for r in rows if r["split"] == "test"][:1] if not any(r["split"] == "test" for r in picked) else []
        cards = []
        for r in picked:
            wav, sr = load_audio(audio_path(ds, r))
            png = spectrogram_grid([(_label(r), wav, sr)], out / "img" / f"{r['id']}.png", cols=1)
            rel_audio = os.path.relpath(audio_path(ds, r), out)
            cards.append(
                f'<div class="card"><p class="cap">{html.escape(_label(r))} <span class="split">[{r["split"]}, '
                f'{r["duration"]:.1f} s]</span></p><audio controls preload="none" src="{html.escape(rel_audio)}"></audio>'
                f'<img src="{html.escape(os.path.relpath(png, out))}" alt="spectrogram"></div>')
        sections.append(f"<h2>{domain} <small>({len(rows)} clips, data/{domain}/manifest.jsonl)</small></h2>\n" + "\n".join(cards))
    sections.append(_codec_section(out, seed))
    sections.insert(0, _tasks_section(out, seed))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>tokenwave demo</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}.card{display:inline-block;width:520px;"
            "margin:8px;vertical-align:top}.card img{width:100%}.cap{font-size:14px}.split{color:#888}audio{width:100%}"
            "</style></head><body><h1>tokenwave demo</h1><p>Text-to-speech, music and sound effects rendered by the "
            "embedded default models, then clips from the project's own offline corpora, "
            "rendered by <code>tokenwave data build</code>, and held-out clips through the embedded default codec "
            "(<code>checkpoints/codec</code>). Spectrograms are log-mel.</p>"
            + "\n".join(sections) + "</body></html>\n")
    index = out / "index.html"
    atomic_write_text(index, page)
    return index
