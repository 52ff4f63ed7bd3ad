"""Brief -> production plan: model and hosting, prompt format, chain, seed protocol and eval plan (a plain dict,
so it serialises to JSON as it is and renders to Markdown in ``tokenwave.brief.render``)."""
from __future__ import annotations

from tokenwave.brief.catalog import Catalog, ModelEntry, load_catalog, misfits
from tokenwave.brief.schema import Brief, BriefConflictError

KIND_ORDER = {"tokenwave": 0, "open-weights": 1, "api": 2}  # own models where they fit, then open weights, then APIs
DEFAULT_CANDIDATES = {"tts": 3, "voice_clone": 3, "music": 4, "music_lyrics": 4, "sfx": 4, "voice_agent": 1, "dubbing": 2}
PACING_WPM = {"slow": 130, "normal": 160, "fast": 190}

WHY_STREAMS = {
    "token-ar": "token-AR: each step emits one frame of codec tokens that the decoder turns into audio at once, so "
                "playback starts after the first frames (live use); long pieces continue from the last tokens",
    "speech-to-speech": "speech-to-speech: audio frames in, audio frames out, turn by turn (live use)",
    "non-ar-tts": "non-autoregressive TTS: renders a sentence at a time, so it streams sentence by sentence at best",
    "flow-matching": "flow matching: every frame of the clip is integrated jointly over the ODE steps, so no audio exists "
                     "before the last step (render on submit); in exchange it sees the whole clip at once, which keeps "
                     "global structure, and costs a fixed number of steps whatever the length",
    "diffusion": "diffusion: the whole clip is denoised jointly over many steps, so no audio exists before the last one "
                 "(render on submit)",
}


def brief_conflicts(brief: Brief) -> list[tuple[str, str]]:
    """Conflicts inside the brief itself (independent of any model)."""
    out = []
    if brief.clones_voice and not brief.voice.consent:
        who = brief.voice.name or brief.voice.prompt
        out.append((f"cloning voice {who!r} without consent",
                    "get the speaker's recorded consent, register it (`tokenwave voices add`), and set `voice.consent: true`"))
    if brief.task == "voice_agent" and brief.latency != "live":
        out.append(("a voice agent answers in real time but the brief asks for render latency", "set `latency: live`"))
    return out


def rank(catalog: Catalog, brief: Brief) -> tuple[list[ModelEntry], list[dict]]:
    """Models that fit (best first) and, for every model of the task that does not, its reasons."""
    fits, rejected = [], []
    for m in catalog.for_task(brief.task):
        reasons = misfits(m, brief)
        if reasons:
            rejected.append({"id": m.id, "reasons": [r[1] for r in reasons], "rules": sorted({r[0] for r in reasons})})
        else:
            fits.append(m)
    live_first = brief.latency == "live"
    fits.sort(key=lambda m: (KIND_ORDER[m.kind], live_first and m.latency != "streaming"))
    return fits, rejected


def choose(catalog: Catalog, brief: Brief) -> tuple[ModelEntry, list[ModelEntry], list[dict]]:
    """The chosen model, the alternatives and the rejected ones; raises :class:`BriefConflictError` when the brief
    conflicts with itself, with its pinned model, or with every model of its task."""
    conflicts = brief_conflicts(brief)
    if brief.model:
        pinned = catalog.get(brief.model)
        conflicts += [(msg, fix) for _, msg, fix in misfits(pinned, brief)]
        if conflicts:
            raise BriefConflictError(conflicts)
        fits, rejected = rank(catalog, brief)
        return pinned, [m for m in fits if m.id != pinned.id], rejected
    if conflicts:
        raise BriefConflictError(conflicts)
    fits, rejected = rank(catalog, brief)
    if not fits:
        conflicts = []
        for m in catalog.for_task(brief.task):
            found = misfits(m, brief)
            fixes = list(dict.fromkeys(fix for _, _, fix in found))
            conflicts.append((f"{m.id} ruled out: " + "; ".join(msg for _, msg, _ in found), " or ".join(fixes)))
        raise BriefConflictError(conflicts or [(f"no catalog model does {brief.task}", "change the task")])
    return fits[0], fits[1:], rejected


def prompt_format(brief: Brief, model: ModelEntry) -> dict:
    """The prompt to send, as fields and as one string, in the conventions of the task."""
    style = [s.strip() for s in brief.style.split(",") if s.strip()]
    if brief.task in ("music", "music_lyrics"):
        mu = brief.music
        tags = [*mu.genre, *([mu.mood] if mu.mood else []), *style, *(f"{i}" for i in mu.instruments)]
        structure = mu.structure or (["intro", "verse", "chorus", "outro"] if brief.duration >= 60 else [])
        section = round(brief.duration / len(structure), 1) if structure else None
        caption = ", ".join(tags) + (f", {mu.bpm:g} bpm" if mu.bpm else "") + (f", in {mu.key}" if mu.key else "")
        fields = {"genre_tags": mu.genre, "style_descriptors": style + ([mu.mood] if mu.mood else []),
                  "instruments": mu.instruments, "bpm": mu.bpm, "key": mu.key,
                  "structure": [{"marker": f"[{s}]", "seconds": section} for s in structure],
                  "melody": mu.melody}
        text = caption
        if brief.task == "music_lyrics":
            fields["lyrics"] = _lyrics_with_markers(brief.lyrics or "", structure)
            text = caption + "\n" + fields["lyrics"]
        elif structure:
            text = caption + " | " + " ".join(f"[{s}]" for s in structure)
        return {"kind": "music", "fields": fields, "text": text,
                "notes": "tags first (genre, mood, instruments), then tempo and key; structure markers in order with "
                         "their share of the duration; keep one idea per tag"}
    if brief.task == "sfx":
        s = brief.sfx
        layers = [" ".join(p for p in (s.source, s.action) if p)] + s.layers
        layers = [x for x in layers if x] or style
        scene = [p for p in (s.environment and f"in {s.environment}" if s.environment and not s.environment.startswith(("in ", "on ")) else s.environment,
                             s.distance and f"{s.distance} perspective") if p]
        text = ", ".join([*layers, *scene, *([x for x in style if x not in layers])])
        return {"kind": "sfx", "fields": {"layers": layers, "environment": s.environment, "perspective": s.distance,
                                          "style_descriptors": style, "seconds": brief.duration},
                "text": text, "notes": "layered descriptors: main source + action first, then added layers, then the "
                                        "space (environment) and perspective (distance); one layer per comma"}
    v = brief.voice
    pacing = v.pacing or "normal"
    wpm = PACING_WPM.get(pacing, None)
    fields = {"text": brief.text, "voice": v.name or ("cloned from prompt" if v.prompt else "default"),
              "voice_prompt": v.prompt, "emotion": v.emotion or "neutral", "pacing": pacing,
              "words_per_minute": wpm, "language": brief.language, "style_descriptors": style}
    instructions = f"Voice: {fields['voice']}. Emotion: {fields['emotion']}. Pacing: {pacing}" + (
        f" (~{wpm} wpm)" if wpm else "") + (f". Style: {', '.join(style)}" if style else "") + "."
    return {"kind": "speech", "fields": fields, "text": brief.text or "", "instructions": instructions,
            "notes": "text as it should be read (numbers and abbreviations written out); voice, emotion and pacing as "
                     "instructions where the model takes them, else through the voice prompt and speed"}


def _lyrics_with_markers(lyrics: str, structure: list[str]) -> str:
    if "[" in lyrics:
        return lyrics.strip()
    blocks = [b.strip() for b in lyrics.strip().split("\n\n") if b.strip()]
    names = structure or ["verse", "chorus"]
    return "\n\n".join(f"[{names[i % len(names)]}]\n{b}" for i, b in enumerate(blocks))


def chain(brief: Brief, model: ModelEntry) -> dict:
    streams = model.latency == "streaming"
    continued = brief.duration > model.max_seconds
    return {**model.chain, "backbone": model.backbone, "streams": streams, "live_ready": streams,
            "reason": WHY_STREAMS[model.backbone],
            "continuation": (f"{brief.duration:g} s > {model.max_seconds:g} s per generation: render in parts of at most "
                             f"{model.max_seconds:g} s, each continuing from the end of the previous one") if continued else None}


def seed_protocol(brief: Brief, model: ModelEntry, primary: str) -> dict:
    n = brief.seeds.candidates or (1 if brief.latency == "live" else DEFAULT_CANDIDATES[brief.task])
    seeds = [brief.seeds.base + i for i in range(n)]
    deterministic = model.kind != "api"
    return {
        "seeds": seeds, "candidates": n,
        "selection": ("live: no choice after the fact; the single seed is fixed and the stream is checked against the "
                      "gates afterwards" if brief.latency == "live" else
                      f"render every seed; drop candidates that fail a gate; pick the best {primary}; ties go to the lower seed"),
        "reproduce": ("the same model version, inputs, sampling settings and seed give the same audio: record them in "
                      "each output's metadata (tokenwave writes PATH.json beside every file)" if deterministic else
                      "the API may not honour seeds: keep the request parameters and the returned files; a re-run "
                      "gives a new take, not the same audio"),
        "deterministic": deterministic,
    }


def eval_plan(brief: Brief) -> dict:
    """Metrics with thresholds (gates) and a listening test, by task."""
    t = brief.task
    if t in ("tts", "voice_clone", "voice_agent", "dubbing"):
        metrics = [
            {"metric": "cer", "how": "ASR transcript vs the text (tokenwave.eval.asr)", "gate": "<= 0.05", "primary": True},
            {"metric": "dnsmos_ovrl", "how": "predicted MOS (tokenwave.eval.mos)", "gate": ">= 3.0"},
        ]
        if brief.clones_voice or t == "dubbing":
            metrics.append({"metric": "speaker_similarity", "how": "cosine to the voice prompt (tokenwave.eval.speaker)",
                            "gate": ">= the registry's match threshold"})
        if t == "voice_agent":
            metrics.append({"metric": "first_audio_ms_p95", "how": "time to first audio over 50 turns", "gate": "<= 300"})
        if t == "dubbing":
            metrics.append({"metric": "duration_ratio", "how": "dub length / source length", "gate": "within 0.9..1.1"})
        listening = {"test": "A/B preference vs the current voice", "listeners": 12, "pairs_per_listener": 20,
                     "pass": "preferred or tied in >= 50 % of pairs (binomial test, p < 0.05 for a claimed win)"}
    elif t in ("music", "music_lyrics"):
        metrics = [
            {"metric": "clap_score", "how": "text-audio cosine to the prompt (tokenwave.eval.clap)",
             "gate": ">= 0.8 x the median score of real renders of the same captions", "primary": True},
            {"metric": "tempo_error_bpm", "how": "beat tracking vs the brief's bpm", "gate": "<= 4" if brief.music.bpm else "n/a"},
            {"metric": "key_match", "how": "chroma key estimate vs the brief's key", "gate": "same key" if brief.music.key else "n/a"},
            {"metric": "fad", "how": "Frechet audio distance vs held-out renders, beside the codec's own resynthesis",
             "gate": "report (set-level)"},
        ]
        if brief.music.melody:
            metrics.append({"metric": "melody_adherence", "how": "chroma cosine to the melody", "gate": ">= 0.6"})
        if t == "music_lyrics":
            metrics.append({"metric": "lyrics_cer", "how": "ASR on the separated vocals vs the lyrics", "gate": "<= 0.25"})
        listening = {"test": "A/B preference vs a reference track in the same style", "listeners": 15,
                     "pairs_per_listener": 10, "pass": "preferred or tied in >= 50 % of pairs"}
    else:
        metrics = [
            {"metric": "clap_score", "how": "text-audio cosine to the prompt (tokenwave.eval.clap)",
             "gate": ">= 0.8 x the median score of real recordings of the same captions", "primary": True},
            {"metric": "tag_accuracy", "how": "classifier trained on real renders names the prompt's tags",
             "gate": "top-1 matches the main layer"},
            {"metric": "loudness_lufs", "how": "integrated loudness (pyloudnorm)", "gate": "-23..-14"},
        ]
        listening = {"test": "A/B preference vs a library effect", "listeners": 10, "pairs_per_listener": 10,
                     "pass": "preferred or tied in >= 50 % of pairs"}
    metrics.append({"metric": "watermark", "how": "tokenwave detect on every output", "gate": "present (p < 1e-3)"})
    return {"metrics": metrics, "listening_test": listening,
            "primary": next(m["metric"] for m in metrics if m.get("primary"))}


def hosting(brief: Brief, model: ModelEntry) -> dict:
    h = brief.hosting
    if model.kind == "api":
        where = "vendor API (audio leaves your infrastructure: check data-processing terms)"
    elif h.on_device:
        where = "on-device"
    elif h.cpu_only or "gpu" not in model.hosting:
        where = "self-hosted, CPU"
    else:
        where = "self-hosted, GPU" if h.gpu and "gpu" in model.hosting else "self-hosted, CPU"
    return {"where": where, "cost": model.cost, "budget_usd": brief.budget_usd, "runs_locally": model.kind == "tokenwave"}


def make_plan(brief: Brief, catalog: Catalog | None = None) -> dict:
    """The production plan for a validated brief (raises :class:`BriefConflictError` on conflicts)."""
    catalog = catalog or load_catalog()
    model, alternatives, rejected = choose(catalog, brief)
    evals = eval_plan(brief)
    return {
        "brief": brief.as_dict(),
        "catalog_as_of": catalog.as_of,
        "model": model.as_dict(),
        "why": _why(brief, model),
        "alternatives": [{"id": m.id, "kind": m.kind, "license": m.license, "latency": m.latency} for m in alternatives[:4]],
        "rejected": rejected,
        "hosting": hosting(brief, model),
        "prompt": prompt_format(brief, model),
        "chain": chain(brief, model),
        "seed_protocol": seed_protocol(brief, model, evals["primary"]),
        "eval_plan": evals,
        "safety": {"watermark": "embedded in every output (tokenwave.safety.watermark); `tokenwave detect FILE` checks it",
                   "consent": ("the voice prompt must match a consented voice in the registry and no opt-out "
                               "(tokenwave voices); checked again at render time") if brief.clones_voice else "no voice cloning"},
        "runnable_locally": model.kind == "tokenwave",
    }


def _why(brief: Brief, m: ModelEntry) -> str:
    parts = [f"does {brief.task}", f"{m.latency} ({'fits' if brief.latency == 'render' or m.latency == 'streaming' else 'misfits'} "
             f"{brief.latency} latency)", f"licence: {m.license}", f"hosting: {', '.join(m.hosting)}"]
    if brief.model:
        parts.insert(0, "pinned by the brief")
    elif m.kind == "tokenwave":
        parts.insert(0, "this project's own model fits every constraint (runs locally with `--run`)")
    else:
        parts.insert(0, f"the first {m.kind} model in the catalog that fits every constraint")
    return "; ".join(parts)
