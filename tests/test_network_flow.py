"""Flow matching: the sampler's guidance, seeds, callbacks and the training loss."""

import pytest
import torch

from daemon.engine import Cancelled
from daemon.model import build_network, flow
from daemon.model.codec import MelCodec
from daemon.model.flow import (
    CONTACT_GUIDANCE_RATIO,
    PROMPT_GUIDANCE_RATIO,
    Guidance,
    TrainingSettings,
    autocast_for,
    euler_sample,
    fit_latent_statistics,
    frame_level,
    guided_velocity,
    onset_weights,
    precision_name,
    prepare_guidance,
    sample,
    sample_training_times,
    sound_bounds,
    training_loss,
)

SIZES = dict(latent_dim=8, clip_dim=8, sync_dim=8, text_dim=16, hidden_dim=64, depth=2,
             fused_depth=1, num_heads=1, latent_seq_len=40, clip_seq_len=10, sync_seq_len=32,
             text_seq_len=4, v2=True)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    net = build_network(**SIZES)
    with torch.no_grad():  # random weights everywhere so every condition reaches the output
        for p in net.parameters():
            p.normal_(0, 0.15)
        net.latent_mean.fill_(0.5)
        net.latent_std.fill_(2.0)
    return net.eval()


@pytest.fixture()
def inputs():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(2, 10, 8, generator=g), torch.randn(2, 32, 8, generator=g),
            torch.randn(2, 4, 16, generator=g))


def _count_calls(module):
    calls = []
    handle = module.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    return calls, handle


def test_a_seed_reproduces_its_result_exactly(net, inputs):
    a = sample(net, *inputs, steps=4, cfg=3.0, seed=11)
    b = sample(net, *inputs, steps=4, cfg=3.0, seed=11)
    c = sample(net, *inputs, steps=4, cfg=3.0, seed=12)
    assert a.shape == (2, 40, 8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_guidance_one_is_the_conditional_branch_alone(net, inputs):
    clip, sync, text = inputs
    steps = 5
    ours = sample(net, clip, sync, text, steps=steps, cfg=1.0, seed=3, renoise=0.0)
    # The same Euler integration written out with the conditional velocity only (its predicted
    # sound held within a sound's range, as the sampler holds it).
    noise = torch.randn((2, 40, 8), generator=torch.Generator().manual_seed(3))
    low, high = sound_bounds(net)
    with torch.no_grad():
        cond = net.preprocess_conditions(clip, sync, text, 40)
        x = noise
        for i in range(steps):
            t = i / steps
            v = net.predict_flow(x, torch.full((2,), t), cond)
            sound = torch.maximum(torch.minimum(x + (1 - t) * v, high), low)
            x = x + (sound - x) / (1 - t) / steps
    assert torch.allclose(ours, net.unnormalize(x), atol=1e-5)
    # ... and the unconditional branch is not even run (so a negative prompt changes nothing).
    calls, handle = _count_calls(net.audio_input_proj)
    with_negative = sample(net, clip, sync, text, negative_text_f=torch.randn(1, 4, 16),
                           steps=steps, cfg=1.0, seed=3, renoise=0.0)
    handle.remove()
    assert calls == [2] * steps
    assert torch.equal(with_negative, ours)
    below_one = sample(net, clip, sync, text, steps=steps, cfg=0.5, seed=3, renoise=0.0)
    assert torch.equal(below_one, ours)


def test_mmaudio_guidance_is_two_branches_in_one_batch(net, inputs):
    clip, sync, text = inputs
    x, t, w = torch.randn(2, 40, 8), 0.3, 4.5
    with torch.no_grad():
        guidance = Guidance.mmaudio(w)
        branches = prepare_guidance(net, clip, sync, text, 40, guidance)
        assert branches.plain is None and branches.negative is None
        calls, handle = _count_calls(net.audio_input_proj)
        v = guided_velocity(net, branches, guidance)(x, t)
        handle.remove()
        assert calls == [4]  # both branches of both items in one forward
        tt = torch.full((2,), t)
        v_cond = net.predict_flow(x, tt, net.preprocess_conditions(clip, sync, text, 40))
        e_clip, e_sync, e_text = net.empty_features(2, 10, 32)
        v_uncond = net.predict_flow(x, tt, net.preprocess_conditions(e_clip, e_sync, e_text, 40))
    assert torch.allclose(v, w * v_cond + (1 - w) * v_uncond, atol=1e-4)


def test_picture_prompt_and_negative_are_separate_terms_per_item(net, inputs):
    """Item 0 has a prompt and a negative prompt, item 1 neither (its text is no caption). The
    picture term is 1 before picture_from, the prompt term the picture's from prompt_until on."""
    clip, sync, text = inputs
    negative = torch.randn(2, 4, 16)
    g = Guidance(picture=3.0, prompt=7.0, negative=5.0, prompt_until=0.5, picture_from=0.3)
    x = torch.randn(2, 40, 8)
    with torch.no_grad():
        branches = prepare_guidance(net, clip, sync, text, 40, g, negative_text_f=negative,
                                    prompted=torch.tensor([True, False]),
                                    negated=torch.tensor([True, False]))
        velocity = guided_velocity(net, branches, g)
        e_clip, e_sync, e_text = net.empty_features(2, 10, 32)
        for t, picture_w, prompt_w in ((0.2, 1.0, 7.0), (0.4, 3.0, 7.0), (0.6, 3.0, 3.0)):
            calls, handle = _count_calls(net.audio_input_proj)
            v = velocity(x, t)
            handle.remove()
            assert calls == [8]  # four branches, one forward

            tt = torch.full((2,), t)

            def branch(clip_f, sync_f, text_f, tt=tt):
                return net.predict_flow(x, tt, net.preprocess_conditions(clip_f, sync_f,
                                                                         text_f, 40))

            v_full, v_empty = branch(clip, sync, text), branch(e_clip, e_sync, e_text)
            v_plain, v_neg = branch(clip, sync, e_text), branch(clip, sync, negative)
            want_0 = (v_empty[0] + picture_w * (v_plain[0] - v_empty[0])
                      + prompt_w * (v_full[0] - v_plain[0]) - 5.0 * (v_neg[0] - v_plain[0]))
            # Without a prompt the item's own caption-less velocity stands for the picture alone.
            want_1 = v_empty[1] + picture_w * (v_full[1] - v_empty[1])
            assert torch.allclose(v[0], want_0, atol=1e-4)
            assert torch.allclose(v[1], want_1, atol=1e-4)


def test_without_a_negative_prompt_late_steps_are_mmaudios_two_branches(net, inputs):
    clip, sync, text = inputs
    g = Guidance(picture=3.0, prompt=7.0, negative=5.0, prompt_until=0.5)
    x = torch.randn(2, 40, 8)
    with torch.no_grad():
        velocity = guided_velocity(net, prepare_guidance(net, clip, sync, text, 40, g), g)
        counted = []
        for t in (0.2, 0.6):
            calls, handle = _count_calls(net.audio_input_proj)
            v = velocity(x, t)
            handle.remove()
            counted += calls
        mmaudio = Guidance.mmaudio(3.0)
        want = guided_velocity(net, prepare_guidance(net, clip, sync, text, 40, mmaudio),
                               mmaudio)(x, 0.6)
    assert counted == [6, 4]  # (P, T), (0, 0), (P, 0) early; the first two late
    assert torch.allclose(v, want, atol=1e-5)


def test_the_contact_term_steers_toward_what_the_contact_channels_add(net, inputs):
    """The last `contact_channels` sync channels set to "no contact" make one more branch of the
    same forward, with each item's own text: contacts * (v(P, T) - v(P°, T)) is added to the
    velocity as each latent frame's level, MMAudio's late two-branch guidance and the separate
    early terms alike."""
    clip, sync, text = inputs
    negative = torch.randn(2, 4, 16)
    contactless = sync.clone()
    contactless[..., -2:] = 0.0
    g = Guidance(picture=3.0, prompt=7.0, negative=5.0, prompt_until=0.5, contacts=2.0)
    x = torch.randn(2, 40, 8)
    with torch.no_grad():
        tt = {t: torch.full((2,), t) for t in (0.2, 0.6)}

        def branch(t, clip_f, sync_f, text_f):
            return net.predict_flow(x, tt[t], net.preprocess_conditions(clip_f, sync_f, text_f, 40))

        e_clip, e_sync, e_text = net.empty_features(2, 10, 32)
        alone = guided_velocity(net, prepare_guidance(net, clip, sync, text, 40, g,
                                                      contact_channels=2), g)
        with_negative = guided_velocity(net, prepare_guidance(
            net, clip, sync, text, 40, g, negative_text_f=negative, contact_channels=2), g)
        for t, count in ((0.2, 8), (0.6, 6)):
            calls, handle = _count_calls(net.audio_input_proj)
            v = alone(x, t)
            handle.remove()
            assert calls == [count]  # (P, T), (0, 0), [(P, 0)], (P°, T)
            v_full, v_empty = branch(t, clip, sync, text), branch(t, e_clip, e_sync, e_text)
            v_plain, v_bare = branch(t, clip, sync, e_text), branch(t, clip, contactless, text)
            if t < 0.5:
                picture = v_empty + 3.0 * (v_plain - v_empty) + 7.0 * (v_full - v_plain)
            else:
                picture = v_empty + 3.0 * (v_full - v_empty)
            assert torch.allclose(v, picture + 2.0 * frame_level(v_full - v_bare), atol=1e-4)
            v_neg = branch(t, clip, sync, negative)
            prompt_w = 7.0 if t < 0.5 else 3.0
            want = (v_empty + 3.0 * (v_plain - v_empty) + prompt_w * (v_full - v_plain)
                    - 5.0 * (v_neg - v_plain) + 2.0 * frame_level(v_full - v_bare))
            assert torch.allclose(with_negative(x, t), want, atol=1e-4)


def test_the_contact_term_keeps_each_frames_level_and_drops_its_spectrum():
    """A log-mel token's two mel frames each take the mean of their 80 bins (a gain on that
    frame, the spectrum left to the prompt); a latent of another width is averaged per token."""
    term = torch.randn(2, 5, MelCodec.latent_dim)
    level = frame_level(term)
    frames = term.view(2, 5, MelCodec.frames_per_token, MelCodec.n_mels)
    for k in range(MelCodec.frames_per_token):
        part = level.view_as(frames)[:, :, k]
        assert torch.allclose(part, frames[:, :, k].mean(-1, keepdim=True).expand_as(part))
    assert not torch.allclose(level[..., 0], level[..., -1])  # the frames differ
    other = torch.randn(2, 5, 8)
    assert torch.allclose(frame_level(other), other.mean(-1, keepdim=True).expand(2, 5, 8))
    assert torch.allclose(level.mean(-1), term.mean(-1), atol=1e-6)  # no level added or lost


def test_no_contact_branch_where_nothing_is_marked_or_nothing_is_detected(net, inputs):
    clip, sync, text = inputs
    quiet = sync.clone()
    quiet[..., -2:] = 0.0
    g, none = Guidance(picture=3.0, prompt=3.0), Guidance(picture=3.0, prompt=3.0, contacts=0.0)
    x = torch.randn(2, 40, 8)
    with torch.no_grad():
        for branches in (prepare_guidance(net, clip, quiet, text, 40, g, contact_channels=2),
                         prepare_guidance(net, clip, sync, text, 40, none, contact_channels=2),
                         # The test network's 8 sync channels hold no contact detector's.
                         prepare_guidance(net, clip, sync, text, 40, g)):
            assert branches.contactless is None
        calls, handle = _count_calls(net.audio_input_proj)
        v = guided_velocity(net, prepare_guidance(net, clip, quiet, text, 40, g,
                                                  contact_channels=2), g)(x, 0.3)
        handle.remove()
        want = guided_velocity(net, prepare_guidance(net, clip, quiet, text, 40, none), none)(x, 0.3)
    assert calls == [4] and torch.allclose(v, want, atol=1e-6)


def test_contact_channels_are_those_after_the_motion_features():
    from daemon.model.events import FAMILIES
    from daemon.model.visual import MotionFeatures, contact_channels

    assert contact_channels(MotionFeatures.sync_dim + len(FAMILIES)) == len(FAMILIES)
    assert contact_channels(MotionFeatures.sync_dim) == contact_channels(768) == 0


def test_scaled_guidance_steers_prompts_harder_than_the_picture():
    g = Guidance.scaled(4.5)
    assert g.picture == 4.5 and g.prompt == g.negative == 4.5 * PROMPT_GUIDANCE_RATIO > 4.5
    assert g.contacts == 4.5 * CONTACT_GUIDANCE_RATIO and Guidance.mmaudio(4.5).contacts == 0.0
    assert not Guidance.scaled(1.0).active


def test_the_negative_prompt_changes_the_result(net, inputs):
    g = torch.Generator().manual_seed(5)
    neg_a, neg_b = torch.randn(1, 4, 16, generator=g), torch.randn(1, 4, 16, generator=g)
    plain = sample(net, *inputs, steps=4, cfg=4.5, seed=2)
    a = sample(net, *inputs, negative_text_f=neg_a, steps=4, cfg=4.5, seed=2)
    b = sample(net, *inputs, negative_text_f=neg_b, steps=4, cfg=4.5, seed=2)
    assert (a - b).abs().max() > 1e-2 and (a - plain).abs().max() > 1e-2
    # Passing the learned empty text as the "negative prompt" is the same as none.
    same = sample(net, *inputs, negative_text_f=net.empty_string_feat.detach(), steps=4,
                  cfg=4.5, seed=2)
    assert torch.allclose(same, plain, rtol=1e-4, atol=1e-3)  # outputs reach ~30 here


def test_conditions_are_prepared_once_per_sampling_not_per_step(net, inputs):
    calls, handle = _count_calls(net.clip_input_proj)
    sample(net, *inputs, steps=6, cfg=4.5, seed=0)
    handle.remove()
    # (P, T), (0, 0) and (P, 0): each branch's conditions once, whatever the number of steps.
    assert len(calls) == 3


def test_progress_is_reported_and_cancelling_stops_at_the_next_step(net, inputs):
    seen = []
    sample(net, *inputs, steps=5, cfg=2.0, progress=lambda s, n: seen.append((s, n)))
    assert seen == [(i, 5) for i in range(1, 6)]
    seen.clear()
    with pytest.raises(Cancelled):
        sample(net, *inputs, steps=25, cfg=2.0, progress=lambda s, n: seen.append(s),
               cancelled=lambda: len(seen) >= 3)
    assert seen == [1, 2, 3]


def test_sampler_rejects_text_that_cannot_batch_with_the_empty_text(net, inputs):
    clip, sync, _ = inputs
    with pytest.raises(ValueError, match="text_seq_len"):
        sample(net, clip, sync, torch.randn(2, 7, 16), steps=2, cfg=4.5)


def test_full_condition_dropout_trains_the_empty_features(net, inputs):
    clip, sync, text = inputs
    latent = torch.randn(2, 40, 8)
    drop_all = TrainingSettings(picture_dropout=1.0, text_dropout=1.0)
    a = training_loss(net, latent, clip, sync, text, settings=drop_all,
                      generator=torch.Generator().manual_seed(4))
    e_clip, e_sync, e_text = net.empty_features(2, 10, 32)
    b = training_loss(net, latent, e_clip, e_sync, e_text, settings=drop_all,
                      generator=torch.Generator().manual_seed(4))
    assert torch.allclose(a, b)
    a.backward()
    assert net.empty_string_feat.grad is not None and net.empty_string_feat.grad.abs().sum() > 0
    net.zero_grad()


def test_token_weights_split_the_loss_between_the_tokens_they_weigh(net, inputs):
    clip, sync, text = inputs
    latent = torch.randn(2, 40, 8, generator=torch.Generator().manual_seed(3))

    def loss(weights=None):
        with torch.no_grad():
            return float(training_loss(net, latent, clip, sync, text, token_weights=weights,
                                       generator=torch.Generator().manual_seed(5)))

    plain = loss()
    assert loss(torch.ones(2, 40)) == pytest.approx(plain, rel=1e-6)
    assert loss(torch.full((2, 40), 7.0)) == pytest.approx(plain, rel=1e-6)  # a weighted mean
    # complementary masks: each gives the mean error over its own tokens
    mask = torch.rand(2, 40, generator=torch.Generator().manual_seed(6)) < 0.3
    a, b = loss(mask.float()), loss((~mask).float())
    n = int(mask.sum())
    assert (a * n + b * (80 - n)) / 80 == pytest.approx(plain, rel=1e-5)
    assert a != pytest.approx(b)
    with pytest.raises(ValueError, match="token_weights"):
        loss(torch.ones(2, 39))


def test_onset_weights_weigh_a_start_and_the_token_after_it():
    onsets = torch.tensor([[0.0, 0.1, 0.8, 0.2, 0.1, 0.6],
                           [0.5, 0.0, 0.0, 0.0, 0.0, 0.49]])
    assert onset_weights(onsets, 0.5, 3.0).tolist() == [[1, 1, 4, 4, 1, 4], [4, 4, 1, 1, 1, 1]]
    assert onset_weights(onsets, 0.5, 0.0).tolist() == [[1.0] * 6] * 2


def test_low_t_fraction_puts_that_share_of_samples_near_the_noise():
    def times(settings):
        return sample_training_times(20_000, settings, generator=torch.Generator().manual_seed(1))

    plain = times(TrainingSettings())
    tilted = times(TrainingSettings(low_t_fraction=0.25, low_t_max=0.05))
    assert float((plain < 0.05).float().mean()) < 0.01
    assert float((tilted < 0.05).float().mean()) == pytest.approx(0.25, abs=0.02)
    assert float(tilted.min()) >= 0.0 and float(tilted.max()) < 1.0
    # Off by default, and then t is drawn exactly as before (same random stream).
    assert torch.equal(plain, times(TrainingSettings(low_t_fraction=0.0)))


@pytest.mark.parametrize("native_bf16", [False, True])
def test_training_autocasts_to_bf16_only_on_a_cpu_that_multiplies_it(monkeypatch, native_bf16):
    monkeypatch.setattr(flow, "cpu_has_native_bf16", lambda: native_bf16)
    cpu = torch.device("cpu")
    with autocast_for(cpu, training=True):
        assert torch.is_autocast_enabled("cpu") == native_bf16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == (
            torch.bfloat16 if native_bf16 else torch.float32)
    assert precision_name(cpu, training=True) == ("bf16 autocast" if native_bf16 else "float32")
    with autocast_for(cpu):  # sampling: float32 whatever the CPU
        assert not torch.is_autocast_enabled("cpu")
    assert precision_name(cpu) == "float32"


@pytest.mark.parametrize("native_bf16", [False, True])
def test_a_few_training_steps_lower_the_loss(monkeypatch, native_bf16):
    monkeypatch.setattr(flow, "cpu_has_native_bf16", lambda: native_bf16)
    torch.manual_seed(0)
    net = build_network(**SIZES)  # the real initialisation (adaLN-zero)
    g = torch.Generator().manual_seed(0)
    t = torch.arange(40) / 40
    # A tiny batch whose latent follows its picture features: smooth ramps scaled per item.
    clip = torch.randn(4, 10, 8, generator=g)
    sync = torch.randn(4, 32, 8, generator=g)
    text = torch.randn(4, 4, 16, generator=g)
    latent = clip.mean(1, keepdim=True) * torch.sin(6.28 * t)[None, :, None] + 3.0
    fit_latent_statistics(net, latent)
    assert torch.allclose(net.latent_mean, latent.mean((0, 1), keepdim=True), atol=1e-5)

    def held_out_loss():
        with torch.no_grad():
            return sum(training_loss(net, latent, clip, sync, text,
                                     generator=torch.Generator().manual_seed(100 + k)).item()
                       for k in range(4)) / 4

    before = held_out_loss()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    net.train()
    for _ in range(25):
        with autocast_for(torch.device("cpu"), training=True):  # as the training entry points
            loss = training_loss(net, latent, clip, sync, text, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    after = held_out_loss()
    assert after < 0.7 * before, (before, after)


@pytest.mark.parametrize("renoise", [0.0, 0.5, 1.0])
def test_every_renoise_lands_on_the_sound_a_perfect_velocity_points_to(renoise):
    # The exact velocity toward one sound c: x1 = x + (1 - t) v = c from anywhere on the path.
    c = torch.linspace(-2, 2, 24).view(1, 3, 8)

    def velocity(x, t):
        return (c - x) / (1 - t)

    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 3, 8, generator=g)
    out = euler_sample(velocity, noise, 6, renoise=renoise,
                       fresh_noise=lambda: torch.randn(2, 3, 8, generator=g))
    assert torch.allclose(out, c.expand(2, 3, 8), atol=1e-5)


@pytest.mark.parametrize("renoise", [0.0, 0.7])
def test_bounds_hold_a_runaway_velocity_and_leave_a_sound_within_them_alone(renoise):
    c = torch.linspace(-2, 2, 24).view(1, 3, 8)
    low, high = torch.full((1, 1, 8), -2.5), torch.full((1, 1, 8), 2.5)

    def toward_c(x, t):
        return (c - x) / (1 - t)

    def runaway(x, t):  # each prediction further out than the last, as on a picture unseen
        return 8.0 * x + 5.0

    def run(velocity, bounds):
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(2, 3, 8, generator=g)
        return euler_sample(velocity, noise, 10, bounds=bounds, renoise=renoise,
                            fresh_noise=lambda: torch.randn(2, 3, 8, generator=g))

    assert run(runaway, None).abs().max() > 100
    held = run(runaway, (low, high))
    assert held.min() >= -2.5 and held.max() <= 2.5
    assert torch.allclose(run(toward_c, (low, high)), run(toward_c, None), atol=1e-6)


def test_sound_bounds_are_the_codec_range_in_the_networks_space(net):
    from daemon.model.codec import SOUND_RANGE

    low, high = sound_bounds(net)
    assert low.shape == high.shape == net.latent_mean.shape
    data = net.unnormalize(torch.cat([low, high]))
    assert torch.allclose(data[0], torch.full_like(data[0], SOUND_RANGE[0]))
    assert torch.allclose(data[1], torch.full_like(data[1], SOUND_RANGE[1]))


def test_renoise_redraws_from_the_seed_and_is_checked(net, inputs):
    clip, sync, text = inputs

    def run(renoise, seed=3):
        return sample(net, clip, sync, text, steps=6, cfg=4.5, seed=seed, renoise=renoise)

    plain, stirred = run(0.0), run(0.7)
    assert torch.equal(stirred, run(0.7))  # a seed reproduces it
    assert not torch.allclose(plain, stirred, atol=1e-3)
    assert not torch.allclose(stirred, run(0.7, seed=4), atol=1e-3)
    with pytest.raises(ValueError, match="renoise"):
        run(1.5)
    with pytest.raises(ValueError, match="fresh_noise"):
        euler_sample(lambda x, t: x, torch.zeros(1, 2, 2), 3, renoise=0.5)


def test_a_later_start_takes_only_the_remaining_steps_and_is_checked():
    c = torch.linspace(-1, 1, 12).view(1, 3, 4)
    seen = []

    def velocity(x, t):
        seen.append(t)
        return (c - x) / (1 - t)

    g = torch.Generator().manual_seed(1)
    noise = torch.randn(1, 3, 4, generator=g)
    t0 = 0.4
    out = euler_sample(velocity, (1 - t0) * noise + t0 * c, 5, start=2, renoise=0.5,
                       fresh_noise=lambda: torch.randn(1, 3, 4, generator=g))
    assert seen == pytest.approx([0.4, 0.6, 0.8])
    assert torch.allclose(out, c, atol=1e-5)
    with pytest.raises(ValueError, match="start"):
        euler_sample(velocity, noise, 5, start=5)
    with pytest.raises(ValueError, match="inpainting"):
        euler_sample(velocity, noise, 5, start=1, known=noise,
                     known_mask=torch.ones(1, 3, 1, dtype=torch.bool))
