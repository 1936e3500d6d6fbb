"""Random-weight tiny networks for the engine and training tests (no trained weights needed)."""

from __future__ import annotations

from pathlib import Path

import torch

from daemon.model import build_network
from daemon.model.checkpoint import save_network


def random_tiny_weights(folder: Path, name: str = "tiny", seed: int = 0, **sizes) -> Path:
    """Save a tiny network whose every weight is random (not the zero-initialised output
    layers of a fresh network, so its output depends on its conditions)."""
    torch.manual_seed(seed)
    network = build_network("tiny", **sizes)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return save_network(network, folder / f"{name}.safetensors")
