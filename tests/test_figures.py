"""README's and the model cards' figures agree with the results files (scripts/figures.py --check), the check
fails when one number differs on either side, and every benchmark target records the command that measured it."""
import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import common  # noqa: E402
import figures  # noqa: E402

ROOT = figures.REPO_ROOT


def test_readme_and_cards_agree_with_the_results_files():
    problems = figures.run(ROOT, write=False)
    assert problems == [], "run `python scripts/figures.py --write`:\n" + "\n".join(problems)


@pytest.fixture
def repo_copy(tmp_path):
    """The files the figures are made of and written to, copied: the markdown, the results, the checkpoints' JSON."""
    for rel in figures.REGIONS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    for src in [*(ROOT / "benchmarks" / "results").glob("*.json"), *(ROOT / "checkpoints").rglob("*.json")]:
        dst = tmp_path / src.relative_to(ROOT)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    assert figures.main(["--write", "--root", str(tmp_path)]) == 0  # consistent, whatever the checkout's state
    assert figures.main(["--check", "--root", str(tmp_path)]) == 0
    return tmp_path


def _target(root: Path, name: str) -> dict:
    return next(t for t in json.loads((root / "benchmarks/results/tasks.json").read_text())["targets"] if t["name"] == name)


def test_check_fails_on_a_typed_number_and_write_restores_it(repo_copy, capsys):
    readme = repo_copy / "README.md"
    value = figures.fmt(_target(repo_copy, "sfx_10s_x_realtime")["value"])
    row = next(line for line in readme.read_text().splitlines() if "`sfx_10s_x_realtime`" in line)
    readme.write_text(readme.read_text().replace(row, row.replace(f"**{value}**", "**5.9**")))
    assert figures.main(["--check", "--root", str(repo_copy)]) == 1
    err = capsys.readouterr().err
    assert "README.md: generated figures disagree" in err and "**5.9**" in err
    assert figures.main(["--write", "--root", str(repo_copy)]) == 0
    assert f"**{value}**" in next(line for line in readme.read_text().splitlines() if "`sfx_10s_x_realtime`" in line)
    assert figures.main(["--check", "--root", str(repo_copy)]) == 0


def test_check_fails_when_a_results_file_changes(repo_copy, capsys):
    path = repo_copy / "benchmarks/results/tasks.json"
    result = json.loads(path.read_text())
    next(t for t in result["targets"] if t["name"] == "sfx_tag_accuracy_over_real_renders")["value"] = 0.98
    path.write_text(json.dumps(result))
    assert figures.main(["--check", "--root", str(repo_copy)]) == 1
    err = capsys.readouterr().err
    for rel in ("README.md", "checkpoints/sfx/MODEL.md", "checkpoints/sfx/flow/MODEL.md"):
        assert f"{rel}: generated figures disagree" in err
    assert "checkpoints/music/MODEL.md" not in err  # only the regions that show it


def test_a_removed_or_unknown_region_is_reported(repo_copy, capsys):
    card = repo_copy / "checkpoints/sfx/MODEL.md"
    text = card.read_text()
    card.write_text(text.replace("<!-- figures:sfx-lm begin -->", "").replace("<!-- figures:sfx-lm end -->", "")
                    + "\n<!-- figures:nonsense begin --><!-- figures:nonsense end -->\n")
    assert figures.main(["--check", "--root", str(repo_copy)]) == 1
    err = capsys.readouterr().err
    assert "region figures:sfx-lm is missing" in err and "marker figures:nonsense has no generator" in err


def test_a_missing_key_shows_a_dash_and_is_named(repo_copy, capsys):
    path = repo_copy / "benchmarks/results/tasks.json"
    result = json.loads(path.read_text())
    del result["figures"]["sfx"]["by_generator"]["flow"]["generated"]["clap"]
    path.write_text(json.dumps(result))
    assert figures.main(["--write", "--root", str(repo_copy)]) == 0
    row = next(line for line in (repo_copy / "README.md").read_text().splitlines()
               if "`figures.sfx.by_generator.flow.generated.clap`" in line)
    assert f"| {figures.MISSING} |" in row
    assert "figures.sfx.by_generator.flow.generated.clap" in capsys.readouterr().err


def test_every_target_records_the_command_that_measured_it():
    for path in sorted((ROOT / "benchmarks" / "results").glob("*.json")):
        for t in json.loads(path.read_text()).get("targets", []):
            assert t.get("command"), f"{path.name}: target {t['name']} has no command"


def test_a_partial_rerun_keeps_each_old_targets_command(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    machine = {"cpu": "test", "threads": 1, "torch": "0", "gpu": None}
    first = common.write_result("x", "python benchmarks/x.py", [common.target("a", 1.0, ">=", 1.0),
                                                                 common.target("b", 2.0, "<=", 1.0)], {}, False, machine)
    assert [t["command"] for t in first["targets"]] == ["python benchmarks/x.py"] * 2
    old = json.loads((tmp_path / "x.json").read_text())
    kept = common.kept_targets(old, lambda t: t["name"] != "b")
    second = common.write_result("x", "python benchmarks/x.py --only b", kept + [common.target("b", 0.5, "<=", 1.0)],
                                 {}, False, machine)
    assert {t["name"]: t["command"] for t in second["targets"]} == {
        "a": "python benchmarks/x.py", "b": "python benchmarks/x.py --only b"}
    legacy = {"targets": [{"name": "c", "value": 1, "op": ">=", "target": 1, "met": True}]}
    assert common.kept_targets(legacy, lambda t: True)[0]["command"] == common.UNKNOWN_COMMAND


def test_new_keys_in_a_results_file_appear_after_write(repo_copy):
    path = repo_copy / "benchmarks/results/codec.json"
    result = json.loads(path.read_text())
    # a domain no results file holds yet
    result["targets"].append({"name": "choir_mel_distance_6kbps_over_opus6k", "value": 1.8, "op": "<=",
                              "target": 1.0, "met": False, "command": "python benchmarks/codec.py --choir"})
    result["figures"]["fidelity"]["choir"] = {"ours_6kbps": {"mel_distance": 0.9, "whisper_cer": 0.31},
                                              "opus_6kbps": {"mel_distance": 0.5}}
    result["figures"]["unrelated_new_block"] = {"x": 1}
    path.write_text(json.dumps(result))
    assert figures.main(["--check", "--root", str(repo_copy)]) == 1
    assert figures.main(["--write", "--root", str(repo_copy)]) == 0
    readme = (repo_copy / "README.md").read_text()
    assert "choir: mel distance at 6 kbps over Opus 6 kbps's | **1.80** | <= 1 | **not met**" in readme
    card = (repo_copy / "checkpoints/codec/MODEL.md").read_text()
    assert "| choir | ours 6kbps | 0.900 |" in card and "whisper_cer" in card
    assert figures.main(["--check", "--root", str(repo_copy)]) == 0


def test_a_quick_run_is_labelled_so(repo_copy):
    path = repo_copy / "benchmarks/results/accent.json"
    result = json.loads(path.read_text())
    result["quick"] = True
    path.write_text(json.dumps(result))
    assert figures.main(["--write", "--root", str(repo_copy)]) == 0
    row = next(line for line in (repo_copy / "README.md").read_text().splitlines() if "`test_accent_accuracy`" in line)
    assert row.endswith("(a `--quick` run) |")


def test_a_target_equal_to_its_goal_but_for_float_rounding_counts_as_equal():
    tie = (7 / 15) / (7 / 12)  # 0.8 exactly in arithmetic, 0.7999999999999999 in floats
    assert tie < 0.8
    assert common.target("t", tie, ">=", 0.8)["met"] and common.target("t", tie, "<=", 0.8)["met"]
    assert not common.target("t", tie, ">", 0.8)["met"] and not common.target("t", tie, "<", 0.8)["met"]
    assert not common.target("t", 0.79999, ">=", 0.8)["met"]  # a real shortfall stays one
    assert not common.target("t", float("nan"), ">=", 0.8)["met"] and not common.target("t", None, ">=", 0.8)["met"]
