"""Conditional flow matching for the V2A network: the training loss and the Euler sampler.

The path runs from noise (t = 0) to data (t = 1): x_t = (1 - t)·noise + t·data, and the
network learns the velocity data - noise. Sampling integrates that velocity with Euler steps.
Guidance steers toward the picture, toward what its contacts add, toward the prompt and away
from the negative prompt as separate terms (`Guidance`); every branch runs in one batched
forward.

Latents given to and returned by this module are in data space; the network sees them
normalised with its `latent_mean` / `latent_std`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from ..engine import Cancelled
from . import visual
from .codec import SOUND_RANGE, MelCodec
from .network import Conditions, InputShapeError, V2ANetwork

if TYPE_CHECKING:
    from .guide import ClassSteer

StepProgress = Callable[[int, int], None]
"""progress(step, total): called after every sampler step."""


# ---------------------------------------------------------------------------------------------
# Training


@dataclass(frozen=True)
class TrainingSettings:
    """How training samples are drawn."""

    # t = sigmoid(normal(mean, std)): concentrates training on the middle of the path.
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0
    # Chance that a sample's picture (clip + sync together) / text is replaced by the learned
    # empty features, so the network also learns the unconditional velocity for guidance.
    picture_dropout: float = 0.1
    text_dropout: float = 0.1
    # Chance that a sample's t is drawn uniformly from [0, low_t_max) instead. Near t = 0 the
    # noisy latent does not yet show the clip's overall spectrum, so only the picture and the
    # caption can tell it: the one stretch of the path where the flow loss rewards reading them
    # (further on, x_t itself reveals it). The logit-normal seldom goes there (t < 0.05: 0.2 %).
    low_t_fraction: float = 0.0
    low_t_max: float = 0.05


def sample_training_times(batch_size: int, settings: TrainingSettings, *,
                          generator: torch.Generator | None = None,
                          device: torch.device | str = "cpu") -> Tensor:
    z = torch.randn(batch_size, generator=generator, device=device)
    t = torch.sigmoid(z * settings.logit_normal_std + settings.logit_normal_mean)
    if settings.low_t_fraction > 0:
        low = torch.rand(batch_size, generator=generator, device=device) < settings.low_t_fraction
        early = settings.low_t_max * torch.rand(batch_size, generator=generator, device=device)
        t = torch.where(low, early, t)
    return t


def onset_weights(onsets: Tensor, rise: float, weight: float) -> Tensor:
    """(B, N) token weights for `training_loss` from (B, N) onset strengths (the codec's
    `token_onsets`): 1 + `weight` on every token where sound starts (strength >= `rise`) and on
    the token after it, 1 elsewhere.

    A step or a click fills a token or two where a rain or a pad fills hundreds, so the flow
    loss is mostly about steady sound; this gives the starts of sounds a say in it."""
    start = onsets >= rise
    after = F.pad(start[:, :-1], (1, 0))
    return 1.0 + weight * (start | after).to(onsets.dtype)


def training_loss(network: V2ANetwork, latent: Tensor, clip_f: Tensor, sync_f: Tensor,
                  text_f: Tensor, *, settings: TrainingSettings | None = None,
                  generator: torch.Generator | None = None,
                  token_weights: Tensor | None = None) -> Tensor:
    """Mean squared error between predicted and true velocity for a batch of data-space
    latents (B, N, latent_dim) with their conditions. `token_weights` (B, N), when given,
    weigh each token's error (a weighted mean: weights all equal give the plain loss)."""
    settings = settings or TrainingSettings()
    b = latent.shape[0]
    device = latent.device
    data = network.normalize(latent)
    noise = torch.randn(data.shape, generator=generator, device=device, dtype=data.dtype)
    t = sample_training_times(b, settings, generator=generator, device=device)
    x_t = (1 - t[:, None, None]) * noise + t[:, None, None] * data

    empty_clip, empty_sync, empty_text = network.empty_features(
        b, clip_f.shape[1], sync_f.shape[1]
    )
    drop_picture = torch.rand(b, generator=generator, device=device) < settings.picture_dropout
    drop_text = torch.rand(b, generator=generator, device=device) < settings.text_dropout
    clip_f = torch.where(drop_picture[:, None, None], empty_clip, clip_f)
    sync_f = torch.where(drop_picture[:, None, None], empty_sync, sync_f)
    if empty_text.shape[1] == text_f.shape[1]:
        text_f = torch.where(drop_text[:, None, None], empty_text, text_f)
    elif settings.text_dropout > 0:
        raise InputShapeError(
            f"text_f has {text_f.shape[1]} tokens but the learned empty text has "
            f"{empty_text.shape[1]}; pad or truncate text features to text_seq_len"
        )

    velocity = network(x_t, clip_f, sync_f, text_f, t)
    if token_weights is None:
        return F.mse_loss(velocity.float(), (data - noise).float())
    if token_weights.shape != latent.shape[:2]:
        raise InputShapeError(f"token_weights must be {tuple(latent.shape[:2])} (B, N), got "
                              f"{tuple(token_weights.shape)}")
    error = (velocity.float() - (data - noise).float()).pow(2).mean(-1)  # (B, N)
    weights = token_weights.float()
    return (error * weights).sum() / weights.sum().clamp_min(1e-12)


@torch.no_grad()
def fit_latent_statistics(network: V2ANetwork, latents: Tensor) -> None:
    """Set the network's per-channel latent mean/std from data-space latents (B, N, C)."""
    flat = latents.reshape(-1, latents.shape[-1]).float()
    network.latent_mean.copy_(flat.mean(0).view(1, 1, -1))
    network.latent_std.copy_(flat.std(0).clamp_min(1e-5).view(1, 1, -1))


# ---------------------------------------------------------------------------------------------
# Sampling


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX-512 BF16). There bf16
    matrix products run several times faster than float32 (`benchmarks/training.py`); on
    other CPUs they are emulated, and slower."""
    return any(getattr(torch.cpu, probe, lambda: False)()
               for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def uses_bf16(device: torch.device, *, training: bool = False) -> bool:
    """Whether the network runs under bf16 autocast: on CUDA, and for training on a CPU with
    native bf16. Sampling on a CPU stays float32: there bf16 saved only a tenth of the
    sampler's time and cost a little of the negative prompt's effect (model card,
    "Precision"), and the engine's output does not depend on which CPU made it."""
    return device.type == "cuda" or (training and device.type == "cpu"
                                     and cpu_has_native_bf16())


def autocast_for(device: torch.device, *, training: bool = False):
    """bf16 autocast where `uses_bf16`, else plain float32 (the sampler casts each velocity
    back to float32 either way)."""
    if uses_bf16(device, training=training):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_name(device: torch.device, *, training: bool = False) -> str:
    """How `autocast_for` computes, for records and benchmarks."""
    return "bf16 autocast" if uses_bf16(device, training=training) else "float32"


def make_generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


PROMPT_GUIDANCE_RATIO = 2.0
"""Prompt and negative guidance as multiples of the picture guidance (`Guidance.scaled`): the
shipped network hears text faintly beside the picture; at twice the picture's strength the
prompt picks material, surface and mood more often and a negative prompt quiets what it names
(model card)."""

PROMPT_UNTIL = 0.25
"""The prompt term has its own strength for t < PROMPT_UNTIL (the first quarter of the path,
where the overall sound is chosen), then the picture's: steered harder all the way, the prompt
cost sync (onset F1 0.752 against 0.783) and chose no better (model card)."""

CONTACT_GUIDANCE_RATIO = 0.5
"""The contact term's strength as a multiple of the picture guidance (`Guidance.scaled`). The
picture term steers toward the whole picture's sound; this one toward the level the contact
detector's channels add to it, a hit on each frame they mark (`Guidance`). On the evaluation's
96 sync and 96 adherence clips at picture guidance 4.5 (model card, "Guidance toward the
detected contacts"): onset F1 0.833 without it, 0.847 / 0.854 / 0.857 at 0.5 / 0.75 / 1 times
it, adherence over all classes 61.5 % without it, 61.5 / 55.2 / 54.2 % with it: past half the
picture's strength the pushed hits turn the prompted footsteps into impacts. Steering the whole
term, spectrum and all, cost more (at 1: F1 0.844, adherence 51.0 %)."""

RENOISE = 0.7
"""The share of the predicted noise each sampler step replaces by fresh noise (`euler_sample`).
At 0 (the Euler path) the network's footsteps came out as pitched knocks. On 96 held-out
clips, 0.5 against 0: onset F1 0.805 against 0.771 (paired interval +0.008 to +0.062), the
prompt picks the class over all 21 in 52.1 % against 42.7 %. 0.7 against 0.5 on those clips
and on 96 others: over all classes 56.3 / 61.5 % against 52.1 / 54.2 % (20 clips against 9,
p = 0.06), a named ambience 0.8 / 1.4 dB more specifically quieter, onset F1 +0.005 / -0.009
(both intervals across 0); at 0.85 and 1 the prompt lost the family member (model card)."""


CLASS_GUIDANCE = 0.3
"""How far each step also moves toward the classes the prompt names, and (a direction of its
own, `Guidance.away`) away from those the negative prompt names (`guide.ClassGuide.direction`),
as a share of the guided velocity's own size, over t < CLASSES_UNTIL. On the evaluation's 96
clips adherence 58.3 -> 74.0 % over all classes and 77.1 -> 92.7 % within the family, onset F1
0.864 -> 0.862; at 0.6 adherence fell back on the 48 clips it was chosen on (model card, "The
class guide"). Away at 0.3 a named ambience 3.4 dB quieter on the evaluation's 16 clips (1.8 dB
with the two pushes in one direction); at 1.0 everything quieter, named or not (model card,
"The negative prompt's own direction")."""

CLASSES_UNTIL = 0.6
"""The class guide steers over t < CLASSES_UNTIL. Toward the prompt's classes all the way
(t < 1) it chose no better (48 tuning clips: adherence 83.3 -> 81.3 %, onset F1 -0.003); away
from a negative prompt's classes all the way at 1.0 a named ambience came out less quiet (16
tuning clips: 0.9 against 3.2 dB; model card, "The negative prompt's own direction")."""


@dataclass(frozen=True)
class Guidance:
    """How hard sampling is steered, as separate terms of one batched forward:

        v = v(0, 0) + picture * (v(P, 0) - v(0, 0))
                    + prompt * (v(P, T) - v(P, 0)) - negative * (v(P, N) - v(P, 0))
                    + contacts * level(v(P, T) - v(P°, T))
                    + |v| * (classes * d_T(x, t) + away * d_N(x, t))

    P the picture, T the prompt, N the negative prompt, 0 the learned empty features, P° the
    picture with its contact channels (`prepare_guidance`'s `contact_channels`) at "no
    contact": the contact term is what the detected contacts add, and pushes a hit onto each
    frame they mark, even one the detector is unsure of. `level` (`frame_level`) keeps of it
    only each latent frame's level, so it says when, and the prompt what. With prompt ==
    picture, no negative prompt and no contact term this is MMAudio's guidance,
    w * v(P, T) + (1 - w) * v(0, 0) -- and so it is from t = `prompt_until` on, where the prompt
    term takes the picture's strength. The negative prompt is pushed away from beside the
    picture (what naming N adds to this picture), not from the unconditional branch: there it
    only moved the overall level, which the output stage levels away. An item without a prompt
    has no prompt term, and its own caption-less velocity v(P, T) stands for v(P, 0).
    d_T is the class guide's unit-size direction toward the classes the prompt names, d_N its
    unit-size direction away from those the negative prompt names (`guide.ClassSteer`, when
    there is one), |v| the size of the velocity before them; they steer until t =
    `classes_until` and `away_until`, the part of the path where the sound's make-up is
    settled. Two directions, so that a negative prompt's push is not diluted by the prompt's.
    `picture` <= 1 turns guidance off: the conditional velocity alone, one forward. Before
    `picture_from` the picture term is 1 (the picture steers only as much as it conditions;
    the prompt and negative terms as they are): guidance limited to an interval of the path.
    """

    picture: float = 4.5
    prompt: float = 4.5 * PROMPT_GUIDANCE_RATIO
    negative: float = 4.5 * PROMPT_GUIDANCE_RATIO
    prompt_until: float = PROMPT_UNTIL
    picture_from: float = 0.0
    contacts: float = 4.5 * CONTACT_GUIDANCE_RATIO
    classes: float = CLASS_GUIDANCE
    classes_until: float = CLASSES_UNTIL
    away: float = CLASS_GUIDANCE
    away_until: float = CLASSES_UNTIL

    @classmethod
    def scaled(cls, cfg: float, prompt_ratio: float = PROMPT_GUIDANCE_RATIO,
               negative_ratio: float = PROMPT_GUIDANCE_RATIO,
               prompt_until: float = PROMPT_UNTIL,
               contact_ratio: float = CONTACT_GUIDANCE_RATIO) -> Guidance:
        """The guidance one strength `cfg` (the protocol's) stands for: the prompt, negative and
        contact terms at their ratios to it (the defaults are the engine's; the evaluation varies
        them)."""
        return cls(cfg, cfg * prompt_ratio, cfg * negative_ratio, prompt_until,
                   contacts=cfg * contact_ratio)

    @classmethod
    def mmaudio(cls, cfg: float) -> Guidance:
        """The published model's guidance: one strength for picture and prompt together, no
        contact term."""
        return cls(cfg, cfg, cfg, contacts=0.0, classes=0.0, away=0.0)

    @property
    def active(self) -> bool:
        return self.picture > 1.0

    def prompt_at(self, t: float) -> float:
        return self.prompt if t < self.prompt_until else self.picture

    def picture_at(self, t: float) -> float:
        return 1.0 if t < self.picture_from else self.picture


@dataclass(frozen=True)
class GuidanceBranches:
    """The prepared conditions of every branch guidance needs, and which items use which."""

    full: Conditions  # (P, T)
    empty: Conditions | None  # (0, 0); None without guidance
    plain: Conditions | None  # (P, 0); None when no item has a prompt (or nothing needs it)
    negative: Conditions | None  # (P, N); None when no item has a negative prompt
    contactless: Conditions | None  # (P°, T); None without a contact term or any contact
    prompted: Tensor  # (B,) bool
    negated: Tensor  # (B,) bool


def prepare_guidance(network: V2ANetwork, clip_f: Tensor, sync_f: Tensor, text_f: Tensor,
                     latent_seq_len: int, guidance: Guidance, *, clip_offset: float = 0.0,
                     negative_text_f: Tensor | None = None, prompted: bool | Tensor = True,
                     negated: Tensor | None = None,
                     contact_channels: int | None = None) -> GuidanceBranches:
    """Project the conditions of each branch `guidance` needs, once per sampling.

    `prompted` (bool or (B,) bool): whether each item's text is a prompt (False: the encoding
    of no caption). `negative_text_f` (B or 1, Nt, text_dim) with `negated` (B,) bool (default:
    all) gives the negative prompts; rows not negated are ignored. The last `contact_channels`
    of `sync_f` are the contact detector's (default: as many as the network was trained with,
    `visual.contact_channels`); 0 (a network without them) means no contact term, and so do
    pictures where they mark nothing.
    """
    b, n, device = clip_f.shape[0], latent_seq_len, clip_f.device
    prompted = torch.as_tensor(prompted, dtype=torch.bool, device=device).expand(b)
    full = network.preprocess_conditions(clip_f, sync_f, text_f, n, clip_offset)
    if not guidance.active:
        none = torch.zeros(b, dtype=torch.bool, device=device)
        return GuidanceBranches(full, None, None, None, None, none, none)
    if negative_text_f is None:
        negated = torch.zeros(b, dtype=torch.bool, device=device)
    elif negated is None:
        negated = torch.ones(b, dtype=torch.bool, device=device)
    negated = negated.to(device=device, dtype=torch.bool)
    empty = network.empty_conditions(b, n, clip_f.shape[1], sync_f.shape[1], clip_offset)
    empty_text = network.empty_string_feat.expand(b, -1, -1)
    negative = None
    if negated.any():
        if negative_text_f.ndim == 2:
            negative_text_f = negative_text_f.unsqueeze(0)
        negative = network.preprocess_conditions(
            clip_f, sync_f, negative_text_f.expand(b, -1, -1), n, clip_offset)
    # MMAudio's case needs no (P, 0) branch: the prompt term and the picture term meet in it.
    mmaudio = guidance.prompt_at(0.0) == guidance.picture and negative is None
    plain = None
    if prompted.any() and not mmaudio:
        plain = network.preprocess_conditions(clip_f, sync_f, empty_text, n, clip_offset)
    if contact_channels is None:
        contact_channels = visual.contact_channels(network.config.sync_dim)
    contactless = None
    if guidance.contacts and contact_channels and sync_f[..., -contact_channels:].any():
        without = sync_f.clone()
        without[..., -contact_channels:] = 0.0
        contactless = network.preprocess_conditions(clip_f, without, text_f, n, clip_offset)
    return GuidanceBranches(full, empty, plain, negative, contactless, prompted, negated)


def frame_level(latents: Tensor) -> Tensor:
    """(B, N, latent_dim) -> the same with each latent frame's values replaced by their mean:
    a log-mel codec's mel frame (`MelCodec.n_mels` values, `frames_per_token` to a token) keeps
    its level and loses its spectrum; a latent of another width is averaged per token."""
    b, n, d = latents.shape
    width = MelCodec.n_mels if d == MelCodec.latent_dim else d
    frames = latents.reshape(b, n, d // width, width)
    return frames.mean(-1, keepdim=True).expand_as(frames).reshape(b, n, d)


def guided_velocity(network: V2ANetwork, branches: GuidanceBranches, guidance: Guidance,
                    steer: ClassSteer | None = None) -> Callable[[Tensor, float], Tensor]:
    """velocity(x, t) under `guidance` (see `Guidance`); every branch a step needs in one
    forward (from `prompt_until` on, without a negative prompt, MMAudio's two and the
    contactless one). `steer` adds the class guide's term."""
    device = branches.full.clip.device
    if branches.empty is None or not guidance.active:

        def velocity(x: Tensor, t: float) -> Tensor:
            tt = torch.full((x.shape[0],), t, device=device)
            with autocast_for(device):
                return network.predict_flow(x, tt, branches.full).float()

        return velocity

    def batch(parts: list[Conditions | None]) -> tuple[int, Conditions]:
        parts = [p for p in parts if p is not None]
        batched = parts[0]
        for part in parts[1:]:
            batched = batched.cat(part)
        return len(parts), batched

    everything = batch([branches.full, branches.empty, branches.plain, branches.negative,
                        branches.contactless])
    # The picture-only branch is the prompt term's and the negative term's reference.
    late = everything if branches.negative is not None else batch(
        [branches.full, branches.empty, branches.contactless])
    prompted = branches.prompted.view(-1, 1, 1)
    negative_w = guidance.negative * branches.negated.float().view(-1, 1, 1)

    def guided(x: Tensor, t: float) -> Tensor:
        prompt_w, picture_w = guidance.prompt_at(t), guidance.picture_at(t)
        separate = prompt_w != picture_w or branches.negative is not None
        count, conditions = everything if separate else late
        tt = torch.full((count * x.shape[0],), t, device=device)
        with autocast_for(device):
            v = network.predict_flow(torch.cat([x] * count), tt, conditions).float()
        v = list(v.chunk(count))
        v_full, v_empty = v.pop(0), v.pop(0)
        if separate and branches.plain is not None:
            reference = torch.where(prompted, v.pop(0), v_full)
            out = (v_empty + picture_w * (reference - v_empty)
                   + torch.where(prompted, prompt_w, 0.0) * (v_full - reference))
        else:  # MMAudio's guidance
            reference = v_full
            out = v_empty + picture_w * (v_full - v_empty)
        if branches.negative is not None:
            out = out - negative_w * (v.pop(0) - reference)
        if branches.contactless is not None:
            out = out + guidance.contacts * frame_level(v_full - v.pop(0))
        toward = guidance.classes if t < guidance.classes_until else 0.0
        away = guidance.away if t < guidance.away_until else 0.0
        if steer is not None and (toward or away):
            size = out.pow(2).mean((1, 2), keepdim=True).sqrt()
            out = out + size * steer.direction(x, t, toward, away)
        return out

    return guided


def sound_bounds(network: V2ANetwork, sound_range: tuple[float, float] = SOUND_RANGE
                 ) -> tuple[Tensor, Tensor]:
    """`sound_range` (data space, e.g. log-mel) in the network's normalised space: the
    (1, 1, latent_dim) lowest and highest values a predicted sound may take."""
    low, high = (network.normalize(torch.full_like(network.latent_mean, v)) for v in sound_range)
    return low, high


def euler_sample(velocity: Callable[[Tensor, float], Tensor], noise: Tensor, steps: int, *,
                 bounds: tuple[Tensor, Tensor] | None = None,
                 known: Tensor | None = None, known_mask: Tensor | None = None,
                 renoise: float = 0.0, fresh_noise: Callable[[], Tensor] | None = None,
                 start: int = 0, progress: StepProgress | None = None,
                 cancelled: Callable[[], bool] | None = None,
                 step_offset: int = 0, total_steps: int | None = None) -> Tensor:
    """Integrate from `noise` (t = 0) to t = 1 in `steps` Euler steps, in normalised space.

    Each step predicts the sound x1 = x + (1 - t)·v and the noise in x, e = x - t·v, and moves
    to x' = (t + dt)·x1 + (1 - t - dt)·e: exactly the Euler step. `renoise` (0..1) replaces
    that share of e by `fresh_noise()` (a draw of x's shape), keeping its spread:
    e' = sqrt(1 - r²)·e + r·fresh. At 0 the path is the deterministic one; above 0 each step
    forgets some of what the last one smoothed over and redraws it (see `RENOISE`).

    `bounds` (low, high), normalised, keep the predicted sound x1 inside what a sound can be
    (`sound_bounds`), the step then heading for the bounded x1. On pictures unlike any it was
    trained on the network's predictions can run away, step after step, to log-mel values of
    +-300 (a flat grey scene with one sliding box, a panning texture): without the bound the
    clip decodes to a blast of noise. A prediction within the bounds is left as it is (on
    held-out world clips they are rarely touched); the last step lands on the bounded sound.

    Frames where `known_mask` (B or 1, N, 1) is true are held on the flow path of `known`
    (normalised): before each step they are set to (1 - t)·noise + t·known, so the rest of the
    sequence is generated consistent with them (inpainting). `step_offset`/`total_steps` place
    these steps within a longer job for `progress`.

    `start` > 0 begins part way, at t = start / steps: `noise` is then the state there (a sound
    noised to that t, say), not pure noise, so it cannot also be the noise `known` frames
    follow.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not 0 <= start < steps:
        raise ValueError(f"start must be a step within 0..{steps - 1}, got {start}")
    if start and known is not None:
        raise ValueError("known frames follow the start noise: inpainting needs start 0")
    if not 0.0 <= renoise <= 1.0:
        raise ValueError(f"renoise must be within 0..1, got {renoise}")
    if renoise and fresh_noise is None:
        raise ValueError("renoise needs fresh_noise, a source of new noise")
    total = total_steps or steps
    x = noise
    dt = 1.0 / steps
    for i in range(start, steps):
        if cancelled is not None and cancelled():
            raise Cancelled("generation cancelled")
        t = i * dt
        if known is not None:
            x = torch.where(known_mask, (1 - t) * noise + t * known, x)
        v = velocity(x, t)
        if bounds is not None:
            v = (torch.maximum(torch.minimum(x + (1 - t) * v, bounds[1]), bounds[0]) - x) / (1 - t)
        if renoise and i < steps - 1:
            sound, in_x = x + (1 - t) * v, x - t * v
            in_x = math.sqrt(1 - renoise ** 2) * in_x + renoise * fresh_noise()
            x = (t + dt) * sound + (1 - t - dt) * in_x
        else:
            x = x + dt * v
        if progress is not None:
            progress(step_offset + i + 1, total)
    return x


@torch.inference_mode()
def sample(network: V2ANetwork, clip_f: Tensor, sync_f: Tensor, text_f: Tensor, *,
           latent_seq_len: int | None = None, negative_text_f: Tensor | None = None,
           steps: int = 25, cfg: float = 4.5, seed: int | None = 0,
           generator: torch.Generator | None = None, known: Tensor | None = None,
           known_mask: Tensor | None = None, clip_offset: float = 0.0,
           prompted: bool | Tensor = True, guidance: Guidance | None = None,
           renoise: float = RENOISE, steer: ClassSteer | None = None,
           progress: StepProgress | None = None,
           cancelled: Callable[[], bool] | None = None,
           step_offset: int = 0, total_steps: int | None = None) -> Tensor:
    """Generate data-space latents (B, N, latent_dim) for one window of conditions.

    clip_f (B, Nc, clip_dim), sync_f (B, Ns, sync_dim), text_f (B, Nt, text_dim) on the
    network's device; N = `latent_seq_len` (default: the trained length). `negative_text_f`
    (B or 1, Nt, text_dim) is the negative prompt; `prompted` says whether text_f is a prompt
    (per item or for all) or the encoding of none. `guidance` defaults to
    `Guidance.scaled(cfg)`. Noise (the start, and each step's fresh share under `renoise`) comes
    from `generator`, else from a generator seeded with `seed` on the network's device, so a
    seed reproduces its result exactly on the same device.
    `known` (B, N, latent_dim, data space) with `known_mask` (N,) bool holds those frames fixed
    (see `euler_sample`).
    """
    device = network.latent_mean.device
    b = clip_f.shape[0]
    n = latent_seq_len or network.config.latent_seq_len
    if negative_text_f is not None and negative_text_f.shape[-2] != text_f.shape[1]:
        raise InputShapeError(
            f"negative_text_f has {negative_text_f.shape[-2]} tokens, text_f {text_f.shape[1]}: "
            "pad or truncate both to the network's text_seq_len"
        )
    guidance = guidance or Guidance.scaled(cfg)
    if guidance.active and text_f.shape[1] != network.config.text_seq_len:
        raise InputShapeError(
            f"text_f has {text_f.shape[1]} tokens but guidance needs text_seq_len "
            f"{network.config.text_seq_len} (the length of the learned empty text): pad or truncate"
        )
    with autocast_for(device):
        branches = prepare_guidance(network, clip_f, sync_f, text_f, n, guidance,
                                    clip_offset=clip_offset, negative_text_f=negative_text_f,
                                    prompted=prompted)
    velocity = guided_velocity(network, branches, guidance, steer)

    if generator is None:
        generator = make_generator(device, 0 if seed is None else seed)
    shape = (b, n, network.config.latent_dim)

    def fresh_noise() -> Tensor:  # the start, then each step's fresh share under `renoise`
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)

    noise = fresh_noise()
    known_n = mask = None
    if known is not None:
        if known_mask is None or known.shape[-2:] != shape[-2:] or known_mask.shape != (n,):
            raise InputShapeError(
                f"known must be (B, {n}, {shape[2]}) with known_mask ({n},), got "
                f"{tuple(known.shape)} and {None if known_mask is None else tuple(known_mask.shape)}"
            )
        known_n = network.normalize(known.float())
        mask = known_mask.to(device=device, dtype=torch.bool).view(1, n, 1)
    x = euler_sample(velocity, noise, steps, bounds=sound_bounds(network), known=known_n,
                     known_mask=mask, renoise=renoise,
                     fresh_noise=fresh_noise, progress=progress, cancelled=cancelled,
                     step_offset=step_offset, total_steps=total_steps)
    return network.unnormalize(x)
