"""benchmarks/sampling.py's grid and choice rule: the built-in default first, every axis asked for, and the choice
honours the metric's direction (TTS: lower CER wins), the cost of a setting and the clips' noise."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import sampling as bench  # noqa: E402


def test_grid_puts_the_default_first_and_spans_the_asked_axes():
    lm = bench.grid("lm", [1.5, 2.0], [0.6, 0.9], top_ks=[20, 100])
    assert lm[0] == {"cfg_scale": 2.0, "temperature": 0.9, "top_k": 100}
    assert len(lm) == 8 and len({bench.key(s) for s in lm}) == 8
    assert all(set(s) == {"cfg_scale", "temperature", "top_k"} for s in lm)
    # no top-k axis unless more than the default is asked for
    assert all("top_k" not in s for s in bench.grid("lm", [2.0, 3.0], [0.9], top_ks=[100]))
    flow = bench.grid("flow", [4.0, 8.0], [], steps=[16, 32], solvers=["euler", "heun"])
    assert flow[0] == {"cfg_scale": 2.0, "steps": 16, "solver": "euler"} and len(flow) == 9
    interval = bench.grid("flow", [4.0], [], cfg_untils=[0.5, 1.0])
    assert interval == [{"cfg_scale": 2.0, "cfg_until": 1.0}, {"cfg_scale": 4.0, "cfg_until": 0.5},
                        {"cfg_scale": 4.0, "cfg_until": 1.0}]
    # cost: unguided steps run one pass, guided ones two; Heun doubles both
    assert bench.model_calls({"cfg_scale": 4.0, "cfg_until": 0.5}) < bench.model_calls({"cfg_scale": 4.0})
    assert bench.model_calls({"cfg_scale": 1.0}) == 16 and bench.model_calls({"cfg_scale": 4.0, "solver": "heun"}) == 64


def _figures(metric, lower, values, se=0.0, tie=None):
    """Figures of settings scored ``values``; each one's paired difference to the first has standard error ``se``."""
    settings, base = {}, values[0][1]
    for s, v in values:
        settings[bench.key(s)] = {metric: v, f"{metric}_vs_default": {"mean": v - base, "se": se}, "clap": 0.0,
                                  "speaker_sim": (tie or {}).get(bench.key(s), 0.0)}
    return {"metric": metric, "lower_is_better": lower, "task": "tts" if lower else "music", "settings": settings}


def test_choice_follows_the_metrics_direction():
    a, b, c = {"cfg_scale": 2.0, "temperature": 0.9}, {"cfg_scale": 2.0, "temperature": 0.6}, {"cfg_scale": 3.0, "temperature": 0.6}
    cer = _figures("cer", True, [(a, 0.70), (b, 0.62), (c, 0.66)])
    assert bench.choose(cer, [a, b, c], None) == bench.key(b)
    acc = _figures("tag_acc", False, [(a, 0.70), (b, 0.62), (c, 0.66)])
    assert bench.choose(acc, [a, b, c], None) == bench.key(a)


def test_choice_buys_no_slower_setting_within_the_noise():
    default = {"cfg_scale": 2.0, "steps": 16}
    cheap, slow = {"cfg_scale": 4.0, "steps": 16}, {"cfg_scale": 4.0, "steps": 32}
    figs = _figures("tag_acc", False, [(default, 0.40), (cheap, 0.55), (slow, 0.58)], se=0.05)
    assert bench.choose(figs, [default, cheap, slow], None) == bench.key(cheap)
    assert bench.choose(figs, [default, cheap, slow], 0.0) == bench.key(slow)
    # equal cost and score: the tie-break (TTS: speaker similarity) decides
    d, a, b = ({"cfg_scale": c, "temperature": 0.9} for c in (2.0, 1.5, 3.0))
    tied = _figures("cer", True, [(d, 0.7), (a, 0.6), (b, 0.6)], se=0.01, tie={bench.key(b): 0.5, bench.key(a): 0.4})
    assert bench.choose(tied, [d, a, b], None) == bench.key(b)


def test_paired_choice_keeps_the_default_unless_the_gain_beats_its_noise():
    a, b = {"cfg_scale": 2.0, "temperature": 0.9}, {"cfg_scale": 2.0, "temperature": 0.6}
    figs = _figures("cer", True, [(a, 0.70), (b, 0.68)])
    figs["settings"][bench.key(a)]["cer_vs_default"] = {"mean": 0.0, "se": 0.0}
    figs["settings"][bench.key(b)]["cer_vs_default"] = {"mean": -0.02, "se": 0.03}
    assert bench.choose(figs, [a, b], None) == bench.key(a)  # within the noise: the default stays
    figs["settings"][bench.key(b)]["cer_vs_default"] = {"mean": -0.02, "se": 0.01}
    assert bench.choose(figs, [a, b], None) == bench.key(b)


def test_the_valid_choice_is_checked_on_test_clips_and_can_fail(monkeypatch):
    default, chosen = {"cfg_scale": 2.0}, {"cfg_scale": 4.0}
    test_rows = [{"id": i} for i in range(4)]
    scores = {2.0: [0.5, 0.5, 0.5, 0.5], 4.0: [0.25, 0.5, 0.5, 0.5]}  # the choice is worse on the test clips
    monkeypatch.setattr(bench, "render_tagged", lambda task, rows, setting, args: {
        "tag_acc_items": scores[setting["cfg_scale"]][: len(rows)]})
    figs = {"metric": "tag_acc", "task": "music", "best": bench.key(chosen)}
    row = bench.test_check(None, None, figs, [default, chosen], Path("."), test_rows)
    assert row["name"] == "chosen_tag_acc_minus_default_on_test" and row["op"] == ">"
    assert row["value"] == -0.0625 and row["met"] is False and row["items"] == 4
    assert figs["test"]["tag_acc"] == {"chosen": 0.4375, "default": 0.5}
    scores[4.0] = [0.75, 0.5, 0.5, 0.5]
    assert bench.test_check(None, None, figs, [default, chosen], Path("."), test_rows)["met"] is True
    # the default chosen on valid: nothing to check, and the row says so rather than passing
    figs["best"] = bench.key(default)
    row = bench.test_check(None, None, figs, [default, chosen], Path("."), test_rows)
    assert row["met"] is None and row["value"] is None and "nothing to check" in row["note"]
