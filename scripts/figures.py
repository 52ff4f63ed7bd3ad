"""benchmarks/results/*.json (and the checkpoints' generators.json and config.json) -> the figures in README.md and
the model cards (checkpoints/**/MODEL.md), so that no figure a reader sees is typed by hand.

    python scripts/figures.py --write   # rewrite every generated region from the results files
    python scripts/figures.py --check   # exit 1, listing every region that disagrees with them

A generated region is the text between ``<!-- figures:NAME begin -->`` and ``<!-- figures:NAME end -->``; the prose
around it stays hand-written. Each region is a function of the results files below (:data:`REGIONS`); a value a file
does not hold is shown as "—" and named on stderr, so a results file that gains or loses keys never breaks the
script. tests/test_figures.py runs ``--check``.
"""
from __future__ import annotations

import argparse
import difflib
import functools
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MISSING = "—"
MARKER = re.compile(r"<!-- figures:(?P<name>[a-z0-9-]+) begin -->(?P<body>.*?)<!-- figures:(?P=name) end -->", re.DOTALL)
# benchmarks/tts.py's targets, as a reader says them (Whisper tiny.en and DNSMOS: third-party judges; the peers on
# the same unseen sentences in the same run)
TTS_PEER_LABELS = {
    "tts_cer_over_piper": "Whisper CER over Piper's (built-in voice, unseen sentences)",
    "tts_cer_over_espeak": "Whisper CER over espeak-ng's",
    "tts_cloned_cer_over_piper": "cloned voices: Whisper CER over Piper's",
    "tts_cloned_cer_over_espeak": "cloned voices: Whisper CER over espeak-ng's",
    "tts_dnsmos_ovrl": "DNSMOS OVRL (third-party)",
    "tts_cloned_dnsmos_ovrl": "cloned voices: DNSMOS OVRL",
    "tts_first_audio_ms_2_threads": "first audio, ms (2 threads)",
    "tts_rtf_1_thread": "real-time factor, 1 thread (wall clock)",
    "tts_rtf_1_thread_cpu_time": "real-time factor, 1 thread (CPU time)",
    "clone_real_identified_share": "cloned from 3 s of real speech: prompt's speaker identified (Resemblyzer)",
    "clone_real_speakers": "cloned from real speech: speakers no TTS model heard",
    "clone_real_cer_over_piper": "cloned from real speech: Whisper CER over Piper's",
    "clone_real_cer_over_espeak": "cloned from real speech: Whisper CER over espeak-ng's",
}
TAGGED = ("music", "sfx")
GENERATOR_NAMES = {"lm": "token LM", "flow": "flow matching"}
TAG_ACC_WITHOUT_DOMAIN = "2026-12-07"  # results written before this date count the domain field in tag accuracy


class Sources:
    """Reads the JSON files under ``root`` once each and looks values up by dotted path, noting what is missing."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cache: dict[str, Any] = {}
        self.missing: list[str] = []

    def doc(self, rel: str) -> dict:
        """The JSON file ``rel`` (a results name such as ``"tasks"`` means ``benchmarks/results/tasks.json``)."""
        rel = rel if rel.endswith(".json") else f"benchmarks/results/{rel}.json"
        if rel not in self.cache:
            path = self.root / rel
            self.cache[rel] = json.loads(path.read_text()) if path.exists() else None
            if self.cache[rel] is None:
                self.missing.append(rel)
        return self.cache[rel] or {}

    def get(self, rel: str, dotted: str) -> Any:
        """The value at ``dotted`` (keys separated by dots; a key holding a dot is written with ``\\.``) in ``rel``."""
        x: Any = self.doc(rel)
        for k in re.split(r"(?<!\\)\.", dotted):
            k = k.replace("\\.", ".")
            if not isinstance(x, dict) or k not in x:
                self.missing.append(f"{rel}: {dotted}")
                return None
            x = x[k]
        return x

    def target(self, rel: str, name: str) -> dict | None:
        """The target row ``name`` of results file ``rel``."""
        row = next((t for t in self.doc(rel).get("targets", []) if t.get("name") == name), None)
        if row is None:
            self.missing.append(f"{rel}: target {name}")
        return row


def fmt(v: Any, digits: int = 3) -> str:
    """A figure as printed: 3 significant digits (integers of 3+ digits whole), ``—`` when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if v != 0 and abs(v) >= 10 ** (digits - 1):
            return f"{v:.0f}"
        return f"{v:#.{digits}g}".rstrip(".") if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
    return str(v)


def plain(v: Any) -> str:
    """A setting as written (``5``, ``0.8``), ``—`` when missing."""
    return MISSING if v is None else f"{v:g}" if isinstance(v, (int, float)) else str(v)


def pct(v: Any) -> str:
    return MISSING if v is None else f"{100 * v:.1f}%"


def met(row: dict | None) -> str:
    if row is None or row.get("met") is None:
        return MISSING
    return "met" if row["met"] else "**not met**"


def bar(row: dict | None) -> str:
    return MISSING if row is None else f"{row['op']} {plain(row['target'])}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def targets_table(src: Sources, rel: str, rows: list[tuple[str, str]]) -> str:
    """``rows`` of (label, target name) of results file ``rel``: value, bar, met and the command that measured it."""
    out = []
    for label, name in rows:
        t = src.target(rel, name)
        note = f" ({t['note']})" if t and t.get("note") else ""
        out.append([label, f"**{fmt(t and t['value'])}**", bar(t), met(t),
                    f"`{t['command']}`{note}" if t and t.get("command") else MISSING])
    return table(["target", "value", "bar", "", "measured by"], out)


# ---- README ---------------------------------------------------------------------------------------------------

def readme_headline(src: Sources) -> str:
    """Every shipped model's headline figures: the targets (with their bars and commands) and beside them the
    figures of the same runs that have no bar."""
    rows: list[list[str]] = []
    used: list[str] = []  # the results files the rows come from, for the machines they were measured on

    def trow(model: str, label: str, rel: str, name: str, show: Callable[[Any], str] = fmt) -> None:
        used.append(rel)
        t = src.target(rel, name)
        quick = " (a `--quick` run)" if src.doc(rel).get("quick") else ""
        rows.append([model, label, f"**{show(t and t['value'])}**", bar(t), met(t), f"`{rel}.json` `{name}`{quick}"])

    def frow(model: str, label: str, rel: str, path: str, show: Callable[[Any], str] = fmt) -> None:
        used.append(rel)
        rows.append([model, label, show(src.get(rel, path)), MISSING, "", f"`{rel}.json` `{path}`"])

    for rel, c in (("codec", "codec (`checkpoints/codec`)"), ("codec-v2", "codec v2 (`checkpoints/codec-v2`)")):
        codec_names = [t.get("name", "") for t in src.doc(rel).get("targets", [])]
        for suffix, what in (("_mel_distance_6kbps_over_opus6k", "mel distance"),
                             ("_pesq_wb_6kbps_over_opus6k", "PESQ-wb"), ("_stoi_6kbps_over_opus6k", "STOI"),
                             ("_cer_6kbps_over_opus6k", "Whisper CER"),
                             ("_whisper_cer_6kbps_over_original", "Whisper CER")):
            for name in (n for n in codec_names if n.endswith(suffix)):  # every domain, real ones included
                tail = " over the recording's" if "original" in suffix else " over Opus 6 kbps's"
                trow(c, f"{name.removesuffix(suffix).replace('_', ' ')}: {what} at 6 kbps{tail}", rel, name)
        trow(c, "encode + decode, x real time (2 threads)", rel, "encode_decode_x_realtime")
        trow(c, "encode + decode speed over EnCodec-24k's, same run", rel, "encode_decode_speed_over_encodec")
    t = "text-to-speech (`checkpoints/tts`)"
    items = src.get("tasks", "figures.tts.items")
    trow(t, "Whisper CER over the engine's own speech (held-out synthetic voices)", "tasks", "tts_cer_over_engine")
    trow(t, f"held-out speaker identified, {fmt(items)} clips (Resemblyzer)", "tasks",
         "tts_speaker_identified_share", pct)
    trow(t, "10 s of speech, x real time (2 threads)", "tasks", "tts_10s_x_realtime")
    trow(t, "accent found in unseen voices' prompts", "accent", "test_accent_accuracy", pct)
    if (src.root / "benchmarks/results/tts.json").exists():  # against its peers (Piper, espeak-ng), third-party judges
        for row in src.doc("tts").get("targets", []):
            label = TTS_PEER_LABELS.get(row["name"], row["name"].removeprefix("tts_").replace("_", " "))
            trow(t, label, "tts", row["name"])
    if (src.root / "benchmarks/results/clone.json").exists():  # real human voice prompts (issue 24)
        for row in src.doc("clone").get("targets", []):
            trow(t, TTS_PEER_LABELS.get(row["name"], row["name"].replace("_", " ")), "clone", row["name"],
                 pct if row["name"].endswith("_share") else fmt)
    for task in TAGGED:
        default = src.get("tasks", f"figures.{task}.generator")
        gens = list(src.get("tasks", f"figures.{task}.by_generator") or {})
        for g in sorted(gens, key=lambda g: g != default):
            where = f"checkpoints/{task}" + ("/flow" if g == "flow" else "")
            model = f"{task}: {GENERATOR_NAMES.get(g, g)}{' (default)' if g == default else ''} (`{where}`)"
            label = "tag accuracy over the real renders' (project's tagger, in-domain; not the domain field)"
            if g == default:
                trow(model, label, "tasks", f"{task}_tag_accuracy_over_real_renders")
            else:
                frow(model, label, "tasks", f"figures.{task}.by_generator.{g}.tag_acc_ratio")
            frow(model, "CLAP score (project's CLAP-style model, in-domain)", "tasks",
                 f"figures.{task}.by_generator.{g}.generated.clap")
            if task == "music":
                if g == src.get("tasks", "figures.music.melody.generator"):
                    trow(model, "melody chroma cosine", "tasks", "music_melody_chroma_cosine")
                else:
                    frow(model, "melody chroma cosine", "tasks", f"figures.music.by_generator.{g}.melody.chroma_cosine_with_melody")
            if g == default:
                trow(model, "10 s, x real time (2 threads)", "tasks", f"{task}_10s_x_realtime")
            else:
                frow(model, "10 s, x real time (2 threads)", "tasks", f"figures.speed.{task}.by_generator.{g}.x_realtime")
            prompts = src.get("prompts", f"figures.{task}.models.shipped") or {}
            if prompts.get("generator") == g:  # hand-written free-text prompts (issue 25)
                trow(model, "free prompts: text-audio score over the canonical captions' (in-domain CLAP)", "prompts",
                     f"{task}_shipped_free_prompt_clap_ratio")
                trow(model, "free prompts: tag accuracy over the real recordings'", "prompts",
                     f"{task}_shipped_free_prompt_tag_accuracy_over_real")
            if (src.root / "benchmarks/results/realdist.json").exists():  # against real recordings, third-party judge
                trow(model, f"Fréchet distance to real held-out recordings (aisfx, third-party; real vs real: "
                     f"{fmt(src.get('realdist', f'figures.{task}.fd.aisfx.real (half A)'))}, issue 25's target 0.7x "
                     "today's)", "realdist", f"{task}_{g}_fd_to_real_aisfx")
                if task == "music":  # a third-party music network too
                    trow(model, f"Fréchet distance to real held-out recordings (basic-pitch notes, third-party; real vs "
                         f"real: {fmt(src.get('realdist', f'figures.{task}.fd.basic-pitch.real (half A)'))}, target 0.7x "
                         "the first measurement)", "realdist", f"{task}_{g}_fd_to_real_basic-pitch")
    for rel, srv in (("serve", "server (`tokenwave serve`, TTS, fp32)"), ("serve-int8", "server (`--precision int8`)"),
                     ("serve-thread", "server (`--engine thread`: the engine in the server's process, as before)")):
        if (src.root / f"benchmarks/results/{rel}.json").exists():
            for name, label in (("ttfa_p50_ms_1_stream", "first audio at 1 stream, ms (p50)"),
                                ("streams_all_faster_than_realtime", "TTS streams all faster than real time (2 cores)"),
                                ("streams_realtime_no_underrun", "TTS streams in real time without an underrun (2 cores)"),
                                ("soak_rss_growth_pct_after_warmup", "soak: RSS growth after warm-up, %"),
                                ("abandoned_16_seconds_to_free_slots", "16 abandoned requests: seconds to free their slots")):
                if src.target(rel, name) and not (rel == "serve-thread" and name.startswith(("soak", "abandoned"))):
                    trow(srv, label, rel, name)
    for model, label, folder, key in (("eval speaker encoder", "EER on held-out speakers", "speaker", "heldout_eer"),
                                      ("eval audio tagger", "mean tag accuracy on the test splits", "tagger", "test_acc_mean"),
                                      ("eval CLAP-style model", "text-to-audio recall@1 on held-out pairs", "clap",
                                       "test_recall@1")):
        rel = f"checkpoints/eval/{folder}/config.json"
        rows.append([f"{model} (`checkpoints/eval/{folder}`)", label, pct(src.get(rel, f"validation.{key}")),
                     MISSING, "", f"`{rel}` `validation.{key}`"])
    return table(["model", "figure", "value", "bar", "", "from"], rows) + "\n\n" + machines(src, used)


def machines(src: Sources, rels: list[str]) -> str:
    """Which CPU ran each results file (speed figures move with it: the same code ran several times slower on an
    AVX2-only AMD EPYC than on an Intel Xeon with AMX)."""
    by_cpu: dict[str, list[str]] = {}
    for rel in dict.fromkeys(rels):
        cpu = (src.doc(rel).get("machine") or {}).get("cpu") or "unknown"
        by_cpu.setdefault(cpu, []).append(f"`{rel}.json`")
    return "Measured on: " + "; ".join(f"{cpu}: {', '.join(files)}" for cpu, files in sorted(by_cpu.items())) + \
        ". Speed figures hold for the CPU that measured them (each file's `machine`)."


# ---- model cards ----------------------------------------------------------------------------------------------

def codec_speed(src: Sources, rel: str = "codec") -> str:
    x = src.target(rel, "encode_decode_x_realtime")
    e = src.target(rel, "encode_decode_speed_over_encodec")
    enc = src.get(rel, "figures.speed.encodec_6kbps.encode_decode_x_realtime")
    return (f"**{fmt(x and x['value'])}x faster than real time, {fmt(e and e['value'])}x faster than `transformers`' "
            f"EncodecModel (24 kHz config, {fmt(enc)}x real time)**")


CODEC_METRICS = {"mel_distance": "mel dist", "stft_distance": "MR-STFT dist", "si_sdr": "SI-SDR dB",
                 "pesq_wb": "PESQ-wb", "stoi": "STOI"}


def codec_fidelity(src: Sources, rel: str = "codec") -> str:
    """Every domain and system ``REL.json`` holds under ``figures.fidelity`` (new ones appear as they are added)."""
    fid = src.get(rel, "figures.fidelity") or {}
    metrics = list(CODEC_METRICS) + sorted({m for d in fid.values() for s in d.values() if isinstance(s, dict)
                                            for m in s if m not in CODEC_METRICS and not m.endswith("_clips")})
    rows = []
    for domain, systems in fid.items():
        for system, vals in systems.items():
            if isinstance(vals, dict):
                rows.append([domain, system.replace("_", " ")] + [fmt(vals.get(m)) if m in vals else "" for m in metrics])
    clips = src.get(rel, "figures.clips") or {}
    head = (f"`{src.doc(rel).get('command', MISSING)}` ({', '.join(f'{n} {d}' for d, n in clips.items())} clips "
            f"of up to {plain(src.get(rel, 'figures.clip_seconds_max'))} s, {src.doc(rel).get('date', MISSING)}):")
    return head + "\n\n" + table(["domain", "system"] + [CODEC_METRICS.get(m, m) for m in metrics], rows)


def codec_targets(src: Sources, rel: str = "codec") -> str:
    names = [t["name"] for t in src.doc(rel).get("targets", [])]
    return targets_table(src, rel, [(n.replace("_", " "), n) for n in names])


def codec_compare(src: Sources, new: str = "codec-v2", olds: tuple[str, ...] = ("codec", "codec-local")) -> str:
    """A second codec beside the default one and Opus, domain by domain on the same held-out clips: the previous
    codec's figures come from the first of ``olds`` whose results hold exactly the new run's clips of that domain
    (each results file measures Opus in its own run; the new one's Opus is shown)."""
    rows = []
    new_ids = src.get(new, "figures.clip_ids") or {}
    for domain in (src.get(new, "figures.fidelity") or {}):
        old = next((o for o in olds if (src.get(o, "figures.clip_ids") or {}).get(domain) == new_ids.get(domain)), None)
        systems = [(old, "ours_6kbps"), (new, "ours_6kbps"), (old, "ours_3kbps"), (new, "ours_3kbps"),
                   (new, "opus_6kbps"), (new, "opus_12kbps")]
        for metric, label in (("mel_distance", "mel dist (lower is better)"), ("pesq_wb", "PESQ-wb"), ("stoi", "STOI"),
                              ("whisper_cer", "Whisper CER")):
            vals = [None if rel is None else (src.get(rel, f"figures.fidelity.{domain}.{system}") or {}).get(metric)
                    for rel, system in systems]
            if vals[1] is None and vals[4] is None:  # neither this codec nor Opus has the metric in this domain
                continue
            rows.append([domain.replace("_", " "), label] + [fmt(v) if v is not None else "" for v in vals]
                        + [f"`{old}.json`" if old else "no run on these clips"])
    head = (f"`{new}.json` beside the previous codec on the same clips of each domain (Opus from `{new}.json`'s "
            f"run):")
    return head + "\n\n" + table(["domain", "metric", "previous 6 kbps", "this 6 kbps", "previous 3 kbps",
                                    "this 3 kbps", "Opus 6 kbps", "Opus 12 kbps", "previous from"], rows)


def tts_figures(src: Sources) -> str:
    f = "figures.tts"
    cols = ("generated", "codec", "engine")

    def row(label: str, key: str, show: Callable[[Any], str] = fmt) -> list[str]:
        return [label] + [show(src.get("tasks", f"{f}.{c}.{key}")) if key in (src.get("tasks", f"{f}.{c}") or {})
                          else "" for c in cols]

    ident = src.get("tasks", f"{f}.speaker_identification") or {}
    hits = ident.get("hits") or []
    own = src.get("tasks", f"{f}.speaker_identification_own_encoder") or {}
    rows = [row("CER under Whisper tiny.en", "cer"), row("CER over the engine's", "cer_over_engine"),
            row("WER", "wer"), row("CER under PocketSphinx (second opinion)", "cer_pocketsphinx"), row("DNSMOS overall", "dnsmos_ovrl"), row("DNSMOS signal", "dnsmos_sig"),
            row("DNSMOS P.808", "dnsmos_p808"),
            row("Resemblyzer cosine to the row's own recording", "speaker_sim"),
            row("Resemblyzer cosine to another speaker's recording", "other_speaker_sim"),
            [f"prompted speaker identified among the {fmt(ident.get('speakers'))} held-out ones (Resemblyzer)",
             f"{pct(ident.get('identified'))} ({sum(hits)} of {len(hits)}; margin {fmt(ident.get('margin_mean'))})",
             "", pct(ident.get("engine_identified"))],
            row("own speaker encoder's cosine to the row's own recording (in-domain)", "speaker_sim_own"),
            ["prompted speaker identified (own speaker encoder, in-domain)",
             f"{pct(own.get('identified'))} ({sum(own.get('hits') or [])} of {len(own.get('hits') or [])})", "",
             pct(own.get("engine_identified"))]]
    return (table(["", "generated", "codec resynthesis", "engine"], rows) + "\n\n"
            + targets_table(src, "tasks", [("CER over the engine's", "tts_cer_over_engine"),
                                            ("speaker identified", "tts_speaker_identified_share"),
                                            ("10 s of speech, x real time", "tts_10s_x_realtime")]))


def tts_status(src: Sources) -> str:
    """The TTS card's status line: its two quality targets, as ``tasks.json`` holds them."""
    cer, ident = src.target("tasks", "tts_cer_over_engine"), src.target("tasks", "tts_speaker_identified_share")
    hits = src.get("tasks", "figures.tts.speaker_identification.hits") or []
    return (f"CER {fmt(cer and cer['value'])}x the engine's, bar {bar(cer)}: {met(cer)}; an unseen speaker's prompt "
            f"is identified in {pct(ident and ident['value'])} of the {len(hits)} benchmark outputs, bar {bar(ident)}: "
            f"{met(ident)}")


def tagged_figures(task: str, this: str) -> Callable[[Sources], str]:
    """A music / sfx generator's test figures from ``tasks.json``, beside the task's other generator, the codec floor
    and the real renders, and the task's targets."""

    def render(src: Sources) -> str:
        base = f"figures.{task}.by_generator"
        gens = src.get("tasks", base) or {}
        order = [this] + [g for g in gens if g != this]
        cols = [(f"{GENERATOR_NAMES.get(g, g)}{' (this model)' if g == this else ''}", f"{base}.{g}.generated")
                for g in order]
        cols += [("codec resynthesis (floor)", f"{base}.{this}.codec"), ("real renders", f"{base}.{this}.reference")]
        fields = sorted({k.removeprefix("tag_acc_") for _, p in cols for k in (src.get("tasks", p) or {})
                         if k.startswith("tag_acc_") and k not in ("tag_acc_mean", "tag_acc_with_domain", "tag_acc_domain")})

        def row(label: str, key: str) -> list[str]:
            return [label] + [fmt((src.get("tasks", p) or {}).get(key)) if key in (src.get("tasks", p) or {}) else ""
                              for _, p in cols]

        rows = [row(f"tag accuracy ({', '.join(fields)}; not the domain)", "tag_acc")]
        rows += [row(f"  {field}", f"tag_acc_{field}") for field in fields if len(fields) > 1]
        rows += [row(f"heard as {task} at all (domain, apart)", "tag_acc_domain"), row("CLAP score", "clap"),
                 row("KL (tagger's class distributions)", "kl"), row("FAD (tagger embeddings)", "fad")]
        rows.append(["tag accuracy over the real renders'"] + [fmt(src.get("tasks", f"{base}.{g}.tag_acc_ratio"))
                                                                for g in order] + ["", ""])
        if task == "music":
            rows.append(["melody chroma cosine with the melody given (without)"]
                        + [f"{fmt(src.get('tasks', f'{base}.{g}.melody.chroma_cosine_with_melody'))} "
                           f"({fmt(src.get('tasks', f'{base}.{g}.melody.chroma_cosine_without_melody'))})"
                           for g in order] + ["", ""])
        rows.append(["10 s on 2 threads, x real time"]
                    + [fmt(src.get("tasks", f"figures.speed.{task}.by_generator.{g}.x_realtime")) for g in order] + ["", ""])
        t = src.target("tasks", f"{task}_tag_accuracy_over_real_renders")
        default = src.get("tasks", f"figures.{task}.generator")
        head = (f"`benchmarks/results/tasks.json`, the first {fmt(src.get('tasks', 'figures.items_per_task'))} captioned "
                f"held-out test clips at most (`{t['command'] if t else MISSING}`); the task's default generator: {GENERATOR_NAMES.get(default, default)}; "
                "scored by the project's tagger and CLAP-style model (in-domain judges, trained on the project's renders):")
        names = [(f"{task} tag accuracy over the real renders' (default generator)", f"{task}_tag_accuracy_over_real_renders")]
        if task == "music":
            names.append(("melody chroma cosine (the generator for melody requests)", "music_melody_chroma_cosine"))
        names.append((f"10 s of {task}, x real time (default generator)", f"{task}_10s_x_realtime"))
        out = head + "\n\n" + table([""] + [c for c, _ in cols], rows) + "\n\n" + targets_table(src, "tasks", names)
        if (src.root / "benchmarks/results/realdist.json").exists():  # against real recordings, third-party judges
            out += "\n\n" + realdist_paragraph(
                src, task, order, "aisfx", "issue 25: 0.7x today's",
                f"Against real held-out recordings (`benchmarks/results/realdist.json`, "
                f"{fmt(src.get('realdist', f'figures.{task}.clips_per_set'))} clips a set; Fréchet distance in the "
                "third-party aisfx embedding, lower is closer): real recordings against real")
            if task == "music":  # a third-party music network too
                out += "\n\n" + realdist_paragraph(
                    src, task, order, "basic-pitch", "0.7x the first measurement",
                    "In the music network of the basic-pitch wheel (note, onset and pitch-contour statistics of a "
                    "note-transcription network trained on real recordings): real against real")
        return out

    return render


def realdist_paragraph(src: Sources, task: str, order: list[str], emb: str, goal: str, lead: str) -> str:
    """``realdist.json``'s Fréchet distances of ``task`` in embedding ``emb`` (real against real, the codec's
    resynthesis, each generator in ``order``), after ``lead``, and their targets' table."""
    fd = f"figures.{task}.fd.{emb}"
    return (f"{lead} {fmt(src.get('realdist', f'{fd}.real (half A)'))}, the codec's resynthesis "
            f"{fmt(src.get('realdist', f'{fd}.codec resynthesis'))}, "
            + ", ".join(f"{GENERATOR_NAMES.get(g, g)} {fmt(src.get('realdist', f'{fd}.generated ({g})'))}"
                        for g in order) + ".\n\n"
            + targets_table(src, "realdist", [(f"{GENERATOR_NAMES.get(g, g)}: distance to real recordings ({goal})",
                                              f"{task}_{g}_fd_to_real_{emb}") for g in order]))


def free_prompts(task: str) -> Callable[[Sources], str]:
    """Free-text prompts against canonical captions (``prompts.json``): each model measured, tags-only and
    text-conditioned, with issue 25's two bars."""

    def render(src: Sources) -> str:
        fig = src.doc("prompts").get("figures", {}).get(task)
        if not fig:
            return f"{MISSING} (`benchmarks/results/prompts.json` has no {task} figures)"
        rows, names = [], []
        for label, m in fig["models"].items():
            kind = "text-conditioned" if m.get("text_conditioned") else "tags only"
            where = "the shipped model at the time of the run" if label == "shipped" else f"`{label.removeprefix('candidate ')}`"
            rows.append([f"{GENERATOR_NAMES.get(m['generator'], m['generator'])}, {kind} ({where})",
                         fmt(m["clap_ratio"]), f"{fmt(m['clap_prompt'])} / {fmt(m['clap_canonical'])}",
                         fmt(m["tag_accuracy"]), fmt(m["tag_accuracy_over_real"])])
            short = "shipped" if label == "shipped" else "candidate"
            names += [(f"{kind}: text-audio score, free prompt over canonical caption",
                       f"{task}_{short}_free_prompt_clap_ratio"),
                      (f"{kind}: tag accuracy over the real recordings'", f"{task}_{short}_free_prompt_tag_accuracy_over_real")]
        nov = fig.get("prompt_novelty") or []
        head = (f"`benchmarks/results/prompts.json`: {len(nov)} hand-written {task} prompts (`benchmarks/prompts.yaml`), "
                f"phrased unlike the training captions (each prompt's highest cosine to any training caption or "
                f"paraphrase, all-MiniLM-L6-v2: mean {fmt(sum(nov) / len(nov) if nov else None)}, at most "
                f"{fmt(max(nov) if nov else None)}), each rendered beside a canonical caption asking for the same "
                f"thing, same seed; the project's CLAP-style model and tagger (in-domain judges). The tagger reads the "
                f"held-out test clips of `{fig.get('dataset')}` at {fmt(fig.get('real_tag_accuracy'))} on the same "
                f"fields ({', '.join(fig.get('fields', []))}):")
        return (head + "\n\n" + table(["model", "text-audio score ratio", "score: prompt / canonical render",
                                         "tag accuracy", "over real recordings'"], rows)
                + "\n\n" + targets_table(src, "prompts", names))

    return render


def music_longform(src: Sources) -> str:
    """``longform.json``: 2-minute pieces by sliding windows, against issue 25's bars (no silent second, no loops)."""
    doc = src.doc("longform")
    quick = " (a `--quick` run)" if doc.get("quick") else ""
    rows = []
    for g in ("flow", "lm"):
        name = GENERATOR_NAMES.get(g, g)
        rows += [(f"{name}: 1 s windows below -40 dBFS", f"{g}_windows_below_40dbfs"),
                 (f"{name}: most alike 10 s windows (level statistics) over real recordings' 95th percentile",
                  f"{g}_max_window_similarity_stats_over_real_p95"),
                 (f"{name}: most alike 10 s windows (log-mel sequence) over real recordings' 95th percentile",
                  f"{g}_max_window_similarity_seq_over_real_p95")]
    return (f"`benchmarks/results/longform.json`{quick}: 120 s pieces (several prompts and seeds) rendered by sliding "
            "windows, against the real music test split:\n\n" + targets_table(src, "longform", rows))


PAIRED_METRICS = {"tag_acc": "tag accuracy", "clap": "CLAP score", "chroma_cosine": "melody chroma cosine"}


def candidate_compare(rels: tuple[str, ...]) -> Callable[[Sources], str]:
    """benchmarks/compare.py runs (``compare-*.json``): each candidate against the model then shipped, paired on the
    same captions and seeds, a row per run and metric."""

    def render(src: Sources) -> str:
        rows = []
        for rel in rels:
            f = src.doc(rel).get("figures") or {}
            for key, label in PAIRED_METRICS.items():
                if key not in (f.get("paired") or {}):
                    continue
                rows.append([f"`{f.get('candidate_model')}`", f"{f.get('items')} {f.get('split')} clips of "
                             f"`{f.get('data')}`", label, fmt(f["shipped"].get(key)), fmt(f["candidate"].get(key)),
                             paired(f["paired"][key]), f"`{rel}.json`"])
        return table(["candidate", "clips", "measure", "base model", "candidate", "difference", "from"], rows)

    return render


def generator_choice(task: str) -> Callable[[Sources], str]:
    """The measurement behind ``checkpoints/<task>/generators.json``'s default, as that file records it."""

    def render(src: Sources) -> str:
        rel = f"checkpoints/{task}/generators.json"
        default = src.get(rel, "default")
        measured = src.get(rel, "measured") or {}
        parts = [f"{GENERATOR_NAMES.get(g, g)} {fmt(m.get('tag_acc'))}" for g, m in
                 sorted(measured.items(), key=lambda kv: kv[0] != default)]
        return (f"`generators.json` ({src.get(rel, 'date')}): default **{GENERATOR_NAMES.get(default, default)}**, by tag "
                f"accuracy as measured for the choice, domain field included ({', '.join(parts)})")

    return render


def paired(d: dict | None) -> str:
    """``mean ± se`` of a paired difference, signed."""
    return MISSING if not d else f"{d['mean']:+.3f} ± {d['se']:.3f}"


def speech_decoder(rel: str, baseline: str, candidate: str) -> Callable[[Sources], str]:
    """benchmarks/decoder.py --task tts: a candidate speech decoder against a baseline on the same codes, resynthesis
    (the engine's speech coded and decoded both ways) and generated (the same TTS tokens decoded both ways)."""

    def render(src: Sources) -> str:
        s = src.get(rel, "figures.summary") or {}

        def v(system: str, metric: str) -> Any:
            return (s.get(system) or {}).get(metric)

        def with_ratio(system: str) -> str:
            return f"{fmt(v(system, 'cer'))} ({fmt(v(system, 'cer_over_engine'))}x)"

        rows = [["resynthesis CER (PocketSphinx; over the engine's)", fmt(v("engine", "cer")), with_ratio("baseline"),
                 with_ratio("candidate"), paired(src.get(rel, "figures.resynthesis_cer_candidate_minus_baseline"))],
                ["generated CER (over the engine's)", "", with_ratio("baseline_generated"),
                 with_ratio("candidate_generated"), paired(src.get(rel, "figures.generated_cer_candidate_minus_baseline"))]]
        if "speaker_margin" in (s.get("candidate_generated") or {}):
            rows.append(["generated speaker margin (cosine to the row's own recording minus to another speaker's)", "",
                         fmt(v("baseline_generated", "speaker_margin")), fmt(v("candidate_generated", "speaker_margin")),
                         paired(src.get(rel, "figures.generated_speaker_margin_candidate_minus_baseline"))])
        rows += [["resynthesis STOI / PESQ-wb", "", *(f"{fmt(v(k, 'stoi'))} / {fmt(v(k, 'pesq_wb'))}"
                                                        for k in ("baseline", "candidate")), ""],
                 ["resynthesis mel distance / SI-SDR (dB)", "", *(f"{fmt(v(k, 'mel_distance'))} / {fmt(v(k, 'si_sdr'))}"
                                                                   for k in ("baseline", "candidate")), ""],
                 ["DNSMOS overall, resynthesis / generated", fmt(v("engine", "dnsmos_ovrl")),
                  *(f"{fmt(v(k, 'dnsmos_ovrl'))} / {fmt(v(k + '_generated', 'dnsmos_ovrl'))}" for k in ("baseline", "candidate")), ""]]
        head = (f"`benchmarks/results/{rel}.json` ({src.doc(rel).get('date', MISSING)}; {fmt(src.get(rel, 'figures.clips'))} "
                f"clips of the {src.get(rel, 'figures.split')} split):")
        return head + "\n\n" + table(["", "engine", baseline, candidate, f"paired difference ({candidate} - {baseline})"], rows)

    return render


def music_decoder(rel: str) -> Callable[[Sources], str]:
    """benchmarks/decoder.py --task music: the fine-tuned latent decoder against the codec's on the same latents."""

    def render(src: Sources) -> str:
        s = src.get(rel, "figures.summary") or {}
        pair = src.get(rel, "figures.paired") or {}
        date = src.doc(rel).get("date", MISSING)
        acc = "tag accuracy" + (" (the domain field counted, as scored then)" if str(date) < TAG_ACC_WITHOUT_DOMAIN else "")
        rows = []
        for what, general, tuned in (("resynthesis", "general", "tuned"), ("flow output", "generated_general", "generated_tuned")):
            for label, metric in ((acc, "tag_acc"), ("instrument recognised", "instrument_acc"), ("CLAP score", "clap")):
                real = (s.get("reference") or {}).get(metric) if what == "resynthesis" else None
                rows.append([f"{what}: {label}", fmt((s.get(general) or {}).get(metric)),
                             fmt((s.get(tuned) or {}).get(metric)) + (f" (real renders {fmt(real)})" if real is not None else ""),
                             paired(pair.get(f"{tuned}_minus_{general}_{metric}")) if f"{tuned}_minus_{general}_{metric}" in pair else ""])
        head = f"`benchmarks/results/{rel}.json` ({date}; {fmt(src.get(rel, 'figures.clips'))} clips of the {src.get(rel, 'figures.split')} split):"
        return head + "\n\n" + table(["", "codec's decoder", "this decoder", "paired difference"], rows)

    return render


def eval_validation(name: str, rows: list[tuple[str, tuple[str, ...], Callable[[Any], str]]]) -> Callable[[Sources], str]:
    """An eval model's validation figures, from the ``validation`` its ``config.json`` holds: one row per
    (label, keys, format), the keys' values joined by " / "."""

    def render(src: Sources) -> str:
        rel = f"checkpoints/eval/{name}/config.json"
        step = src.get(rel, "validation.step")
        body = [[label, " / ".join(show(src.get(rel, f"validation.{k}")) for k in keys)] for label, keys, show in rows]
        return f"From `config.json` (`validation`, step {fmt(step)}):\n\n" + table(["figure", "value"], body)

    return render


PROFILE_PARTS = {"frontend": "front-end: sentences, espeak-ng phonemes and timing", "lm_transformer":
                 "token LM: layer norms, residuals, GELU", "lm_attention": "token LM: attention (rotary, KV cache, "
                 "scaled dot-product)", "lm_linears": "token LM: linear layers (q/k/v, out, MLP)", "lm_heads":
                 "token LM: the K output heads", "lm_sampling": "token LM: sampling (top-k, draw)",
                 "decoder": "codec decoder (phone-informed, streaming)", "other": "other (per-step Python, embedding, "
                 "conditioning, fades)"}


def tts_profile(src: Sources) -> str:
    """benchmarks/tts_profile.py: each part's CPU-time real-time factor (and share) per set-up, one thread."""
    runs = src.get("tts_profile", "figures.runs") or {}
    names = [("fp32_step_decoding", "fp32, one decode per step (before)"), ("fp32", "fp32"), ("int8", "int8")]

    def cell(name: str, part: str) -> str:
        run = runs.get(name) or {}
        return (f"{fmt((run.get('rtf_cpu_by_part') or {}).get(part))} "
                f"({pct((run.get('share_by_part') or {}).get(part))})")

    rows = [[label] + [cell(n, p) for n, _ in names] for p, label in PROFILE_PARTS.items()]
    rows.append(["**total**"] + [f"**{fmt((runs.get(n) or {}).get('rtf_cpu'))}**" for n, _ in names])
    prompt = src.get("tts_profile", "figures.recorded_prompt") or {}
    n = len(src.get("tts_profile", "figures.sentences") or [])
    return (f"CPU seconds per audio second on one thread (share of the total), {n} sentences of benchmarks/tts.py, "
            "built-in voice, `python benchmarks/tts_profile.py`:\n\n"
            + table(["part"] + [label for _, label in names], rows)
            + f"\n\nOnce per recorded voice prompt (then cached): accent detection "
            f"{fmt(prompt.get('accent_detection_seconds'))} CPU s, encoding {fmt(prompt.get('encode_seconds'))} CPU s.")


def tts_precision(src: Sources) -> str:
    """benchmarks/tts_precision.py: int8 against fp32, paired Whisper CER and one-thread CPU real-time factor."""
    f = "figures"
    q = src.get("tts_precision", f"{f}.quality") or {}
    sp = src.get("tts_precision", f"{f}.speed") or {}
    d = src.get("tts_precision", f"{f}.int8_minus_fp32_cer") or {}
    rows = [[name, fmt((q.get(name) or {}).get("cer")), fmt((q.get(name) or {}).get("wer")),
             fmt((sp.get(name) or {}).get("rtf_cpu"))] for name in ("fp32", "int8")]
    return (table(["precision", "Whisper CER", "WER", "CPU real-time factor, 1 thread"], rows)
            + f"\n\nint8 minus fp32 CER, paired over the {len(src.get('tts_precision', f'{f}.sentences') or [])} "
            f"sentences and seeds: {fmt(d.get('mean'))} ± {fmt(d.get('se'))} (standard error); "
            f"fp32 with one decode per step: {fmt((sp.get('fp32_step_decoding') or {}).get('rtf_cpu'))}.")


def kv_cache(src: Sources) -> str:
    """benchmarks/kv_cache.py: the TTS's KV cache in bfloat16 against float32 (fp32 weights)."""
    f = "figures"
    cer = src.get("kv_cache", f"{f}.cer") or {}
    d = src.get("kv_cache", f"{f}.bf16_minus_fp32_cer") or {}
    tf = src.get("kv_cache", f"{f}.teacher_forced") or {}
    ms = src.get("kv_cache", f"{f}.engine_step_ms_8_streams") or {}
    rows = [[label, fmt(cer.get(name)), fmt((tf.get(name) or {}).get("sequence_kl_nats")),
             fmt((tf.get(name) or {}).get("top_token_agreement")), fmt(ms.get(name))]
            for name, label in (("fp32", "fp32 cache"), ("bf16", "bfloat16 cache"), ("int8", "int8 weights, bfloat16 cache"))]
    return (table(["set-up (fp32 weights unless named)", "Whisper CER", "sequence KL to fp32 (nats)",
                   "same most likely token", "engine step, 8 streams (ms)"], rows)
            + f"\n\nbfloat16 minus fp32 CER, paired over {src.get('kv_cache', f'{f}.items') or MISSING} items: "
            f"{fmt(d.get('mean'))} ± {fmt(d.get('se'))} (standard error); KL over "
            f"{tf.get('sentences', MISSING)} sentences of about {fmt(tf.get('slots_per_sentence'))} slots.")


TAGGER_FIELDS = ("domain", "instrument", "mode", "tempo", "collection", "genre", "family", "mean")

#: file -> region name -> renderer. Every region listed must be in its file, and every marker in a file listed here.
REGIONS: dict[str, dict[str, Callable[[Sources], str]]] = {
    "README.md": {"headline": readme_headline},
    "checkpoints/codec/MODEL.md": {"codec-speed": codec_speed, "codec-fidelity": codec_fidelity,
                                   "codec-targets": codec_targets},
    "checkpoints/codec-v2/MODEL.md": {"codec-v2-speed": functools.partial(codec_speed, rel="codec-v2"),
                                      "codec-v2-fidelity": functools.partial(codec_fidelity, rel="codec-v2"),
                                      "codec-v2-targets": functools.partial(codec_targets, rel="codec-v2"),
                                      "codec-v2-compare": codec_compare,
                                      "codec-v2-continued": functools.partial(codec_compare, new="codec-v3-probe",
                                                                              olds=("codec-v2",))},
    "checkpoints/tts/MODEL.md": {"tts-status": tts_status, "tts": tts_figures, "tts-profile": tts_profile,
                                 "tts-precision": tts_precision, "kv-cache": kv_cache},
    "checkpoints/tts/decoder/MODEL.md": {
        "decoder-voice-valid": speech_decoder("decoder-voice-valid", "stage 1", "stage 2"),
        "decoder-phones-valid": speech_decoder("decoder-phones-valid", "plain speech decoder", "stage 1"),
        "decoder-test": speech_decoder("decoder", "codec's decoder", "stage 1")},
    "checkpoints/music/flow/decoder/MODEL.md": {"decoder-music": music_decoder("decoder-music")},
    "checkpoints/music/MODEL.md": {"music-choice": generator_choice("music"), "music-lm": tagged_figures("music", "lm")},
    "checkpoints/music/flow/MODEL.md": {"music-flow": tagged_figures("music", "flow"), "music-prompts": free_prompts("music"),
                                        "music-longform": music_longform,
                                        "music-text-compare": candidate_compare(("compare-music-text",))},
    "checkpoints/sfx/MODEL.md": {"sfx-choice": generator_choice("sfx"), "sfx-lm": tagged_figures("sfx", "lm"),
                                 "sfx-prompts": free_prompts("sfx"), "sfx-text-compare": candidate_compare(
                                     ("compare-sfx-text-60", "compare-sfx-text", "compare-sfx-text-best-60"))},
    "checkpoints/sfx/flow/MODEL.md": {"sfx-choice": generator_choice("sfx"), "sfx-flow": tagged_figures("sfx", "flow")},
    "checkpoints/eval/speaker/MODEL.md": {"speaker": eval_validation("speaker", [
        ("EER: valid (seen speakers, new utterances) / held-out speakers (never trained on)",
         ("valid_eer", "heldout_eer"), pct),
        ("same-speaker cosine: valid / held-out", ("valid_same_speaker_cosine", "heldout_same_speaker_cosine"), fmt),
        ("other-speaker cosine: valid / held-out", ("valid_other_speaker_cosine", "heldout_other_speaker_cosine"), fmt)])},
    "checkpoints/eval/tagger/MODEL.md": {"tagger": eval_validation("tagger", [
        (f"{f}: test / valid accuracy", (f"test_acc_{f}", f"valid_acc_{f}"), pct) for f in TAGGER_FIELDS])},
    "checkpoints/eval/clap/MODEL.md": {"clap": eval_validation("clap", [
        ("text-to-audio recall@1: test / valid", ("test_recall@1", "valid_recall@1"), pct),
        ("recall@5: test / valid", ("test_recall@5", "valid_recall@5"), pct),
        ("pairs: test / valid", ("test_pairs", "valid_pairs"), lambda v: MISSING if v is None else f"{v:.0f}")])},
}


def render_file(text: str, regions: dict[str, Callable[[Sources], str]], src: Sources, where: str) -> tuple[str, list[str]]:
    """``text`` with every generated region rewritten, and the problems found (unknown or absent markers)."""
    problems, seen = [], set()

    def sub(m: re.Match) -> str:
        name, body = m["name"], m["body"]
        seen.add(name)
        if name not in regions:
            problems.append(f"{where}: marker figures:{name} has no generator (known: {', '.join(regions) or 'none'})")
            return m[0]
        new = regions[name](src)
        new = f"\n{new}\n" if body.startswith("\n") else new  # a block region keeps its lines, an inline one its line
        return f"<!-- figures:{name} begin -->{new}<!-- figures:{name} end -->"

    out = MARKER.sub(sub, text)
    problems += [f"{where}: region figures:{n} is missing (add its begin/end markers)" for n in regions if n not in seen]
    return out, problems


def run(root: Path, write: bool) -> list[str]:
    """Render every region under ``root``; write the files (``write``) or return every disagreement."""
    src, problems = Sources(root), []
    for rel, regions in REGIONS.items():
        path = root / rel
        if not path.exists():
            problems.append(f"{rel}: missing")
            continue
        text = path.read_text()
        new, found = render_file(text, regions, src, rel)
        problems += found
        if new != text:
            if write:
                path.write_text(new)
            else:
                diff = difflib.unified_diff(text.splitlines(), new.splitlines(), f"{rel} (as written)",
                                            f"{rel} (from the results files)", n=0, lineterm="")
                problems.append(f"{rel}: generated figures disagree with the results files\n" + "\n".join(diff))
    for m in dict.fromkeys(src.missing):
        print(f"figures: not in the results files: {m}", file=sys.stderr)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="rewrite the generated regions")
    mode.add_argument("--check", action="store_true", help="exit 1 if any generated region disagrees")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the repository (default: this one)")
    args = parser.parse_args(argv)
    problems = run(args.root, args.write)
    for p in problems:
        print(p, file=sys.stderr)
    if args.check and problems:
        print(f"{len(problems)} disagreement(s); run `python scripts/figures.py --write`", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
