"""`tokenwave brief BRIEF --run`: carry a plan out with this project's models: render one candidate per seed,
score each with the evaluation suite, keep the winner, write a report.

    OUT/candidates/seed-N.wav (+ .json metadata)   every candidate
    OUT/winner.wav (+ .json)                        the chosen one
    OUT/plan.md, OUT/plan.json                      the plan
    OUT/report.md, OUT/report.json                  scores, gates, the choice and how to reproduce it
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from tokenwave.audio import load_audio, save_audio
from tokenwave.brief.plan import make_plan
from tokenwave.brief.render import plan_markdown
from tokenwave.brief.schema import Brief, BriefError
from tokenwave.eval.asr import cer, transcribe
from tokenwave.eval.clap import load_clap
from tokenwave.eval.mos import dnsmos
from tokenwave.fileio import atomic_write_text
from tokenwave.safety.consent import check_voice_prompt
from tokenwave.safety.watermark import detect_watermark
from tokenwave.tasks import Pipeline

Scorer = Callable[[str, str, np.ndarray, int], dict]


def default_scorer(task: str, prompt: str, wav: np.ndarray, sr: int) -> dict:
    """Metrics of one candidate from tokenwave.eval: CER and DNSMOS for speech, CLAP-style score for music and sfx;
    the watermark check for all. A metric whose model is missing is reported as ``None`` with the reason."""
    scores: dict = {}
    wm = detect_watermark(wav, sr) if len(wav) >= sr else None
    scores["watermark"] = None if wm is None else bool(wm.present)
    if task in ("tts", "voice_clone"):
        scores["cer"] = _try(scores, "cer", lambda: _cer(prompt, wav, sr))
        scores["dnsmos_ovrl"] = _try(scores, "dnsmos_ovrl", lambda: _dnsmos(wav, sr))
    else:
        scores["clap_score"] = _try(scores, "clap_score", lambda: _clap(prompt, wav, sr))
    return scores


def _try(scores: dict, name: str, fn):
    try:
        return float(fn())
    except Exception as err:  # a missing eval model must not sink the run: say which metric is missing and why
        scores[f"{name}_error"] = f"{type(err).__name__}: {getattr(err, 'message', err)}"
        return None


def _cer(text, wav, sr):
    return cer(text, transcribe(wav, sr))


def _dnsmos(wav, sr):
    return dnsmos(wav, sr)["ovrl"]


def _clap(text, wav, sr):
    return load_clap().score(text, wav, sr)


GATES = {"cer": ("<=", 0.05), "dnsmos_ovrl": (">=", 3.0)}
LOWER_IS_BETTER = {"cer"}


def _passes(scores: dict) -> tuple[bool, list[str]]:
    failed = []
    for name, (op, goal) in GATES.items():
        v = scores.get(name)
        if v is not None and not (v <= goal if op == "<=" else v >= goal):
            failed.append(f"{name} {v:.3g} {'>' if op == '<=' else '<'} {goal:g}")
    if scores.get("watermark") is False:
        failed.append("watermark missing")
    return not failed, failed


def _render(pipe, brief: Brief, plan: dict, seed: int, voice):
    text = plan["prompt"]["text"]
    if brief.task in ("tts", "voice_clone"):
        return pipe.tts(brief.text, voice=voice, seed=seed)
    if brief.task == "music":
        return pipe.music(text, duration=brief.duration, seed=seed)
    return pipe.sfx(text, duration=brief.duration, seed=seed)


def run_brief(brief: Brief, out: str | Path, pipeline=None, scorer: Scorer | None = None,
              consent_check: bool = True, registry=None, model_dir: str | Path | None = None) -> dict:
    """Render, score and pick; returns the report dict. ``pipeline`` defaults to ``tokenwave.tasks.Pipeline.load()``
    (with ``model_dir`` as the task's checkpoint folder when given, else the shipped ``checkpoints/<task>``)."""
    plan = make_plan(brief)
    if not plan["runnable_locally"]:
        raise BriefError(f"the plan's model {plan['model']['id']} is not one of this project's, so --run cannot render it",
                         "render with the vendor's tools, or pin a tokenwave model (`model: tokenwave-...`) if one fits")
    out = Path(out)
    (out / "candidates").mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "plan.md", plan_markdown(plan))
    atomic_write_text(out / "plan.json", json.dumps(plan, indent=2, ensure_ascii=False) + "\n")
    voice, consent = brief.voice.name if brief.voice.name not in (None, "default") else None, None
    if brief.voice.prompt:
        prompt_path = Path(brief.voice.prompt)
        if not prompt_path.is_absolute() and brief.source:
            prompt_path = Path(brief.source).parent / prompt_path
        wav, sr = load_audio(prompt_path, 16000)
        consent = check_voice_prompt(wav, sr, registry, enabled=consent_check).as_metadata()
        voice = str(prompt_path)
    if pipeline is None:
        task_key = "tts" if brief.task in ("tts", "voice_clone") else brief.task
        pipeline = Pipeline.load(**({task_key: model_dir} if model_dir else {}))
    scorer = scorer or default_scorer
    primary = plan["eval_plan"]["primary"]
    prompt_for_score = brief.text if brief.task in ("tts", "voice_clone") else plan["prompt"]["text"]
    candidates = []
    for seed in plan["seed_protocol"]["seeds"]:
        audio = _render(pipeline, brief, plan, seed, voice)
        meta = {**dict(getattr(audio, "metadata", {}) or {}), "seed": seed, "brief": brief.source,
                "model": plan["model"]["id"], **({"consent": consent} if consent else {})}
        path = out / "candidates" / f"seed-{seed}.wav"
        _save(path, audio.wav, audio.sample_rate, meta)
        scores = scorer(brief.task, prompt_for_score, np.asarray(audio.wav, dtype=np.float32), audio.sample_rate)
        ok, failed = _passes(scores)
        candidates.append({"seed": seed, "file": str(path.relative_to(out)), "scores": scores, "passes": ok,
                           "failed_gates": failed, "seconds": round(len(audio.wav) / audio.sample_rate, 2)})
    winner = _pick(candidates, primary)
    shutil.copyfile(out / winner["file"], out / "winner.wav")
    shutil.copyfile(out / (winner["file"] + ".json"), out / "winner.wav.json")
    report = {"brief": brief.source, "model": plan["model"]["id"], "primary_metric": primary,
              "candidates": candidates, "winner": winner["seed"], "winner_file": "winner.wav",
              "reproduce": f"tokenwave brief {brief.source or 'BRIEF'} --run  (seed {winner['seed']} is candidate "
                           f"{plan['seed_protocol']['seeds'].index(winner['seed']) + 1})",
              "consent": consent}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(out / "report.md", report_markdown(report))
    return report


def _save(path: Path, wav, sr: int, meta: dict) -> None:
    save_audio(path, np.asarray(wav, dtype=np.float32), sr)
    atomic_write_text(path.with_name(path.name + ".json"), json.dumps(meta, indent=2, default=str) + "\n")


def _pick(candidates: list[dict], primary: str) -> dict:
    """Best primary metric among candidates that pass every gate (all candidates if none does); ties: lower seed."""
    pool = [c for c in candidates if c["passes"]] or candidates
    sign = 1.0 if primary in LOWER_IS_BETTER else -1.0

    def key(c):
        v = c["scores"].get(primary)
        return (v is None, sign * v if v is not None else 0.0, c["seed"])

    return min(pool, key=key)


def report_markdown(report: dict) -> str:
    metrics = sorted({k for c in report["candidates"] for k in c["scores"] if not k.endswith("_error")})
    lines = [f"# Brief run: {report['brief']}", "", f"Model: `{report['model']}`; primary metric: {report['primary_metric']}; "
             f"winner: seed {report['winner']} -> `{report['winner_file']}`.", "",
             "| seed | " + " | ".join(metrics) + " | gates |", "|" + " --- |" * (len(metrics) + 2)]
    for c in report["candidates"]:
        cells = [("-" if c["scores"].get(m) is None else f"{c['scores'][m]:.3g}" if isinstance(c["scores"][m], float)
                  else str(c["scores"][m])) for m in metrics]
        lines.append(f"| {c['seed']}{' (winner)' if c['seed'] == report['winner'] else ''} | " + " | ".join(cells)
                     + f" | {'pass' if c['passes'] else ', '.join(c['failed_gates'])} |")
    errors = {k: v for c in report["candidates"] for k, v in c["scores"].items() if k.endswith("_error")}
    if errors:
        lines += ["", "Metrics not computed: " + "; ".join(f"{k[:-6]}: {v}" for k, v in errors.items())]
    if report.get("consent"):
        lines += ["", f"Consent: {json.dumps(report['consent'])}"]
    lines += ["", f"Reproduce: `{report['reproduce']}`"]
    return "\n".join(lines) + "\n"
