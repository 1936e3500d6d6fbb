"""The class guide: its direction, its reading of prompts, its file, and its term in the sampler."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from daemon.model import build_network
from daemon.model.flow import Guidance, sample
from daemon.model.guide import GUIDE_FILE, ClassGuide, ClassSteer, load_guide
from daemon.model.world.captions import CLASSES

SHIPPED = Path(__file__).resolve().parents[1] / "daemon" / "model" / "weights" / GUIDE_FILE
SIZES = dict(latent_dim=8, clip_dim=8, sync_dim=8, text_dim=16, hidden_dim=64, depth=2,
             fused_depth=1, num_heads=1, latent_seq_len=40, clip_seq_len=10, sync_seq_len=32,
             text_seq_len=4, v2=True)


def _guide(latent_dim: int = 8, seed: int = 0) -> ClassGuide:
    torch.manual_seed(seed)
    guide = ClassGuide(latent_dim=latent_dim, width=16, depth=2, text_dim=16)
    with torch.no_grad():
        for p in guide.parameters():
            p.normal_(0, 0.2)
    return guide.eval().requires_grad_(False)


def _one_hot(*names: str, rows: int = 1) -> torch.Tensor:
    out = torch.zeros(rows, len(CLASSES))
    for name in names:
        out[0, CLASSES.index(name)] = 1.0
    return out


def test_the_direction_raises_the_named_class_and_lowers_the_negated_one():
    guide = _guide()
    x = torch.randn(2, 40, 8, generator=torch.Generator().manual_seed(3))
    rain, none = CLASSES.index("rain"), torch.zeros(2, len(CLASSES))
    toward = _one_hot("rain", rows=2)
    with torch.inference_mode():  # as the sampler calls it
        d = guide.direction(x, 0.2, toward, none)
    t = torch.full((2,), 0.2)
    before, after = guide(x, t)[0, rain], guide(x + 0.01 * d, t)[0, rain]
    assert after > before
    # Unit size where something is named, nothing where nothing is.
    assert torch.allclose(d[0].pow(2).mean().sqrt(), torch.tensor(1.0), atol=1e-4)
    assert not d[1].any()
    d = guide.direction(x, 0.2, none, toward)
    assert guide(x + 0.01 * d, t)[0, rain] < before


def test_a_steer_is_made_only_where_something_is_named():
    guide = _guide()
    nothing = torch.zeros(2, len(CLASSES))
    assert ClassSteer.of(guide, nothing, nothing) is None
    assert ClassSteer.of(None, _one_hot("rain", rows=2), nothing) is None
    assert ClassSteer.of(guide, nothing, _one_hot("fire", rows=2)) is not None


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = build_network(**SIZES)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.15)
    return net.eval()


def test_the_sampler_steers_by_the_guide_over_the_first_part_of_the_path(net):
    g = torch.Generator().manual_seed(1)
    inputs = (torch.randn(2, 10, 8, generator=g), torch.randn(2, 32, 8, generator=g),
              torch.randn(2, 4, 16, generator=g))
    guide = _guide()
    steer = ClassSteer(guide, _one_hot("rain", rows=2), torch.zeros(2, len(CLASSES)))
    plain = sample(net, *inputs, steps=4, cfg=3.0, seed=5)
    steered = sample(net, *inputs, steps=4, cfg=3.0, seed=5, steer=steer)
    again = sample(net, *inputs, steps=4, cfg=3.0, seed=5, steer=steer)
    assert torch.equal(steered, again)  # a seed still reproduces its result
    assert not torch.allclose(steered[0], plain[0])
    assert torch.equal(steered[1], plain[1])  # the item that names nothing is untouched
    rain = CLASSES.index("rain")
    t = torch.ones(1)
    normalised = net.normalize
    assert guide(normalised(steered[:1]), t)[0, rain] > guide(normalised(plain[:1]), t)[0, rain]
    # Off: at strength 0, before the path starts, or with guidance off altogether.
    base = Guidance.scaled(3.0)
    for off in (Guidance(**{**base.__dict__, "classes": 0.0}),
                Guidance(**{**base.__dict__, "classes_until": 0.0})):
        assert torch.equal(sample(net, *inputs, steps=4, guidance=off, seed=5, steer=steer),
                           sample(net, *inputs, steps=4, guidance=off, seed=5))
    assert torch.equal(sample(net, *inputs, steps=4, cfg=1.0, seed=5, steer=steer),
                       sample(net, *inputs, steps=4, cfg=1.0, seed=5))


def test_a_negative_prompt_has_its_own_direction_strength_and_span(net):
    guide = _guide()
    x = torch.randn(1, 40, 8, generator=torch.Generator().manual_seed(4))
    both = ClassSteer(guide, _one_hot("rain"), _one_hot("fire"))
    none = torch.zeros(1, len(CLASSES))
    toward = guide.direction(x, 0.3, _one_hot("rain"), none)
    away = guide.direction(x, 0.3, none, _one_hot("fire"))
    # Each a unit direction at its own strength, not one direction shared between them.
    assert torch.allclose(both.direction(x, 0.3, 0.3, 2.0), 0.3 * toward + 2.0 * away, atol=1e-6)
    assert torch.allclose(both.direction(x, 0.3, 0.0, 1.0), away)

    g = torch.Generator().manual_seed(1)
    inputs = (torch.randn(1, 10, 8, generator=g), torch.randn(1, 32, 8, generator=g),
              torch.randn(1, 4, 16, generator=g))
    negated = ClassSteer(guide, none, _one_hot("fire"))
    base = Guidance(**{**Guidance.scaled(3.0).__dict__, "classes": 0.0})
    plain = sample(net, *inputs, steps=4, guidance=base, seed=5)
    # The away term steers on its own (the toward term off) and only over its own span.
    assert not torch.equal(sample(net, *inputs, steps=4, guidance=base, seed=5, steer=negated),
                           plain)
    for off in (Guidance(**{**base.__dict__, "away": 0.0}),
                Guidance(**{**base.__dict__, "away_until": 0.0})):
        assert torch.equal(sample(net, *inputs, steps=4, guidance=off, seed=5, steer=negated),
                           plain)


def test_a_guide_file_round_trips_and_refuses_another_build(tmp_path):
    guide = _guide()
    path = tmp_path / GUIDE_FILE
    guide.save(path, {"steps": 1})
    loaded = ClassGuide.load(path)
    x, t = torch.randn(1, 40, 8), torch.full((1,), 0.5)
    assert torch.equal(loaded(x, t), guide(x, t))
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    save_file(state, str(tmp_path / "other.safetensors"), metadata={"classes": '["rain"]'})
    with pytest.raises(ValueError, match="other sound classes"):
        ClassGuide.load(tmp_path / "other.safetensors")
    del state["head.bias"]
    save_file(state, str(tmp_path / "broken.safetensors"),
              metadata={"classes": __import__("json").dumps(CLASSES), "width": "16", "depth": "2"})
    with pytest.raises(ValueError, match="another build"):
        ClassGuide.load(tmp_path / "broken.safetensors")


def test_a_guide_is_used_only_beside_a_network_normalised_as_it_was_trained(tmp_path, caplog):
    weights = tmp_path / "tiny.safetensors"
    assert load_guide(weights, torch.zeros(1, 1, 8), torch.ones(1, 1, 8)) is None  # none there
    guide = _guide()
    guide.save(tmp_path / GUIDE_FILE, {})
    assert load_guide(weights, torch.zeros(1, 1, 8), torch.ones(1, 1, 8)) is not None
    with caplog.at_level(logging.WARNING):
        assert load_guide(weights, torch.full((1, 1, 8), -5.0), torch.ones(1, 1, 8)) is None
    assert "normalised otherwise" in caplog.text
    # Another guide file, named: used when it fits, an error when it is not there.
    guide.save(tmp_path / "other_guide.safetensors", {})
    other = load_guide(weights, torch.zeros(1, 1, 8), torch.ones(1, 1, 8),
                       tmp_path / "other_guide.safetensors")
    assert other is not None and torch.equal(other.head.weight, guide.head.weight)
    with pytest.raises(FileNotFoundError, match="no class guide at"):
        load_guide(weights, torch.zeros(1, 1, 8), torch.ones(1, 1, 8), tmp_path / "missing")


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped class guide in this checkout")
def test_the_shipped_guide_reads_world_sounds_in_prompts_and_nothing_else():
    from daemon.model.text import MiniLMText

    guide = ClassGuide.load(SHIPPED)
    named = guide.names(MiniLMText(), ["footsteps on gravel", "rain falling, a door slamming",
                                       "people talking", "", "   "])
    heard = [{CLASSES[i] for i in row.nonzero().flatten().tolist()} for row in named]
    assert heard[0] == {"footsteps_gravel"}
    assert heard[1] == {"rain", "door_slam"}
    assert heard[2] == heard[3] == heard[4] == set()
    text = MiniLMText()
    steer = ClassSteer.for_texts(guide, text, ["rain", "people talking"], ["", "a door slamming"])
    assert steer.toward[0, CLASSES.index("rain")] > 0 and not steer.toward[1].any()
    assert steer.away[1, CLASSES.index("door_slam")] > 0 and not steer.away[0].any()
    assert ClassSteer.for_texts(guide, text, ["people talking"], [""]) is None
    assert ClassSteer.for_texts(None, text, ["rain"], [""]) is None
    # It fits the shipped network it steers.
    from daemon.model.checkpoint import load_network

    network = load_network(SHIPPED.with_name("tiny.safetensors"))
    assert guide.fits(network.latent_mean, network.latent_std)


def test_training_writes_a_guide_that_loads(tmp_path):
    from daemon.model.checkpoint import save_network
    from daemon.model.guide import train

    network = build_network("tiny")
    weights = save_network(network, tmp_path / "tiny.safetensors")
    out = tmp_path / GUIDE_FILE
    meta = train(out, weights, clips=6, held_out=2, steps=2, workers=1, phrases=200,
                 log=lambda message: None)
    guide = load_guide(weights, network.latent_mean, network.latent_std)
    assert guide is not None and meta["steps"] == 2 and meta["clips"] == 6
    assert set(meta["held_out"]) == {"top_class_heard_t0.05", "top_class_heard_t0.2",
                                     "top_class_heard_t0.5", "top_class_heard_t0.9"}
