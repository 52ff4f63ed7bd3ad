"""Typer options every training command shares (one definition, so their help and defaults never drift)."""
from __future__ import annotations

import typer

RUN_OUT = typer.Option(..., "--out", "-o", help="Run folder: log.jsonl, last/ (resumable), model/ (the checkpoint).")
VAL_EVERY = typer.Option(500, min=1, help="Validate every N steps.")
CKPT_EVERY = typer.Option(500, min=1, help="Save OUT/last and OUT/model every N steps.")
LOG_EVERY = typer.Option(25, min=1, help="Log the training loss every N steps.")
SEED = typer.Option(0, help="Random seed.")
DEVICE = typer.Option("auto", help="auto, cpu or cuda.")
RESUME = typer.Option(False, help="Continue from OUT/last.")
UNTIL = typer.Option(None, help="Stop after this step (checkpointed); the schedule still follows --steps.")
TIME_BUDGET = typer.Option(None, min=1.0, help="Wall-time budget in seconds (a lent GPU): the run is shortened to "
                           "the steps that fit and the learning-rate schedule ends there.")
THREADS = typer.Option(0, help="CPU threads for torch (0: leave torch's default).")
KEEP_BEST = typer.Option(False, help="Also export the model at its lowest validation loss to OUT/best.")
INIT = typer.Option(None, "--init", help="Start from a trained model folder (fine-tuning, e.g. checkpoints/music/flow): "
                    "its architecture, weights, tags and melody conditioner; --preset (and the flow's --patch, the "
                    "LM's --pattern) then come from it.")
