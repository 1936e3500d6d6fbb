"""The shipped default weights: they load into the tiny network and generate audio.

(Speed is measured by benchmarks/generate.py, not asserted here.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

WEIGHTS = Path(__file__).resolve().parents[1] / "daemon" / "model" / "weights"
TINY = WEIGHTS / "tiny.safetensors"

pytestmark = pytest.mark.skipif(not TINY.is_file(), reason="no shipped weights in this checkout")


def test_shipped_weights_are_small_and_described():
    assert TINY.stat().st_size <= 30 * 1024 * 1024
    config = json.loads(TINY.with_suffix(".json").read_text())
    assert config["hidden_dim"] == 128 and config["latent_seq_len"] == 250
    card = (WEIGHTS / "MODEL_CARD.md").read_text()
    assert "onset" in card.lower() and "python -m daemon.model.evaluate" in card


def test_shipped_weights_load_and_generate_finite_audio():
    from daemon.model.checkpoint import load_network
    from daemon.model.codec import MelCodec, ceiling_share
    from daemon.model.text import MiniLMText
    from daemon.model.visual import default_visual
    from daemon.model.windows import generate_latents
    from daemon.model.world import WorldConfig, generate_clip

    network = load_network(TINY)
    assert network.config.hidden_dim == 128
    clip = generate_clip(1_000_000, WorldConfig(duration=2.0))
    # The front end these weights were trained with (the contact detector beside them).
    visual = default_visual(network.config.sync_dim, TINY)
    assert visual.sync_dim == network.config.sync_dim == 68
    picture = visual.encode_frames(clip.frames, clip.fps)
    text = MiniLMText().encode([clip.caption or ""]).tokens
    n = network.config.seq_lens_for(2.0)[0]
    latents = generate_latents(network, picture.clip[None], picture.sync[None], text, n,
                               steps=4, cfg=4.5, seed=0)
    # A world picture: hardly any of the sound at the sampler's ceiling (a third to a half of it
    # is there on pictures the network runs away on; engine.UNFAMILIAR_SHARE).
    assert float(ceiling_share(latents)[0]) < 0.01
    audio = MelCodec(griffin_lim_iters=4).decode(latents)
    assert audio.shape == (1, n * 512) and torch.isfinite(audio).all()
    assert float(audio.abs().max()) > 0


def test_shipped_weights_on_a_textured_picture_stay_within_a_sound():
    """Real footage is textured; the world is not. Held within the range of its training
    pictures (visual.PictureRange), the network does not run away on a texture."""
    from daemon.model.checkpoint import load_network
    from daemon.model.codec import ceiling_share
    from daemon.model.text import MiniLMText
    from daemon.model.visual import default_visual
    from daemon.model.windows import generate_latents
    from daemon.model.world.unfamiliar import unfamiliar_picture

    network = load_network(TINY)
    visual = default_visual(network.config.sync_dim, TINY)
    picture = visual.encode_frames(unfamiliar_picture("texture_pan_slow", 1_000_000)[:50], 25)
    n = network.config.seq_lens_for(2.0)[0]
    latents = generate_latents(network, picture.clip[None], picture.sync[None],
                               MiniLMText().encode([""]).tokens, n, steps=4, cfg=4.5, seed=0)
    assert float(ceiling_share(latents)[0]) < 0.01
