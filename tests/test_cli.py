import os
import subprocess
import sys

import pytest

SUBCOMMANDS = [[], ["version"], ["demo"], ["data"], ["data", "build"], ["data", "import"], ["data", "stats"],
               ["codec"], ["codec", "encode"], ["codec", "decode"], ["codec", "roundtrip"], ["codec", "tokenize"],
               ["codec", "latents"], ["train"], ["train", "codec"], ["train", "lm"], ["train", "flow"]]


def tw(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tokenwave", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("cmd", SUBCOMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_subcommand_has_help(cmd):
    run = tw(*cmd, "--help")
    assert run.returncode == 0, run.stderr
    assert "Usage" in run.stdout and "--help" in run.stdout


def one_error_line(run):
    assert run.returncode == 2, (run.stdout, run.stderr)
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    return lines[0]


def test_unknown_domain(tmp_path):
    run = tw("data", "build", "podcasts", "--out", str(tmp_path / "x"))
    assert run.returncode == 2 and "podcasts" in run.stderr and "speech" in run.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("minutes", ["-1", "0", "1e9", "nan"])
def test_bad_minutes(tmp_path, minutes):
    line = one_error_line(tw("data", "build", "sfx", "--minutes", minutes, "--out", str(tmp_path / "x")))
    assert "--minutes" in line and "fix:" in line
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_voice_set_is_for_speech_only(tmp_path):
    line = one_error_line(tw("data", "build", "music", "--voices", "wide", "--out", str(tmp_path / "x")))
    assert "--voices" in line and "speech" in line and "fix:" in line
    assert not (tmp_path / "x").exists()
    run = tw("data", "build", "speech", "--voices", "huge", "--out", str(tmp_path / "x"))
    assert run.returncode == 2 and "huge" in run.stderr and "wide" in run.stderr


def test_unwritable_output(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    line = one_error_line(tw("data", "build", "sfx", "--minutes", "0.1", "--out", str(blocker / "sub")))
    assert "is a file" in line and "fix:" in line
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "mine.txt").write_text("keep")
    line = one_error_line(tw("data", "build", "sfx", "--minutes", "0.1", "--out", str(busy)))
    assert "--overwrite" in line
    assert [p.name for p in busy.iterdir()] == ["mine.txt"]


def test_missing_system_package(tmp_path):
    # a PATH without espeak-ng / flite / fluidsynth: the builder must say which Debian package to install
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(sys.executable, bindir / "python")
    env = {**os.environ, "PATH": str(bindir)}
    line = one_error_line(tw("data", "build", "speech", "--minutes", "0.1", "--out", str(tmp_path / "s"), env=env))
    assert "apt-get install" in line and "espeak-ng" in line
    line = one_error_line(tw("data", "build", "music", "--minutes", "0.1", "--out", str(tmp_path / "m"), env=env))
    assert "apt-get install" in line and "fluidsynth" in line
    assert not (tmp_path / "s").exists() and not (tmp_path / "m").exists()


def test_stats_on_missing_dataset(tmp_path):
    line = one_error_line(tw("data", "stats", str(tmp_path)))
    assert "manifest" in line and "tokenwave data build" in line
