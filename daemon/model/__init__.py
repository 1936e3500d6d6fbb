"""The V2A model package: the network (`build_network`), its sizes, flow matching, long-clip
windows and checkpoint loading. Front ends and the engine live beside them.

One file per idea: config (sizes), network, flow (loss and sampler), windows (any length),
checkpoint (weights in and out)."""

from .checkpoint import CheckpointError, CheckpointMismatch, load_network, save_network
from .config import PRESETS, ConfigError, NetworkConfig, preset
from .flow import sample, training_loss
from .network import Conditions, InputShapeError, V2ANetwork, build_network
from .windows import WindowSettings, generate_latents

__all__ = [
    "PRESETS",
    "CheckpointError",
    "CheckpointMismatch",
    "Conditions",
    "ConfigError",
    "InputShapeError",
    "NetworkConfig",
    "V2ANetwork",
    "WindowSettings",
    "build_network",
    "generate_latents",
    "load_network",
    "preset",
    "sample",
    "save_network",
    "training_loss",
]
