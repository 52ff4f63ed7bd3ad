"""Checks for the Debian packages (programs and data files) that some features need."""
from __future__ import annotations

import shutil
from pathlib import Path

from tokenwave.errors import MissingSystemPackageError

#: Every Debian package the project uses; `make deps` installs these.
DEBIAN_PACKAGES = ["espeak-ng", "flite", "fluidsynth", "fluid-soundfont-gm", "ffmpeg", "opus-tools", "fortunes", "sox", "libsndfile1", "chromium"]


def cpuinfo(field: str) -> str:
    """The first ``field`` of /proc/cpuinfo ("vendor_id", "model name", ...), or "" where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def require_program(program: str, package: str) -> str:
    """Path of ``program`` on PATH, or a :class:`MissingSystemPackageError` naming the package to install."""
    path = shutil.which(program)
    if path is None:
        raise MissingSystemPackageError(f"the program `{program}`", package)
    return path


def require_file(candidates: list[str], package: str, what: str) -> Path:
    """The first existing path of ``candidates``, or a :class:`MissingSystemPackageError`."""
    for c in candidates:
        if Path(c).exists():
            return Path(c)
    raise MissingSystemPackageError(f"{what} ({candidates[0]})", package)
