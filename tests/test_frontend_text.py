"""The MiniLM text front end: offline, deterministic, fixed shapes, cut prompts warned about."""

from __future__ import annotations

import logging

import pytest
import torch

from daemon.model.text import NEGATIVE_TOKENS, MiniLMText, TextEncoder, conditioning_text


@pytest.fixture(scope="module")
def encoder() -> MiniLMText:
    return MiniLMText()


def test_token_states_and_pooled_vector_have_the_network_shapes(encoder):
    assert isinstance(encoder, TextEncoder)
    features = encoder.encode(["glass shatters on a stone floor", ""])
    assert features.tokens.shape == (2, 32, 384) and features.tokens.dtype == torch.float32
    assert features.pooled.shape == (2, 384)
    torch.testing.assert_close(features.pooled.norm(dim=-1), torch.ones(2))


def test_encodings_are_deterministic_across_instances_and_batches(encoder):
    prompts = ["footsteps on gravel", "rain on a tin roof", ""]
    first = encoder.encode(prompts)
    fresh = MiniLMText().encode(list(reversed(prompts)))
    torch.testing.assert_close(first.tokens, fresh.tokens.flip(0), rtol=0, atol=1e-5)
    torch.testing.assert_close(first.pooled, fresh.pooled.flip(0), rtol=0, atol=1e-6)


def test_the_empty_prompt_is_encoded_like_any_other(encoder):
    empty = encoder.encode([""])
    assert bool(empty.tokens.abs().sum() > 0)
    other = encoder.encode(["a door slams"])
    assert not torch.allclose(empty.tokens, other.tokens)
    # Similar prompts are closer than unrelated ones: the features carry meaning.
    a, b, c = encoder.encode(["a dog barks", "a puppy barking", "ocean waves at night"]).pooled
    assert float(a @ b) > float(a @ c) + 0.2


def test_cached_results_cannot_be_changed_by_the_caller(encoder):
    features = encoder.encode(["wind through trees"])
    features.tokens.zero_()
    again = encoder.encode(["wind through trees"])
    assert bool(again.tokens.abs().sum() > 0)


def test_a_batch_keeps_its_prompts_when_the_cache_makes_room():
    small = MiniLMText(cache_size=3)
    old = small.encode(["a door slams"]).tokens[0]
    small.encode(["rain", "wind"])
    # "a door slams" is the oldest entry; the new prompts beside it must not evict it first.
    batch = small.encode(["a door slams", "fire crackles", "ocean waves", "city hum"])
    torch.testing.assert_close(batch.tokens[0], old)
    # A batch larger than the cache is still answered whole, and the cache keeps its size.
    many = [f"{n} footsteps on gravel" for n in range(5)]
    assert small.encode(many).tokens.shape == (5, 32, 384)
    assert len(small._cache) == 3


def test_long_prompts_are_cut_with_a_warning(encoder, caplog):
    long_prompt = " ".join(["a heavy wooden door slams shut in an empty hall"] * 6)
    with caplog.at_level(logging.WARNING, logger="daemon.model.text"):
        features = encoder.encode([long_prompt])
    assert features.tokens.shape == (1, 32, 384)
    assert any("prompt cut to 30" in r.getMessage() for r in caplog.records)


def test_a_network_that_reads_negation_finds_the_negative_prompt_mirrored_in_its_text(encoder):
    prompts, negatives = ["footsteps on gravel", "", "wind"], ["rain", "music", ""]
    plain, prompted, negative = conditioning_text(encoder, prompts, negatives, False)
    torch.testing.assert_close(plain, encoder.encode(prompts).tokens)
    torch.testing.assert_close(negative, encoder.encode(negatives).tokens)
    assert prompted.tolist() == [True, False, True]

    text, prompted, _ = conditioning_text(encoder, prompts, negatives, True)
    assert prompted.tolist() == [True, True, True]  # "not music" says something
    keep = 32 - NEGATIVE_TOKENS
    torch.testing.assert_close(text[:, :keep], plain[:, :keep])
    torch.testing.assert_close(text[2], plain[2])  # no negative prompt: the prompt alone
    mirror = 2 * encoder.encode([""]).tokens[0].mean(0)
    torch.testing.assert_close(text[0, keep:], mirror - negative[0, :NEGATIVE_TOKENS])
    # "not rain" lies opposite "rain" about the empty prompt: the mean states disagree.
    centre = mirror / 2
    said = (negative[0, :NEGATIVE_TOKENS] - centre).mean(0)
    denied = (text[0, keep:] - centre).mean(0)
    assert float(torch.nn.functional.cosine_similarity(said, denied, dim=0)) < -0.99
