"""What a prompt says of its sound's spectrum, and a sampler step that listens to it.

The network hears a caption faintly (the caption lowers its flow loss by about 1 %, the
picture by 8 %), yet a caption tells much of its sound's spectrum. `PromptSpectra` maps a
prompt's mean MiniLM token state to the loudest part of each mel band of the sound it names,
free of level (the band's 95th percentile less the loudest band's: `band_peaks`), by ridge
regression; a second map gives how far that guess is off for such a prompt (its expected
squared error, fitted on held-out folds). Both are fitted on one-source world clips of training
seeds (`python -m daemon.model.train_default spectra`) and stored beside the network's weights
(`SPECTRA_FILE`).

`SpectrumSteer` moves the sampler's predicted sound toward that spectrum. While t <
`STEER_UNTIL`, each step lifts or lowers each band's loud cells (by their place between the
band's median and its 95th percentile) so that the band's 95th percentile comes to the prompt's,
the loudest band's level kept, and the step heads for the moved sound. Each band is moved by the
map's confidence in it: 1 - (expected error) / `CONFIDENT_WITHIN`, within [0, 1]. Where the map
is unsure, as for the ring of an impact, whose partials lie elsewhere on every glass, the band
is left to the network: moved fully, a glass came out as rain (model card, "The prompt's
spectrum").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

SPECTRA_FILE = "prompt_spectra.safetensors"
"""Its name beside the network weights whose codec's bands it describes."""

STEER_UNTIL = 0.5
"""The steer acts while t < this (t = 0 is noise): where the sound's overall shape is decided."""

CONFIDENT_WITHIN = 2.0
"""A band whose expected error (root mean square, log-mel nats) reaches this is not moved."""

PEAK, FLOOR = 0.95, 0.5
"""The band quantile the steer brings to the prompt's, and the one below which cells stay."""


def band_peaks(frames: Tensor) -> Tensor:
    """(..., frames, bands) log-mel -> (..., bands): each band's 95th percentile over time,
    less the loudest band's (so a sound's level does not count)."""
    peaks = torch.quantile(frames.float(), PEAK, dim=-2)
    return peaks - peaks.amax(-1, keepdim=True)


def _ridge(x: Tensor, y: Tensor, ridge: float) -> tuple[Tensor, Tensor, Tensor]:
    """Weights, x's mean and y's mean of the ridge regression y ~ x (float64)."""
    x_mean, y_mean = x.mean(0), y.mean(0)
    centred = x - x_mean
    gram = centred.T @ centred + ridge * len(x) * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(gram, centred.T @ (y - y_mean)), x_mean, y_mean


@dataclass(frozen=True)
class PromptSpectra:
    """A prompt's band peaks (`band_peaks`) and how sure of them to be, from its token states."""

    weight: Tensor  # (text_dim, bands)
    state_mean: Tensor  # (text_dim,)
    peaks_mean: Tensor  # (bands,)
    error_weight: Tensor  # (text_dim, bands): the expected squared error of the peaks
    error_mean: Tensor  # (bands,)

    @classmethod
    def fit(cls, states: Tensor, peaks: Tensor, groups: Tensor, ridge: float = 1e-2,
            error_ridge: float = 1e-3, folds: int = 5) -> PromptSpectra:
        """Fit on prompts' mean token states (n, text_dim) and their sounds' band peaks
        (n, bands). The error map is fitted on each example's error when its group (its world
        seed: one group holds every class) was held out of the fit, `folds` groups of groups;
        those held-out fits and the error map are regularised by `error_ridge` (a looser fit
        shows more of the error a prompt's wording leaves), the peaks by `ridge`."""
        if len(states) != len(peaks) or len(states) != len(groups):
            raise ValueError("states, peaks and groups must have one row per example")
        x, y = states.double(), peaks.double()
        held_out = torch.empty_like(y)
        fold = groups.long() % folds
        for k in range(folds):
            test = fold == k
            if test.all() or not test.any():
                raise ValueError(f"{folds} folds need examples of at least {folds} groups")
            w, xm, ym = _ridge(x[~test], y[~test], error_ridge)
            held_out[test] = (x[test] - xm) @ w + ym
        weight, state_mean, peaks_mean = _ridge(x, y, ridge)
        error_weight, _, error_mean = _ridge(x, (y - held_out) ** 2, error_ridge)
        return cls(weight.float(), state_mean.float(), peaks_mean.float(), error_weight.float(),
                   error_mean.float())

    def predict(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """Token states (B, tokens, text_dim) of prompts -> (band peaks, confidence), each
        (B, bands); confidence within [0, 1] (see the module)."""
        mean = states.float().mean(1).to(self.weight.device) - self.state_mean
        peaks = mean @ self.weight + self.peaks_mean
        error = (mean @ self.error_weight + self.error_mean).clamp_min(0.0).sqrt()
        return peaks, (1.0 - error / CONFIDENT_WITHIN).clamp(0.0, 1.0)

    def steer(self, states: Tensor, rows: Tensor) -> SpectrumSteer:
        """The steer toward each prompt's spectrum, for the items where `rows` (B,) is true."""
        peaks, confidence = self.predict(states)
        return SpectrumSteer(peaks.to(states.device), confidence.to(states.device),
                             rows.to(device=states.device, dtype=torch.bool))

    def save(self, path: str | Path, meta: dict[str, str]) -> None:
        from safetensors.torch import save_file

        save_file({name: getattr(self, name).contiguous() for name in self._fields()},
                  str(path), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> PromptSpectra:
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        missing = [name for name in cls._fields() if name not in tensors]
        if missing:
            raise ValueError(f"{path} is not a prompt-spectra file: it lacks {', '.join(missing)}")
        return cls(**{name: tensors[name].float() for name in cls._fields()})

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("weight", "state_mean", "peaks_mean", "error_weight", "error_mean")


@dataclass(frozen=True)
class SpectrumSteer:
    """Per item: the band peaks to steer toward, the confidence in each band, and whether the
    item is steered at all (`rows`, bool (B,): an item with no prompt is not)."""

    peaks: Tensor  # (B, bands)
    confidence: Tensor  # (B, bands)
    rows: Tensor  # (B,)
    until: float = STEER_UNTIL

    def move(self, sound: Tensor) -> Tensor:
        """(B, frames, bands) log-mel -> the same with each band's loud cells moved toward the
        prompt's peaks, by the confidence in that band."""
        low, high = torch.quantile(sound, torch.tensor([FLOOR, PEAK], device=sound.device),
                                   dim=1)  # (B, bands) each
        loud = ((sound - low[:, None]) / (high - low + 1e-3)[:, None]).clamp(0.0, 1.0)
        target = self.peaks + high.amax(-1, keepdim=True)  # the prompt's shape at this level
        return sound + loud * (self.confidence * (target - high))[:, None]

    def velocity(self, network, velocity: Callable[[Tensor, float], Tensor]
                 ) -> Callable[[Tensor, float], Tensor]:
        """`velocity(x, t)` heading, while t < `until`, for the predicted sound moved by
        `move` (the network's latent is its codec's log-mel frames, `bands` to a frame)."""
        rows = self.rows.view(-1, 1, 1)
        bands = self.peaks.shape[-1]

        def steered(x: Tensor, t: float) -> Tensor:
            v = velocity(x, t)
            if t >= self.until or not self.rows.any():
                return v
            sound = network.unnormalize(x + (1 - t) * v)
            moved = self.move(sound.reshape(x.shape[0], -1, bands)).reshape(x.shape)
            return torch.where(rows, (network.normalize(moved) - x) / (1 - t), v)

        return steered
