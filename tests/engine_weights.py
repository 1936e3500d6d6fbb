"""Random-weight tiny networks for the engine and training tests (no trained weights needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from daemon.model import build_network
from daemon.model.checkpoint import save_network


def random_tiny_weights(folder: Path, name: str = "tiny", seed: int = 0, **sizes) -> Path:
    """Save a tiny network whose every weight is random (not the zero-initialised output
    layers of a fresh network, so its output depends on its conditions), with latent
    statistics that put its output in the range of real log-mel frames (a spread of 0.5 nats
    frame to frame, not the i.i.d. spectral noise that would also bury the watermark)."""
    torch.manual_seed(seed)
    network = build_network("tiny", **sizes)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.02 * torch.randn_like(parameter))
        network.latent_mean.fill_(-5.0)
        network.latent_std.fill_(0.5)
    return save_network(network, folder / f"{name}.safetensors")
