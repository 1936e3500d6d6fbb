"""The V2A model package: the network (`build_network`), its sizes, flow matching, long-clip
windows and checkpoint loading. Front ends and the engine live beside them."""

from .config import PRESETS, ConfigError, NetworkConfig, preset
from .network import Conditions, InputShapeError, V2ANetwork, build_network

__all__ = [
    "PRESETS",
    "Conditions",
    "ConfigError",
    "InputShapeError",
    "NetworkConfig",
    "V2ANetwork",
    "build_network",
    "preset",
]
