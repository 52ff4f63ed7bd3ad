import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tokenwave.cli import app
from tokenwave.errors import InvalidArgumentError
from tokenwave.train.options import RunOptions

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


def command_paths(cmd=None, path=()):
    """Every command and group under ``cmd`` (default: the whole app) as its argv path."""
    cmd = cmd or typer.main.get_command(app)
    yield list(path)
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from command_paths(sub, (*path, name))


def test_every_registered_command_has_help():
    paths = list(command_paths())
    groups = {p[0] for p in paths if len(p) == 2}
    assert groups == {"data", "train", "codec", "eval", "voices"}
    assert {p[1] for p in paths if len(p) == 2 and p[0] == "train"} == {
        "codec", "decoder", "lm", "tts", "flow", "speaker", "tagger", "clap"}
    runner = CliRunner()
    for path in paths:
        res = runner.invoke(app, [*path, "--help"])
        assert res.exit_code == 0, (path, res.output)
        assert "Usage" in res.output and "--help" in res.output, path


def test_help_does_not_import_torch():
    code = ("import sys; sys.argv = ['tokenwave', '--help']\n"
            "from tokenwave.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


def train_with(monkeypatch, *argv):
    """Run ``tokenwave train ...`` with the runner replaced: -> (name, RunOptions) it was handed."""
    import tokenwave.train.run

    seen = []
    monkeypatch.setattr(tokenwave.train.run, "run_training", lambda name, make_recipe, run: seen.append((name, run)))
    res = CliRunner().invoke(app, ["train", *argv])
    if res.exception is not None:
        raise res.exception
    assert len(seen) == 1, res.output
    return seen[0]


def test_train_options_form_one_run_options(monkeypatch, tmp_path):
    name, run = train_with(monkeypatch, "codec", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--steps", "7",
                           "--preset", "tiny", "--val-every", "3", "--ckpt-every", "4", "--log-every", "2", "--seed", "5",
                           "--device", "cpu", "--threads", "1", "--resume", "--until", "6", "--time-budget", "60",
                           "--keep-best")
    assert name == "codec"
    assert run == RunOptions(out=tmp_path / "run", steps=7, val_every=3, ckpt_every=4, log_every=2, seed=5, device="cpu",
                             threads=1, resume=True, until=6, time_budget=60.0, keep_best=True)
    # defaults: each command's own --steps, the shared cadence; the eval models train on the CPU by default
    assert train_with(monkeypatch, "lm", "--tokens", str(tmp_path), "--out", str(tmp_path))[1] == RunOptions(
        out=tmp_path, steps=10000)
    assert train_with(monkeypatch, "tagger", "--data", str(tmp_path), "--out", str(tmp_path))[1] == RunOptions(
        out=tmp_path, steps=2000, device="cpu")


def test_unknown_preset_names_the_valid_ones(monkeypatch, tmp_path):
    with pytest.raises(InvalidArgumentError, match="unknown preset 'huge'") as err:
        train_with(monkeypatch, "tts", "--tokens", str(tmp_path), "--out", str(tmp_path), "--preset", "huge")
    assert "tiny" in err.value.one_line()


def test_options_a_command_does_not_offer_are_refused(tmp_path):
    # lm, tts and flow never had --threads; the eval models never had --time-budget: unchanged
    res = CliRunner().invoke(app, ["train", "lm", "--tokens", str(tmp_path), "--out", str(tmp_path), "--threads", "2"])
    assert res.exit_code == 2 and "--threads" in res.output
    res = CliRunner().invoke(app, ["train", "clap", "--data", str(tmp_path), "--out", str(tmp_path), "--time-budget", "9"])
    assert res.exit_code == 2 and "--time-budget" in res.output


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
