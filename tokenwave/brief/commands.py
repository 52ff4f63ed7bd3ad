"""`tokenwave brief BRIEF.yaml [--json] [--out DIR] [--run]`, registered on the main CLI app."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from tokenwave.brief.plan import make_plan
from tokenwave.brief.schema import load_brief
from tokenwave.fileio import atomic_write_text


def brief(
    path: Path = typer.Argument(..., help="The brief (YAML): task, duration, style, voice, license, latency, hosting, budget."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON instead of Markdown."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write plan.md and plan.json (and, with --run, the audio) here."),
    run: bool = typer.Option(False, "--run", help="Carry the plan out with this project's models: render the candidates "
                             "with the stated seeds, score them, write the winner and a report."),
    consent_check: bool = typer.Option(True, "--consent-check/--no-consent-check",
                                       help="Operator only: skip the voice-consent check (recorded in the metadata)."),
    model: Optional[Path] = typer.Option(None, "--model", help="With --run: the task's checkpoint folder "
                                         "(default: checkpoints/tts, music or sfx)."),
) -> None:
    """Validate an audio brief and print its production plan (model, hosting, prompt, chain, seeds, eval plan)."""
    from tokenwave.brief.render import plan_markdown  # lazy: keeps --help fast

    b = load_brief(path)
    if run:
        from tokenwave.brief.run import run_brief  # lazy: keeps --help free of torch (the task models)

        folder = out or Path("brief-runs") / path.stem
        report = run_brief(b, folder, consent_check=consent_check, model_dir=model)
        typer.echo((folder / "report.md").read_text() if not as_json else json.dumps(report, indent=2))
        return
    plan = make_plan(b)
    text = json.dumps(plan, indent=2, ensure_ascii=False) if as_json else plan_markdown(plan)
    if out:
        atomic_write_text(out / "plan.md", plan_markdown(plan))
        atomic_write_text(out / "plan.json", json.dumps(plan, indent=2, ensure_ascii=False) + "\n")
    typer.echo(text)


def register(app: typer.Typer) -> None:
    """Add ``tokenwave brief``."""
    app.command("brief")(brief)
