"""The recipe that trains the shipped weights (daemon.model.train_default), end to end on two
world clips: shards are written, a few steps are trained, the EMA weights load, a run resumes
where it stopped, and the rate decays to its floor by the last step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from daemon.model.checkpoint import load_network
from daemon.model.config import preset
from daemon.model.flow import precision_name
from daemon.model.network import build_network
from daemon.model.train_default import _load_optimiser_state, _optimiser, main


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    main(["precompute", "--data", str(folder), "--clips", "2", "--shard-size", "2"])
    return folder


def _train(shards, work, steps: int, *extra: str) -> dict:
    main(["train", "--data", str(shards), "--work", str(work), "--out", str(work / "tiny.safetensors"),
          "--steps", str(steps), "--batch", "2", "--warmup", "1", "--min-clips", "2", "--decay",
          "--log-every", "1", "--save-every", "2", "--threads", "1", *extra])
    return json.loads((work / "training.json").read_text())


def test_recipe_trains_resumes_and_ships_loadable_weights(shards, tmp_path, capsys):
    shard = torch.load(next(shards.glob("shard-*.pt")), weights_only=False)
    assert shard["latent"].shape == (2, 250, 160) and shard["sync"].shape == (2, 200, 64)
    assert [m["seed"] for m in shard["meta"]] == [0, 1]

    first = _train(shards, tmp_path, 3)
    assert first["steps"] == 3 and first["clips"] == 2
    assert first["precision"] == precision_name(torch.device("cpu"), training=True)
    network = load_network(tmp_path / "tiny.safetensors")
    assert all(torch.isfinite(p).all() for p in network.parameters())
    # the latent statistics were fitted to the world's audio, not left at 0 / 1
    assert float(network.latent_mean.abs().mean()) > 0.1

    capsys.readouterr()
    second = _train(shards, tmp_path, 6)
    log = capsys.readouterr().out
    assert "resumed at step 3" in log and second["steps"] == 6
    # the resumed part decays from the full rate to its floor (0.1 x lr) at the last step
    rates = [float(line.split(" lr ")[1].split()[0]) for line in log.splitlines() if " lr " in line]
    assert rates[0] == pytest.approx(1e-3) and rates[-1] == pytest.approx(0.1 * 1e-3, rel=0.05)


def test_recipe_weighs_the_starts_of_sounds_when_asked(shards, tmp_path):
    record = _train(shards, tmp_path, 2, "--onset-weight", "3", "--onset-rise", "0.4")
    assert record["onset_weight"] == 3.0 and record["onset_rise"] == 0.4
    network = load_network(tmp_path / "tiny.safetensors")
    assert all(torch.isfinite(p).all() for p in network.parameters())
    assert "onset_weight" not in _train(shards, tmp_path / "plain", 1)


def test_average_is_the_mean_of_the_networks_and_names_its_parts(tmp_path, capsys):
    from daemon.model.checkpoint import file_metadata, save_network

    torch.manual_seed(0)
    a, b = build_network("tiny"), build_network("tiny")
    save_network(a.half(), tmp_path / "a", extra_metadata={"training": {"steps": 10}})
    save_network(b.half(), tmp_path / "b", extra_metadata={"training": {"steps": 20}})
    main(["average", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors"),
          "--share", "1", "3", "--out", str(tmp_path / "mean")])
    mean = load_network(tmp_path / "mean.safetensors").state_dict()
    a, b = load_network(tmp_path / "a.safetensors"), load_network(tmp_path / "b.safetensors")
    for name, value in a.state_dict().items():
        expected = 0.25 * value + 0.75 * b.state_dict()[name]
        assert torch.allclose(mean[name], expected.half().float(), atol=1e-3), name
    record = json.loads(file_metadata(tmp_path / "mean.safetensors")["training"])
    assert record["steps"] == 20
    assert record["averaged"] == [{"file": "a.safetensors", "share": 0.25, "steps": 10},
                                  {"file": "b.safetensors", "share": 0.75, "steps": 20}]
    save_network(build_network(preset("tiny").with_(sync_dim=68)), tmp_path / "wide")
    with pytest.raises(SystemExit, match="configs differ"):
        main(["average", str(tmp_path / "a.safetensors"), str(tmp_path / "wide.safetensors"),
              "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="two or more"):
        main(["average", str(tmp_path / "a.safetensors"), "--out", str(tmp_path / "x")])


def test_worker_processes_write_the_same_shards(shards, tmp_path):
    main(["precompute", "--data", str(tmp_path), "--clips", "2", "--shard-size", "1",
          "--workers", "2"])
    together = torch.load(next(shards.glob("shard-*.pt")), weights_only=False)
    for seed in (0, 1):
        alone = torch.load(tmp_path / f"shard-{seed:05d}.pt", weights_only=False)
        assert [m["seed"] for m in alone["meta"]] == [seed]
        for key in ("latent", "clip", "sync", "text"):
            assert torch.equal(alone[key][0], together[key][seed]), key


def test_shards_carry_the_contact_channels_sharpened_as_the_engine_reads_them(tmp_path):
    from daemon.model.events import DETECTOR_FILE, sharpened

    detector = Path(__file__).resolve().parents[1] / "daemon" / "model" / "weights" / DETECTOR_FILE
    channels = {}
    for name, extra in (("engine", []), ("trained", ["--sharpness", "1"])):
        main(["precompute", "--data", str(tmp_path / name), "--clips", "1", "--shard-size", "1",
              "--detector", str(detector), *extra])
        shard = torch.load(tmp_path / name / "shard-00000.pt", weights_only=False)
        assert shard["sync"].shape[-1] == 68
        channels[name] = shard["sync"][0, :, -4:]
    # `--sharpness 1` makes the channels the shipped network was trained on; by default the
    # shards hold what the engine feeds it (both stored in float16).
    torch.testing.assert_close(channels["engine"].float(),
                               4.0 * sharpened(channels["trained"].float() / 4.0), atol=4e-3, rtol=0)
    assert not torch.allclose(channels["engine"], channels["trained"], atol=1e-3)


def test_caption_path_trains_at_its_own_rate_and_old_checkpoints_resume():
    network = build_network("tiny")
    optimiser = _optimiser(network, 1e-3, 4.0)
    plain, caption = optimiser.param_groups
    names = {id(p): n for n, p in network.named_parameters()}
    caption_names = {names[id(p)] for p in caption["params"]}
    assert caption["lr"] == pytest.approx(4e-3) and plain["lr"] == pytest.approx(1e-3)
    assert {"text_cond_proj.weight", "global_cond_mlp.w1.weight", "empty_string_feat"} <= caption_names
    assert any(".text_block." in n for n in caption_names)
    assert not any(n.startswith(("audio_input_proj", "fused_blocks", "t_embed")) or
                   ".latent_block." in n for n in caption_names)
    assert len(plain["params"]) + len(caption["params"]) == len(list(network.parameters()))

    # A checkpoint written with one group (the shipped weights' stage 2) keeps every moment.
    single = torch.optim.AdamW(network.parameters(), lr=1e-3)
    network(torch.randn(1, 250, 160), torch.randn(1, 64, 64), torch.randn(1, 200, 64),
            torch.randn(1, 32, 384), torch.rand(1)).square().mean().backward()
    single.step()
    _load_optimiser_state(optimiser, single.state_dict(), network)
    moved = [p for p in network.parameters() if p in single.state]  # those the loss reached
    assert len(moved) > 100
    for parameter in moved:
        assert torch.equal(optimiser.state[parameter]["exp_avg"], single.state[parameter]["exp_avg"])
    assert [g["lr_scale"] for g in optimiser.param_groups] == [1.0, 4.0]


def test_a_new_run_starts_from_shipped_weights_and_counts_on(shards, tmp_path, capsys):
    # No checkpoint survives between machines: --init starts a run from a weights file (half
    # precision, as shipped), steps counted on from its training record.
    first = tmp_path / "first"
    _train(shards, first, 2)
    shipped = load_network(first / "tiny.safetensors")
    capsys.readouterr()
    later = tmp_path / "later"
    main(["train", "--data", str(shards), "--work", str(later), "--out", str(later / "tiny.safetensors"),
          "--init", str(first / "tiny.safetensors"), "--steps", "2", "--batch", "2",
          "--min-clips", "2", "--threads", "1"])
    assert "started from" in capsys.readouterr().out
    assert json.loads((later / "training.json").read_text())["steps"] == 2  # nothing left to do
    untouched = load_network(later / "tiny.safetensors")
    for (name, a), b in zip(shipped.state_dict().items(), untouched.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    main(["train", "--data", str(shards), "--work", str(later), "--out", str(later / "tiny.safetensors"),
          "--init", str(first / "tiny.safetensors"), "--steps", "3", "--batch", "2",
          "--min-clips", "2", "--threads", "1"])
    assert "resumed at step 2" in capsys.readouterr().out  # its checkpoint wins over --init
    assert json.loads((later / "training.json").read_text())["steps"] == 3


def test_shards_with_negation_examples_train_a_network_that_reads_negation(shards, tmp_path):
    assert not load_network(_train_out(shards, tmp_path / "plain")).config.reads_negation
    negated = tmp_path / "negated"
    main(["precompute", "--data", str(negated), "--clips", "2", "--shard-size", "2",
          "--negation", "1"])
    meta = torch.load(next(negated.glob("shard-*.pt")), weights_only=False)["meta"]
    assert all(m["negative_caption"] for m in meta)
    weights = _train_out(negated, tmp_path / "work")
    assert load_network(weights).config.reads_negation
    # A running checkpoint exports with its config.
    main(["export", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "now")])
    assert load_network(tmp_path / "now.safetensors").config.reads_negation


def _train_out(data, work) -> Path:
    _train(data, work, 1)
    return work / "tiny.safetensors"


def test_precompute_draws_from_a_changed_world_and_says_what_a_bad_setting_needs():
    from daemon.model.train_default import world_config
    from daemon.model.world import WorldConfig

    changed = world_config(["music_probability=1", "max_event_sources=1"])
    assert changed == WorldConfig(music_probability=1.0, max_event_sources=1)
    assert isinstance(changed.max_event_sources, int)
    for bad in (["music=1"], ["music_probability"], ["noise_floor_db=3"]):
        with pytest.raises(SystemExit, match="music_probability|pair"):
            world_config(bad)


def test_picture_range_command_measures_training_pictures(tmp_path, capsys):
    from daemon.model.visual import PictureRange

    out = tmp_path / "range.safetensors"
    main(["picture-range", "--clips", "2", "--detector", "", "--out", str(out)])
    span = PictureRange.load(out, 64, 64)
    assert span.sustained == 0.9
    # Inner ends within outer ends, channel by channel.
    for ends in (span.clip, span.sync):
        assert (ends[2] <= ends[0]).all() and (ends[0] <= ends[1]).all() and (ends[1] <= ends[3]).all()
    assert "2 training pictures" in capsys.readouterr().out
    assert PictureRange.measured_sharpness(out) is None  # no contact channels


def test_picture_range_records_the_sharpness_of_the_contact_channels(tmp_path):
    from daemon.model.visual import PictureRange

    out = tmp_path / "range.safetensors"
    main(["picture-range", "--clips", "1", "--sharpness", "1.5", "--out", str(out)])
    assert PictureRange.measured_sharpness(out) == 1.5
    assert PictureRange.load(out, 64, 68).sync[3, 64:].max() <= 4.0
