"""Shared helpers for ``benchmarks/NAME.py`` scripts: one result format (see DESIGN.md, "Benchmark results").

Every script builds its parser with :func:`arg_parser` (which adds ``--quick``), checks its targets with
:func:`target`, and ends with :func:`write_result`, which writes ``benchmarks/results/NAME.json`` atomically::

    {"benchmark", "command", "quick", "date", "machine": {"cpu", "threads", "torch", "gpu"},
     "targets": [{"name", "value", "op", "target", "met", "command"}], "figures": {...every measured number...}}

Each target records the command that measured it: a new target gets the run's command, a target a partial rerun
keeps from the previous file (:func:`kept_targets`) keeps its own.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import operator
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokenwave.fileio import atomic_write_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
UNKNOWN_COMMAND = "unknown (before per-target commands)"  # a target kept from a file older than per-target commands
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


def arg_parser(description: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the ``--quick`` flag every benchmark accepts."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true",
                        help="a small subset that finishes in about a minute on 2 cores (same output format)")
    return parser


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """CPU model, torch's thread count and version, and the GPU's name (``None`` on CPU-only machines)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": _cpu_model(), "threads": torch.get_num_threads(),
            "torch": torch.__version__.split("+")[0], "gpu": gpu}


def _clean(x: Any) -> Any:
    """JSON-safe copy: floats to 5 significant digits, NaN/inf to ``None``, numpy scalars to Python numbers."""
    if hasattr(x, "item") and callable(x.item) and getattr(x, "ndim", 1) == 0:
        x = x.item()
    if isinstance(x, bool) or x is None or isinstance(x, (int, str)):
        return x
    if isinstance(x, float):
        return float(f"{x:.5g}") if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return str(x)


def target(name: str, value: float | None, op: str, goal: float) -> dict[str, Any]:
    """A target row: ``met`` is ``value op goal`` (``False`` when the value could not be measured). A value equal to
    the goal but for float rounding counts as equal (7/15 over 7/12 is 0.7999999999999999 in floats, and meets
    ``>= 0.8``; it does not meet ``> 0.8``)."""
    if op not in OPS:
        raise ValueError(f"unknown comparison {op!r}; use one of {', '.join(OPS)}")
    ok = value is not None and math.isfinite(float(value))
    if ok:
        v = float(value)
        ok = OPS[op](goal if math.isclose(v, goal, rel_tol=1e-9, abs_tol=1e-12) else v, goal)
    return {"name": name, "value": _clean(None if value is None else float(value)), "op": op, "target": goal,
            "met": bool(ok)}


def ratio(ours: float | None, baseline: float | None) -> float | None:
    """``ours / baseline``, or ``None`` if either is missing or the baseline is 0."""
    if ours is None or baseline is None or baseline == 0:
        return None
    return ours / baseline


def repo_path(path: Path) -> str:
    """``path`` relative to the repository when it lies inside it (as results record data folders), else absolute."""
    path = Path(path).resolve()
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def standard_error(values) -> float:
    """Standard error of the mean over the items (sample std / sqrt(n)); 0 for fewer than two."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0


def paired_difference(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean and standard error of ``a - b`` over the same items (two systems scored on the same clips)."""
    import numpy as np

    d = np.subtract(a, b)
    return {"mean": float(d.mean()), "se": standard_error(d)}


def command_line(script: str, argv: list[str] | None = None) -> str:
    """The command that reproduces this run, e.g. ``python benchmarks/codec.py --quick``."""
    argv = sys.argv[1:] if argv is None else argv
    return " ".join(["python", f"benchmarks/{Path(script).name}", *argv])


def kept_targets(previous: dict, keep: Callable[[dict], bool]) -> list[dict]:
    """The targets of a previous result dict that ``keep`` accepts, for a partial rerun to carry over: each keeps the
    command that measured it (:data:`UNKNOWN_COMMAND` for files written before targets recorded one)."""
    return [{**t, "command": t.get("command") or UNKNOWN_COMMAND} for t in previous.get("targets", []) if keep(t)]


def write_result(name: str, command: str, targets: list[dict], figures: dict, quick: bool,
                 machine: dict | None = None) -> dict[str, Any]:
    """Write ``benchmarks/results/NAME.json`` (atomically) and return the result dict. ``command`` is this run's;
    each target without a ``command`` of its own (the ones this run measured) is given it."""
    rows = [_clean({**t, "command": t.get("command") or command}) for t in targets]
    result = {"benchmark": name, "command": command, "quick": bool(quick), "date": _dt.date.today().isoformat(),
              "machine": machine or machine_info(), "targets": rows, "figures": _clean(figures)}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    atomic_write_text(path, json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    return result


def add_candidates(parser: argparse.ArgumentParser) -> None:
    """``--candidate TASK=FOLDER ...``: generator folders a benchmark measures beside the shipped ones."""
    parser.add_argument("--candidate", nargs="*", default=[], metavar="TASK=FOLDER",
                        help="a generator folder measured beside the shipped one, e.g. music=runs/x/model")


def candidates_by_task(parser: argparse.ArgumentParser, values: list[str], tasks: tuple[str, ...]) -> dict[str, list[Path]]:
    """``--candidate`` values -> the folders per task (a malformed one stops with the parser's error)."""
    out: dict[str, list[Path]] = {t: [] for t in tasks}
    for c in values:
        t, _, folder = c.partition("=")
        if t not in tasks or not folder:
            parser.error(f"--candidate {c!r}: use TASK=FOLDER with TASK one of {', '.join(tasks)}")
        out[t].append(Path(folder))
    return out


def median_time(fn: Callable[[], Any], runs: int, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` over ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
