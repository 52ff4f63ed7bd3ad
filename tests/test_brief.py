"""Brief validation, conflicts, golden plans, the generated skill document, `--run` on a fake pipeline, the CLI."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tokenwave.brief import BriefConflictError, BriefError, make_plan, parse_brief
from tokenwave.brief.catalog import load_catalog
from tokenwave.brief.render import EXAMPLES_DIR, SKILL_PATH, examples, plan_markdown, skill_markdown
from tokenwave.brief.schema import load_brief

GOLDEN = Path(__file__).parent / "golden" / "brief"
PLANNED = ["podcast_intro_tts", "lofi_music_render", "game_sfx", "voice_agent_live", "song_with_lyrics", "dubbing_api"]


def base(**kw) -> dict:
    return {"task": "sfx", "duration": 5, "sfx": {"source": "rain"}, **kw}


# --- validation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, match", [
    ({"duration": 5}, "task must be one of"),
    ({"task": "podcast", "duration": 5}, "task must be one of"),
    ({"task": "sfx"}, "no duration"),
    (base(duration=-1), "duration must be within"),
    (base(duration="long"), "duration must be a number"),
    (base(colour="red"), "unknown field"),
    (base(license={"commercial": "yes"}), "license.commercial must be true or false"),
    (base(hosting={"cloud": True}), "unknown field.*hosting"),
    (base(latency="soon"), "latency must be live or render"),
    (base(budget={"usd": -5}), "must not be negative"),
    ({"task": "tts", "duration": 5}, "needs the text"),
    ({"task": "music_lyrics", "duration": 5}, "needs lyrics"),
    ({"task": "voice_clone", "duration": 5, "text": "hi"}, "needs the reference audio"),
    (base(seeds={"candidates": 0}), "candidates must be within"),
    (base(music={"bpm": 900}), "bpm must be within"),
])
def test_invalid_briefs_name_the_field(raw, match):
    with pytest.raises(BriefError, match=match) as err:
        parse_brief(raw)
    assert err.value.fix  # every error says how to fix it


def test_aliases_and_defaults():
    b = parse_brief(base(latency="streaming", music={"genre": "rock, blues"}))
    assert b.latency == "live" and b.music.genre == ["rock", "blues"] and b.license.commercial is False


def test_bad_yaml_and_missing_file(tmp_path):
    (tmp_path / "b.yaml").write_text("task: [unclosed")
    with pytest.raises(BriefError, match="not valid YAML"):
        load_brief(tmp_path / "b.yaml")
    with pytest.raises(BriefError, match="no brief at"):
        load_brief(tmp_path / "none.yaml")


# --- conflicts ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, match", [
    ("conflict_clone_without_consent", "cloning voice 'celebrity.wav' without consent"),
    ("conflict_commercial_noncommercial", "commercial use with musicgen, whose licence is non-commercial"),
    ("conflict_live_render_chain", "live latency with tokenwave-music, a render-only chain"),
    ("conflict_duration", "120 s is beyond stable-audio-open's 47 s per generation and the chain has no continuation"),
    ("conflict_live_music_commercial", "musicgen ruled out: commercial use"),
])
def test_conflicts_are_caught_with_clear_messages(name, match):
    with pytest.raises(BriefConflictError, match=match) as err:
        make_plan(load_brief(EXAMPLES_DIR / f"{name}.yaml"))
    assert err.value.conflicts and all(fix for _, fix in err.value.conflicts)


def test_consent_conflict_even_with_an_otherwise_fine_model():
    raw = {"task": "tts", "duration": 5, "text": "hello", "voice": {"prompt": "x.wav"}, "model": "tokenwave-tts"}
    with pytest.raises(BriefConflictError, match="without consent"):
        make_plan(parse_brief(raw))
    raw["voice"]["consent"] = True
    assert make_plan(parse_brief(raw))["safety"]["consent"].startswith("the voice prompt must match")


def test_duration_with_and_without_continuation():
    plan = make_plan(parse_brief(base(duration=100, model="tokenwave-sfx")))
    assert "render in parts" in plan["chain"]["continuation"]
    with pytest.raises(BriefConflictError, match="rules out continuation"):
        make_plan(parse_brief(base(duration=100, model="tokenwave-sfx", continuation=False)))


def test_hosting_budget_and_license_rules():
    plan = make_plan(parse_brief({"task": "tts", "duration": 5, "text": "hi", "hosting": {"on_device": True},
                                  "license": {"commercial": True}}))
    assert "on-device" in plan["model"]["hosting"]
    plan = make_plan(parse_brief({"task": "dubbing", "duration": 60, "license": {"commercial": False},
                                  "hosting": {"api_allowed": False}}))
    assert plan["model"]["id"] == "seamless-expressive"
    with pytest.raises(BriefConflictError, match="paid API and the budget is 0"):
        make_plan(parse_brief({"task": "dubbing", "duration": 60, "license": {"commercial": True}, "budget": {"usd": 0}}))
    with pytest.raises(BriefError, match="no model 'nope'"):
        make_plan(parse_brief(base(model="nope")))


def test_live_prefers_streaming_chains_and_explains_why():
    plan = make_plan(parse_brief(base(latency="live")))
    assert plan["chain"]["streams"] and plan["chain"]["backbone"] == "token-ar"
    assert plan["seed_protocol"]["candidates"] == 1
    plan = make_plan(parse_brief({"task": "music", "duration": 30, "music": {"genre": ["folk"]}}))
    assert not plan["chain"]["streams"] and "render on submit" in plan["chain"]["reason"]


def test_catalog_entries_are_complete():
    cat = load_catalog()
    assert len(cat.models) >= 20
    tasks = {t for m in cat.models for t in m.tasks}
    assert tasks == {"tts", "voice_clone", "music", "music_lyrics", "sfx", "voice_agent", "dubbing"}
    assert {m.kind for m in cat.models} == {"tokenwave", "open-weights", "api"}
    assert all(m.sources and m.license for m in cat.models)


# --- golden plans -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PLANNED)
def test_golden_plans(name):
    plan = make_plan(load_brief(EXAMPLES_DIR / f"{name}.yaml"))
    plan = json.loads(json.dumps(plan))
    golden = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(json.dumps(plan, indent=2, ensure_ascii=False) + "\n")
    assert plan == json.loads(golden.read_text()), "plan changed; if intended, rerun with UPDATE_GOLDEN=1"
    md = plan_markdown(plan)
    for section in ("Model and hosting", "Prompt", "Chain", "Seed protocol", "Eval plan"):
        assert f"## {section}" in md


def test_golden_choices_in_brief():
    """The decisions the goldens hold, spelled out."""
    chosen = {n: make_plan(load_brief(EXAMPLES_DIR / f"{n}.yaml")) for n in PLANNED}
    assert chosen["podcast_intro_tts"]["model"]["id"] == "tokenwave-tts"  # own model, CPU, no API
    assert chosen["podcast_intro_tts"]["seed_protocol"]["seeds"] == [7, 8, 9]
    assert chosen["lofi_music_render"]["model"]["id"] == "tokenwave-music"
    assert "[intro] [verse] [chorus]" in chosen["lofi_music_render"]["prompt"]["text"]
    assert "78 bpm" in chosen["lofi_music_render"]["prompt"]["text"]
    assert chosen["game_sfx"]["prompt"]["text"].startswith("heavy rain drumming on a tin roof, distant thunder")
    assert chosen["voice_agent_live"]["model"]["id"] == "csm-1b" and chosen["voice_agent_live"]["chain"]["streams"]
    assert chosen["song_with_lyrics"]["model"]["id"] == "yue" and "[verse]" in chosen["song_with_lyrics"]["prompt"]["text"]
    assert chosen["dubbing_api"]["model"]["kind"] == "api" and not chosen["dubbing_api"]["seed_protocol"]["deterministic"]


# --- the skill document -------------------------------------------------------------------------------------
def test_skill_document_is_generated_from_the_code():
    assert SKILL_PATH.read_text(encoding="utf-8") == skill_markdown(), \
        "outputs/skill-audio-brief.md is stale: run `python -m tokenwave.brief.render`"


def test_skill_document_covers_catalog_and_examples():
    doc = skill_markdown()
    assert all(f"`{m.id}`" in doc for m in load_catalog().models)
    assert all(p.name in doc for p in examples())
    assert doc.count("conflict**") == len([p for p in examples() if p.name.startswith("conflict")])


# --- --run ----------------------------------------------------------------------------------------------------
class FakePipeline:
    """Renders a seed-dependent tone, watermarked like the real pipeline."""
    sample_rate = 24000

    def __init__(self):
        self.calls = []

    def _out(self, seed, seconds, meta):
        from types import SimpleNamespace

        from tokenwave.safety.watermark import embed_watermark

        t = np.arange(int(seconds * self.sample_rate)) / self.sample_rate
        rng = np.random.default_rng(seed)
        wav = 0.2 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.02 * rng.standard_normal(len(t))
        wav = embed_watermark(wav.astype(np.float32), self.sample_rate)
        return SimpleNamespace(wav=wav, sample_rate=self.sample_rate, metadata={**meta, "watermark": True})

    def sfx(self, prompt, duration, seed=0):
        self.calls.append(("sfx", prompt, duration, seed))
        return self._out(seed, duration, {"task": "sfx", "prompt": prompt})

    def tts(self, text, voice=None, seed=0):
        self.calls.append(("tts", text, voice, seed))
        return self._out(seed, 2.0, {"task": "tts"})


def test_run_renders_scores_and_picks(tmp_path):
    brief = parse_brief(base(duration=2, seeds={"base": 3, "candidates": 3}), source="small.yaml")
    pipe = FakePipeline()
    scorer = lambda task, prompt, wav, sr: {"clap_score": {3: 0.1, 4: 0.5, 5: 0.5}[pipe.calls[-1][3]],
                                            "watermark": True}
    report = run_brief_(brief, tmp_path, pipe, scorer)
    assert [c[3] for c in pipe.calls] == [3, 4, 5]
    assert report["winner"] == 4  # best score, tie to the lower seed
    assert (tmp_path / "winner.wav").exists() and (tmp_path / "report.md").exists()
    meta = json.loads((tmp_path / "winner.wav.json").read_text())
    assert meta["seed"] == 4 and meta["watermark"] is True
    assert "seed 4" in (tmp_path / "report.md").read_text()
    again = run_brief_(brief, tmp_path / "again", pipe, scorer)  # same seeds, same audio, same choice
    from tokenwave.audio import load_audio

    np.testing.assert_array_equal(load_audio(tmp_path / "winner.wav")[0], load_audio(tmp_path / "again" / "winner.wav")[0])
    assert again["winner"] == 4


def test_run_with_default_scorer_checks_the_watermark(tmp_path):
    report = run_brief_(parse_brief(base(duration=2, seeds={"candidates": 2})), tmp_path, FakePipeline())
    assert all(c["scores"]["watermark"] is True for c in report["candidates"])
    assert all("clap_score" in c["scores"] for c in report["candidates"])


def test_run_refuses_plans_for_other_vendors(tmp_path):
    with pytest.raises(BriefError, match="not one of this project's"):
        run_brief_(load_brief(EXAMPLES_DIR / "dubbing_api.yaml"), tmp_path, FakePipeline())


def test_run_checks_consent_of_the_voice_prompt(tmp_path):
    from tokenwave.audio import save_audio
    from tokenwave.safety.consent import NoConsentError, VoiceRegistry

    class Enc:
        def embed(self, wav, sr):
            return np.array([1.0, 0.0], np.float32) if wav.mean() >= 0 else np.array([0.0, 1.0], np.float32)

    save_audio(tmp_path / "spk.wav", np.full(16000, 0.1, np.float32), 16000)
    brief = parse_brief({"task": "tts", "duration": 2, "text": "hello", "seeds": {"candidates": 1},
                         "voice": {"prompt": "spk.wav", "consent": True}}, source=str(tmp_path / "b.yaml"))
    with VoiceRegistry(tmp_path / "v.sqlite", Enc()) as reg:
        with pytest.raises(NoConsentError):
            run_brief_(brief, tmp_path / "out", FakePipeline(), registry=reg)
        reg.add("spk", np.full(16000, 0.1, np.float32), 16000, "I agree to be cloned for tests.", "tester")
        report = run_brief_(brief, tmp_path / "out", FakePipeline(), lambda *a: {"cer": 0.0}, registry=reg)
    assert report["consent"]["consent_voice"] == "spk"


def run_brief_(brief, out, pipe, scorer=None, registry=None):
    from tokenwave.brief.run import run_brief

    return run_brief(brief, out, pipeline=pipe, scorer=scorer, registry=registry)


# --- CLI ----------------------------------------------------------------------------------------------------
def test_cli_brief_plan_json_and_conflict(tmp_path):
    from typer.testing import CliRunner

    from tokenwave.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["brief", str(EXAMPLES_DIR / "game_sfx.yaml"), "--json", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["model"]["id"] == "tokenwave-sfx"
    assert (tmp_path / "plan.md").exists() and (tmp_path / "plan.json").exists()
    res = runner.invoke(app, ["brief", str(EXAMPLES_DIR / "conflict_duration.yaml")])
    assert res.exit_code != 0 and isinstance(res.exception, BriefConflictError)
