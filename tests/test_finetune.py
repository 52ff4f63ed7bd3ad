"""`tokenwave train flow|lm --init`: a run starts from a trained model folder (fine-tuning) with its weights, its
tags kept by name and its melody conditioner, and refuses folders it cannot continue."""
import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from tokenwave.checkpoint import CheckpointError
from tokenwave.codec import Codec
from tokenwave.data.sfx import build_sfx
from tokenwave.errors import InvalidArgumentError
from tokenwave.flow.model import FlowDiT
from tokenwave.models.tagged import Generator
from tokenwave.train.codec import PRESETS as CODEC_PRESETS
from tokenwave.train.flow import FlowRecipe, FlowTrainConfig
from tokenwave.train.trainer import DistInfo

pytestmark = pytest.mark.filterwarnings("ignore:.*has no valid clips")


def tw(*args, ok=True):
    run = subprocess.run([sys.executable, "-m", "tokenwave", *map(str, args)], capture_output=True, text=True)
    assert (run.returncode == 0) == ok, run.stderr[-2000:]
    return run


def flow_args(latents, out, steps, *extra):
    return ["train", "flow", "--latents", latents, "--out", out, "--preset", "tiny", "--steps", steps, "--frames", 24,
            "--batch-size", 4, "--val-every", steps, "--ckpt-every", steps, "--log-every", 1, "--lr", 0.1,
            "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """sfx data, a tiny codec, its latents, and a tiny flow model trained 40 steps on them (a high learning rate:
    the schedule's warm-up alone is 200 steps)."""
    root = tmp_path_factory.mktemp("ft")
    data = build_sfx(root / "sfx", minutes=0.5, seed=0)  # enough for a valid clip (the LM needs one)
    torch.manual_seed(0)
    Codec(CODEC_PRESETS["tiny"]).save(root / "codec")
    tw("codec", "latents", "--data", data, "--out", root / "lat", "--model", root / "codec")
    tw(*flow_args(root / "lat", root / "flow", 40))
    return root


def recipe(root, **kw):
    torch.manual_seed(0)
    return FlowRecipe(str(root / "lat"), "tiny", FlowTrainConfig(frames=24, batch_size=4, **kw), DistInfo(), seed=0)


def test_init_starts_from_the_models_weights(trained):
    init = trained / "flow" / "model"
    fine, fresh = recipe(trained, init=str(init)), recipe(trained)
    saved = load_file(str(init / "model.safetensors"))
    state = fine.model.flow.state_dict()
    assert state.keys() == saved.keys() and all(torch.equal(state[k], saved[k].float()) for k in saved)
    assert not torch.equal(fresh.model.flow.state_dict()["out.weight"], state["out.weight"])
    # the same valid windows and noise: the fine-tuning run starts where the trained model ended, below a fresh one
    assert fine.validate()["valid_loss"] < 0.95 * fresh.validate()["valid_loss"]
    # validation draws its windows, noise and times from the seed alone: two runs of one model agree batch by batch
    # (what benchmarks/compare.py --heldout pairs two models on)
    a, b = recipe(trained, init=str(init)), recipe(trained, init=str(init))
    a.tcfg.val_batches = b.tcfg.val_batches = 3
    assert a.validation_losses() == b.validation_losses()
    assert fine.tcfg.init == str(init) and fine.tcfg.patch == json.loads((init / "config.json").read_text())["config"]["patch"]


def test_tags_keep_their_embeddings_by_name_and_new_tags_start_as_unknown(trained, tmp_path):
    """A model that never saw one of the data's tags: the vocabulary grows, every known tag keeps its own row (now at
    another index), the new one starts as the unknown tag's row."""
    import shutil

    folder = tmp_path / "fewer"
    shutil.copytree(trained / "flow" / "model", folder)
    cfg = json.loads((folder / "config.json").read_text())
    tags = cfg["tags"]
    dropped = tags[len(tags) // 2]  # neither the unknown tag nor the domain
    embed = load_file(str(folder / "tags.safetensors"))["embed.weight"]
    keep = [i for i, t in enumerate(tags) if t != dropped]
    cfg["tags"] = [tags[i] for i in keep]
    (folder / "config.json").write_text(json.dumps(cfg))
    save_file({"embed.weight": embed[keep].contiguous()}, str(folder / "tags.safetensors"))

    fine = recipe(trained, init=str(folder))
    assert fine.vocab.tags == tags  # the model's tags and the data's, in the vocabulary's order
    rows = fine.model.tags.embed.weight.detach()
    for i, t in enumerate(tags):
        expect = embed[0] if t == dropped else embed[i]
        assert torch.equal(rows[fine.vocab.index[t]], expect), t


def test_cli_fine_tunes_and_records_the_init(trained):
    run = trained / "fine"
    tw(*flow_args(trained / "lat", run, 6, "--init", trained / "flow" / "model", "--lr", 5e-4))
    cfg = json.loads((run / "model" / "config.json").read_text())
    assert cfg["train"]["init"] == str(trained / "flow" / "model")
    def losses(folder):
        return [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines() if '"loss"' in line]

    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["validation"]["step"] for e in log if "validation" in e] == [0, 6]  # where it started, where it ended
    fine, fresh = losses(run), losses(trained / "flow")[:6]
    assert len(fine) == 6 and sum(fine) / 6 < sum(fresh) / 6 - 0.05  # it did not start from scratch


def test_init_refuses_what_it_cannot_continue(trained, tmp_path):
    with pytest.raises(CheckpointError, match="'codec' checkpoint, not a 'flow'"):
        recipe(trained, init=str(trained / "codec"))
    with pytest.raises(InvalidArgumentError, match="no melody conditioner"):
        recipe(trained, init=str(trained / "flow" / "model"), melody=True)
    with pytest.raises(InvalidArgumentError, match="longest window"):
        FlowRecipe(str(trained / "lat"), "tiny", FlowTrainConfig(frames=5000, init=str(trained / "flow" / "model")),
                   DistInfo())
    # a model of another latent width: refused with the fix named
    g = Generator.load(trained / "flow" / "model")
    other = tmp_path / "other"
    wider = FlowDiT(dataclasses.replace(g.model.cfg, latent_dim=g.model.cfg.latent_dim + 1))
    Generator("flow", other, wider, g.extra, g.vocab, g.tags, g.melody).save(other, None)
    with pytest.raises(CheckpointError, match="channel latents") as err:
        recipe(trained, init=str(other))
    assert "tokenwave codec latents" in err.value.one_line()
    # a folder whose config was edited apart from its weights: refused by the reader, naming the mismatch
    cfg = json.loads((other / "config.json").read_text())
    cfg["config"]["latent_dim"] -= 1
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not fit .*config.json: size mismatch"):
        recipe(trained, init=str(other))
    res = tw(*flow_args(trained / "lat", tmp_path / "x", 2, "--init", tmp_path / "missing"), ok=False)
    assert "error:" in res.stderr and "no flow checkpoint" in res.stderr
    assert not (tmp_path / "x" / "model").exists()


def test_lm_init_checks_codebooks_and_window(trained, tmp_path):
    """The token LM: fine-tuning starts from its weights; codes of another codebook count and windows longer than
    its positions are refused."""
    from tokenwave.train.lm import LMRecipe, LMTrainConfig

    tokens = tmp_path / "tokens"
    tw("codec", "tokenize", "--data", trained / "sfx", "--out", tokens, "--model", trained / "codec")
    tw("train", "lm", "--tokens", tokens, "--out", tmp_path / "lm", "--preset", "tiny", "--steps", 30, "--frames", 30,
       "--batch-size", 4, "--val-every", 30, "--log-every", 10, "--lr", 1e-2)
    init = str(tmp_path / "lm" / "model")
    torch.manual_seed(0)
    fine = LMRecipe(str(tokens), "flat", "tiny", LMTrainConfig(frames=30, batch_size=4, init=init), DistInfo())
    torch.manual_seed(0)
    fresh = LMRecipe(str(tokens), "delay", "tiny", LMTrainConfig(frames=30, batch_size=4), DistInfo())
    assert fine.model.lm.cfg.pattern == "delay"  # the model's pattern, not the command's
    assert fine.validate()["valid_loss"] < fresh.validate()["valid_loss"]
    with pytest.raises(InvalidArgumentError, match="use --frames"):
        LMRecipe(str(tokens), "delay", "tiny", LMTrainConfig(frames=2000, init=init), DistInfo())
    few = tmp_path / "tokens-few"
    tw("codec", "tokenize", "--data", trained / "sfx", "--out", few, "--model", trained / "codec", "--kbps", 1.8)
    assert json.loads((few / "tokens.json").read_text())["K"] != fine.model.lm.cfg.K
    with pytest.raises(CheckpointError, match="codebooks"):
        LMRecipe(str(few), "delay", "tiny", LMTrainConfig(frames=30, init=init), DistInfo())
