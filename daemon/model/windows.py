"""Audio of any length: one sampling for short clips, overlapping windows for long ones.

Up to `max_single_s` the network samples the whole clip at once with its sequence lengths set
for that call. Beyond it, the clip is covered by windows of `window_s` overlapping by at least
`overlap_s`. Each window after the first holds the first part of the frames it shares with
the previous window (`hold_fraction`) on their flow path while it samples (inpainting), so its
new frames continue what came before: autoregressive across windows, diffusion within one.
The rest of the shared frames are cross-faded from the previous window's version to the new
one, so where the held frames end no step shows.

Conditions arrive as full-length sequences at the network's rates (latent, clip and sync
tokens per second, from its config); each window takes its own slice of them, with the picture
positions shifted by the fraction of a frame that the slice is off the window start.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .config import SYNC_SEGMENT, NetworkConfig
from .flow import RENOISE, Guidance, StepProgress, make_generator, sample
from .network import InputShapeError, V2ANetwork

if TYPE_CHECKING:
    from .guide import ClassSteer


@dataclass(frozen=True)
class WindowSettings:
    """How long clips are cut into windows (seconds)."""

    window_s: float | None = None  # None: the network's trained window
    overlap_s: float = 1.0
    max_single_s: float | None = None  # None: 1.25 x window; longer clips use windows
    # Share of the overlap held fixed while sampling; over the rest the new window runs free
    # and is cross-faded in, which hides the small mismatch where the held frames end.
    hold_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.hold_fraction <= 1.0:
            raise ValueError(f"hold_fraction must be in [0, 1], got {self.hold_fraction}")
        if self.overlap_s <= 0:
            raise ValueError(f"overlap_s must be positive, got {self.overlap_s}")

    def window_seconds(self, config: NetworkConfig) -> float:
        """As set, else the network's trained window."""
        return self.window_s or config.window_s

    def single_limit(self, config: NetworkConfig) -> int:
        """Most latent tokens sampled in one piece (those of a `max_single_s` clip, else of
        1.25 windows); a longer clip is sampled in windows. The sampler, the engine's batching
        and its progress totals all take the limit from here."""
        return config.seq_lens_for(self.max_single_s or 1.25 * self.window_seconds(config))[0]

    def for_low_memory(self, config: NetworkConfig) -> WindowSettings:
        """The settings for a request retried after the accelerator ran out of memory: windows
        of half the length, overlapping by at most a quarter of one, and one sampling of at
        most 1.25 of them. A `max_single_s` is not kept: it was chosen for full-size windows,
        and sampling such a clip in one piece again is what may not fit."""
        window_s = self.window_seconds(config) / 2
        return replace(self, window_s=window_s, overlap_s=min(self.overlap_s, window_s / 4),
                       max_single_s=None)


@dataclass(frozen=True)
class Window:
    """One window in latent tokens [start, end), and how many leading tokens it shares with
    the previous window."""

    start: int
    end: int
    shared: int

    @property
    def length(self) -> int:
        return self.end - self.start


def start_granularity(network: V2ANetwork, limit: int) -> int:
    """Smallest token step at which a window start falls on a whole sync segment (e.g. 10
    tokens = 0.32 s for `tiny`); 1 when none below `limit` does."""
    c = network.config
    tokens_per_segment = SYNC_SEGMENT * c.latent_rate / c.sync_rate
    for k in range(1, max(1, limit) + 1):
        segments = k / tokens_per_segment
        if abs(segments - round(segments)) < 1e-6:
            return k
    return 1


def plan_windows(total: int, window: int, overlap: int, granularity: int = 1) -> list[Window]:
    """Windows of `window` tokens covering [0, total) with at least `overlap` shared tokens;
    starts are multiples of `granularity`, the last window ends exactly at `total`."""
    if window <= overlap:
        raise ValueError(f"window ({window} tokens) must be longer than overlap ({overlap})")
    if total <= window:
        return [Window(0, total, 0)]
    windows = [Window(0, window, 0)]
    while windows[-1].end < total:
        prev = windows[-1]
        start = (prev.end - overlap) // granularity * granularity
        if start + window >= total:
            # The last window ends on the clip's end; it may share more than `overlap`.
            start = max(math.ceil((total - window) / granularity) * granularity, prev.start + 1)
        end = min(start + window, total)
        windows.append(Window(start, end, prev.end - start))
    return windows


def plan_clip_windows(network: V2ANetwork, latent_seq_len: int, settings: WindowSettings
                      ) -> list[Window]:
    """The windows a clip longer than `settings.single_limit` is sampled in."""
    c = network.config
    overlap = max(1, round(settings.overlap_s * c.latent_rate))
    return plan_windows(latent_seq_len, round(settings.window_seconds(c) * c.latent_rate), overlap,
                        start_granularity(network, limit=max(1, overlap // 2)))


def _slice_rows(x: Tensor, start: int, stop: int) -> Tensor:
    """Rows [start, stop) of x (B, L, C), repeating the last row where the sequence ends early
    (front ends round the clip's length up or down by a frame)."""
    piece = x[:, start:min(stop, x.shape[1])]
    short = stop - start - piece.shape[1]
    if short > 0:
        piece = torch.cat([piece, x[:, -1:].expand(-1, short, -1)], dim=1)
    return piece


def window_conditions(network: V2ANetwork, clip_f: Tensor, sync_f: Tensor, window: Window
                      ) -> tuple[Tensor, Tensor, float]:
    """The picture features under `window`: clip frames, whole sync segments, and the clip
    position offset (in clip frames) of the first clip frame relative to the window start."""
    c = network.config
    t0, t1 = window.start / c.latent_rate, window.end / c.latent_rate
    c0 = round(t0 * c.clip_rate)
    c1 = max(c0 + 1, round(t1 * c.clip_rate))
    s0 = round(t0 * c.sync_rate / SYNC_SEGMENT)
    s1 = max(s0 + 1, round(t1 * c.sync_rate / SYNC_SEGMENT))
    clip = _slice_rows(clip_f, c0, c1)
    sync = _slice_rows(sync_f, s0 * SYNC_SEGMENT, s1 * SYNC_SEGMENT)
    clip_offset = c0 - t0 * c.clip_rate
    return clip, sync, clip_offset


@torch.inference_mode()
def generate_latents(network: V2ANetwork, clip_f: Tensor, sync_f: Tensor, text_f: Tensor,
                     latent_seq_len: int, *, negative_text_f: Tensor | None = None,
                     steps: int = 25, cfg: float = 4.5, seed: int = 0,
                     settings: WindowSettings | None = None, prompted: bool | Tensor = True,
                     guidance: Guidance | None = None, renoise: float = RENOISE,
                     steer: ClassSteer | None = None, progress: StepProgress | None = None,
                     cancelled: Callable[[], bool] | None = None) -> Tensor:
    """Data-space latents (B, latent_seq_len, latent_dim) for a clip of any length.

    clip_f (B, Nc, clip_dim) and sync_f (B, Ns, sync_dim) cover the whole clip at the network's
    clip/sync rates; text_f (B, Nt, text_dim) applies throughout (`prompted`, `guidance`,
    `renoise`, `steer`: see `flow.sample`). progress(step, total) counts sampler steps over all
    windows.
    """
    settings = settings or WindowSettings()
    c = network.config
    expected_sync = latent_seq_len / c.latent_rate * c.sync_rate
    if sync_f.shape[1] < 0.9 * expected_sync or clip_f.shape[1] < 0.9 * (
            latent_seq_len / c.latent_rate * c.clip_rate):
        raise InputShapeError(
            f"picture features cover less than the clip: {latent_seq_len} latent tokens need "
            f"~{latent_seq_len / c.latent_rate * c.clip_rate:.0f} clip and ~{expected_sync:.0f} "
            f"sync tokens, got {clip_f.shape[1]} and {sync_f.shape[1]}"
        )

    if latent_seq_len <= settings.single_limit(c):
        whole = Window(0, latent_seq_len, 0)
        clip, sync, offset = window_conditions(network, clip_f, sync_f, whole)
        return sample(network, clip, sync, text_f, latent_seq_len=latent_seq_len,
                      negative_text_f=negative_text_f, steps=steps, cfg=cfg, seed=seed,
                      clip_offset=offset, prompted=prompted, guidance=guidance,
                      renoise=renoise, steer=steer, progress=progress, cancelled=cancelled)

    plan = plan_clip_windows(network, latent_seq_len, settings)
    device = network.latent_mean.device
    generator = make_generator(device, seed)  # one stream for all windows: reproducible
    b = clip_f.shape[0]
    out = torch.zeros(b, latent_seq_len, c.latent_dim, device=device)
    total_steps = steps * len(plan)
    for i, w in enumerate(plan):
        clip, sync, offset = window_conditions(network, clip_f, sync_f, w)
        known = known_mask = None
        hold = min(w.shared, round(w.shared * settings.hold_fraction))
        if hold:
            known = torch.zeros(b, w.length, c.latent_dim, device=device)
            known[:, :hold] = out[:, w.start:w.start + hold]
            known_mask = torch.arange(w.length, device=device) < hold
        latents = sample(network, clip, sync, text_f, latent_seq_len=w.length,
                         negative_text_f=negative_text_f, steps=steps, cfg=cfg,
                         generator=generator, known=known, known_mask=known_mask,
                         clip_offset=offset, prompted=prompted, guidance=guidance,
                         renoise=renoise, steer=steer, progress=progress,
                         cancelled=cancelled, step_offset=i * steps,
                         total_steps=total_steps)
        if w.shared > hold:
            # Cross-fade the free shared frames from the previous window's to this one's; the
            # held frames already equal the previous window's.
            fade = w.shared - hold
            ramp = (torch.arange(fade, device=device, dtype=torch.float32) + 0.5) / fade
            ramp = ramp.view(1, -1, 1)
            a, z = w.start + hold, w.start + w.shared
            out[:, a:z] = (1 - ramp) * out[:, a:z] + ramp * latents[:, hold:w.shared]
        out[:, w.start + w.shared:w.end] = latents[:, w.shared:]
    return out
