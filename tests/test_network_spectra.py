"""The prompt's spectrum: its maps fitted and stored, and the sampler steered toward it."""

import pytest
import torch

from daemon.model import build_network
from daemon.model.spectra import (
    CONFIDENT_WITHIN,
    PromptSpectra,
    SpectrumSteer,
    band_peaks,
)


def _examples(n=300, dim=12, bands=6, noisy_band=2, seed=0):
    """Prompts' states and peaks that are a linear map of them, exact except in one band,
    whose error grows with the first state channel."""
    g = torch.Generator().manual_seed(seed)
    states = torch.randn(n, dim, generator=g)
    truth = torch.randn(dim, bands, generator=g) / dim ** 0.5
    peaks = states @ truth - 1.0
    loud = states[:, 0] > 0
    peaks[loud, noisy_band] += 3.0 * torch.randn(int(loud.sum()), generator=g)
    return states, peaks, truth, torch.arange(n) % 20


def test_band_peaks_are_free_of_level():
    frames = torch.randn(2, 100, 8)
    peaks = band_peaks(frames)
    assert peaks.shape == (2, 8) and torch.allclose(peaks.amax(-1), torch.zeros(2))
    torch.testing.assert_close(band_peaks(frames + 4.0), peaks)


def test_the_fit_recovers_the_map_and_knows_where_it_is_unsure():
    states, peaks, truth, groups = _examples()
    spectra = PromptSpectra.fit(states, peaks, groups, ridge=1e-4, error_ridge=1e-4)
    predicted, confidence = spectra.predict(states[:, None, :])  # one token a prompt
    exact = [b for b in range(6) if b != 2]
    torch.testing.assert_close(predicted[:, exact], peaks[:, exact], rtol=0, atol=0.05)
    assert confidence[:, exact].min() > 0.9
    # The noisy band: unsure where its error is large (state channel 0 positive), sure elsewhere.
    loud = states[:, 0] > 1
    assert confidence[loud, 2].mean() < 0.5 < confidence[states[:, 0] < -1, 2].mean()
    assert ((confidence >= 0) & (confidence <= 1)).all()


def test_the_fit_needs_as_many_groups_as_folds():
    states, peaks, _, _ = _examples(n=40)
    with pytest.raises(ValueError, match="5 folds"):
        PromptSpectra.fit(states, peaks, torch.zeros(40, dtype=torch.long) + 3)
    with pytest.raises(ValueError, match="one row per example"):
        PromptSpectra.fit(states, peaks[:-1], torch.arange(40))


def test_spectra_are_stored_and_loaded_whole(tmp_path):
    from safetensors.torch import save_file

    states, peaks, _, groups = _examples()
    spectra = PromptSpectra.fit(states, peaks, groups)
    spectra.save(tmp_path / "s.safetensors", {"seeds": "0-19"})
    again = PromptSpectra.load(tmp_path / "s.safetensors")
    for name in PromptSpectra._fields():
        assert torch.equal(getattr(again, name), getattr(spectra, name))
    save_file({"weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="lacks state_mean"):
        PromptSpectra.load(tmp_path / "other.safetensors")


def _sound(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 200, 6, generator=g) - 6.0 + torch.linspace(0, 3, 6)


def test_the_steer_brings_each_band_to_the_prompt_by_its_confidence():
    sound = _sound()
    target = torch.tensor([[-4.0, -1.0, -3.0, 0.0, -2.0, -0.5]]).expand(2, -1)
    full = SpectrumSteer(target, torch.ones(2, 6), torch.ones(2, dtype=torch.bool))
    moved = full.move(sound)
    torch.testing.assert_close(band_peaks(moved), target, rtol=0, atol=0.25)
    # The quiet cells (below each band's median) stay as they were.
    quiet = sound < sound.median(1, keepdim=True).values
    assert torch.equal(moved[quiet], sound[quiet])
    # No confidence, no move; a sound already of the prompt's shape is left as it is.
    assert torch.equal(SpectrumSteer(target, torch.zeros(2, 6), full.rows).move(sound), sound)
    own = SpectrumSteer(band_peaks(sound), torch.ones(2, 6), full.rows)
    torch.testing.assert_close(own.move(sound), sound, rtol=0, atol=1e-4)


def test_the_steered_velocity_heads_for_the_moved_sound_only_where_and_when_asked():
    torch.manual_seed(0)
    network = build_network("tiny").eval()  # latent: 2 log-mel frames of 80 bands a token
    x, v = torch.randn(2, 10, 160), torch.randn(2, 10, 160)
    rows = torch.tensor([True, False])
    steer = SpectrumSteer(torch.full((2, 80), -1.0), torch.ones(2, 80), rows)
    steered = steer.velocity(network, lambda x_, t_: v)
    t = 0.2
    out = steered(x, t)
    sound = network.unnormalize(x + (1 - t) * out)
    expected = steer.move(network.unnormalize(x + (1 - t) * v).reshape(2, -1, 80))
    torch.testing.assert_close(sound[0].reshape(-1, 80), expected[0], rtol=1e-4, atol=1e-4)
    assert torch.equal(out[1], v[1])  # an item not steered
    assert torch.equal(steered(x, steer.until), v)  # past `until` the network alone


def test_confidence_falls_to_zero_at_the_error_it_allows():
    spectra = PromptSpectra(torch.zeros(1, 2), torch.zeros(1), torch.zeros(2), torch.zeros(1, 2),
                            torch.tensor([CONFIDENT_WITHIN ** 2, (CONFIDENT_WITHIN / 2) ** 2]))
    _, confidence = spectra.predict(torch.zeros(1, 3, 1))
    torch.testing.assert_close(confidence, torch.tensor([[0.0, 0.5]]))
