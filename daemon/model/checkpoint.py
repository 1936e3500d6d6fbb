"""Loading and saving network weights: safetensors (ours and users') and the published `.pth`.

A checkpoint is checked key by key and shape by shape against the network it should fill;
any difference raises `CheckpointMismatch` naming exactly what is missing, unexpected or
mis-shaped. Our own weights are a safetensors file whose metadata holds the network config as
JSON, with the same JSON beside it (`<name>.json`) for people and tools.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from .config import PRESETS, ConfigError, NetworkConfig
from .network import V2ANetwork

NON_PERSISTENT_KEYS = ("t_embed.freqs", "latent_rot", "clip_rot")
"""Buffers the published files carry but the network recomputes; dropped on load."""

# Keys under which training scripts commonly nest the weights in a .pth file.
_NESTING_KEYS = ("weights", "state_dict", "model", "ema", "network", "net", "module")


class CheckpointError(Exception):
    """A weights file that cannot be used; the message says what to do."""


class CheckpointFormatError(CheckpointError):
    """The file is missing, unreadable or holds no tensors in a known layout."""


class CheckpointMismatch(CheckpointError):
    """The weights do not fit the network: keys missing, unexpected or mis-shaped."""

    def __init__(self, missing: list[str], unexpected: list[str],
                 mis_shaped: dict[str, tuple[tuple[int, ...], tuple[int, ...]]],
                 source: str = "checkpoint"):
        self.missing = missing
        self.unexpected = unexpected
        self.mis_shaped = mis_shaped
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_listing(unexpected)}")
        if mis_shaped:
            shown = [f"{k} (file {list(f)}, network {list(n)})" for k, (f, n) in mis_shaped.items()]
            parts.append(f"mis-shaped {len(mis_shaped)} key(s): {_listing(shown)}")
        super().__init__(
            f"{source} does not fit the network: " + "; ".join(parts) + ". Check that the file "
            "is the variant you chose (preset/config sizes must match the one it was trained "
            "with), or pass the config saved with it."
        )


def _listing(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


# ---------------------------------------------------------------------------------------------
# Reading


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], NetworkConfig | None]:
    """The tensors of a weights file (non-persistent buffers dropped) and, when the file or
    its sidecar JSON carries one, its network config."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointFormatError(f"weights file {path} does not exist; check the path")
    if path.suffix == ".safetensors":
        state, config = _read_safetensors(path)
    elif path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
        state, config = _read_torch(path), None
    else:
        raise CheckpointFormatError(
            f"{path.name}: unknown weights format {path.suffix!r}; use .safetensors or .pth"
        )
    sidecar = path.with_suffix(".json")
    if config is None and sidecar.is_file():
        try:
            config = NetworkConfig.from_json(sidecar.read_text())
        except ConfigError as exc:
            raise CheckpointFormatError(f"{sidecar}: {exc}") from exc
    for key in NON_PERSISTENT_KEYS:
        state.pop(key, None)
    return state, config


def file_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (configs, training records), without reading
    its tensors."""
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return f.metadata() or {}


def _read_safetensors(path: Path) -> tuple[dict[str, Tensor], NetworkConfig | None]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointFormatError(f"{path.name} is not a readable safetensors file: {exc}") \
            from exc
    config = None
    if "config" in metadata:
        try:
            config = NetworkConfig.from_json(metadata["config"])
        except ConfigError as exc:
            raise CheckpointFormatError(f"{path.name}: config in metadata: {exc}") from exc
    return state, config


def _read_torch(path: Path) -> dict[str, Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, refused globals, truncated zip files
        raise CheckpointFormatError(
            f"{path.name} could not be read with torch.load(weights_only=True): {exc}. Only "
            "plain tensor state dicts are accepted; re-save it as safetensors if needed."
        ) from exc
    state = _find_state_dict(obj)
    if state is None:
        raise CheckpointFormatError(
            f"{path.name} holds no state dict of tensors (looked at the top level and under "
            f"{', '.join(_NESTING_KEYS)})"
        )
    return state


def _find_state_dict(obj, depth: int = 0) -> dict[str, Tensor] | None:
    if not isinstance(obj, dict) or depth > 3:
        return None
    if obj and all(isinstance(v, Tensor) for v in obj.values()):
        state = dict(obj)
        # Wrappers such as DataParallel or torch.compile prefix every key.
        for prefix in ("module.", "_orig_mod."):
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
        return state
    for key in _NESTING_KEYS:
        if key in obj:
            found = _find_state_dict(obj[key], depth + 1)
            if found is not None:
                return found
    return None


# ---------------------------------------------------------------------------------------------
# Checking and loading


def check_state_dict(network: V2ANetwork, state: dict[str, Tensor],
                     source: str = "checkpoint") -> None:
    """Raise CheckpointMismatch unless `state` has exactly the network's keys and shapes."""
    expected = {k: tuple(v.shape) for k, v in network.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    mis_shaped = {k: (got[k], expected[k]) for k in sorted(set(got) & set(expected))
                  if got[k] != expected[k]}
    if missing or unexpected or mis_shaped:
        raise CheckpointMismatch(missing, unexpected, mis_shaped, source)


def config_from_shapes(state: dict[str, Tensor]) -> NetworkConfig:
    """The published variant whose manifest these shapes match, else sizes read off the
    tensors (sequence lengths then default to the 16 kHz/44.1 kHz published ones)."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for config in PRESETS.values():
        with torch.device("meta"):
            net = V2ANetwork(config)
        if {k: tuple(v.shape) for k, v in net.state_dict().items()} == shapes:
            return config
    try:
        hidden, latent_dim, _ = shapes["audio_input_proj.0.weight"]
        head_dim = shapes["joint_blocks.0.latent_block.attn.q_norm.weight"][0]
        text_seq_len, text_dim = shapes["empty_string_feat"]
        clip_dim = shapes["empty_clip_feat"][1]
        sync_dim = shapes["empty_sync_feat"][1]
    except KeyError as exc:
        raise CheckpointFormatError(
            f"cannot tell the network sizes from the weights: no {exc.args[0]!r}; pass a config"
        ) from None
    joint = len({k.split(".")[1] for k in shapes if k.startswith("joint_blocks.")})
    fused = len({k.split(".")[1] for k in shapes if k.startswith("fused_blocks.")})
    v2 = "clip_input_proj.2.w1.weight" in shapes
    latent_seq_len = 250 if latent_dim == 20 else 345
    return NetworkConfig(
        latent_dim=latent_dim, clip_dim=clip_dim, sync_dim=sync_dim, text_dim=text_dim,
        hidden_dim=hidden, depth=joint + fused, fused_depth=fused, num_heads=hidden // head_dim,
        latent_seq_len=latent_seq_len, clip_seq_len=64, sync_seq_len=192,
        text_seq_len=text_seq_len, v2=v2,
    )


def load_weights(network: V2ANetwork, path: str | Path) -> V2ANetwork:
    """Fill `network` from a weights file after checking every key and shape."""
    state, _ = read_state_dict(path)
    check_state_dict(network, state, source=Path(path).name)
    network.load_state_dict(state, strict=True)
    return network


def load_network(path: str | Path, config: NetworkConfig | str | None = None, *,
                 device: torch.device | str = "cpu") -> V2ANetwork:
    """Build a network for the weights at `path` and load them.

    The config is, in order: the one given, the one stored with the file (safetensors
    metadata or `<name>.json`), or the published variant the shapes match.
    """
    state, stored = read_state_dict(path)
    if isinstance(config, str):
        from .config import preset

        config = preset(config)
    config = config or stored or config_from_shapes(state)
    with torch.device("meta"):
        network = V2ANetwork(config)
    check_state_dict(network, state, source=Path(path).name)
    # Allocate without initialising (large variants take seconds to initialise), fill from the
    # file, then recompute the buffers that the file does not carry.
    network = network.to_empty(device=device)
    network.load_state_dict(state, strict=True)
    network.reset_derived_buffers()
    return network.eval()


# ---------------------------------------------------------------------------------------------
# Saving


def save_network(network: V2ANetwork, path: str | Path, extra_metadata: dict | None = None) -> Path:
    """Write the weights as `<path>.safetensors` with the config in its metadata and beside
    it as `<path>.json`. Returns the safetensors path."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    config_json = network.config.to_json()
    metadata = {"config": config_json, "format": "v2a-network"}
    for key, value in (extra_metadata or {}).items():
        metadata[str(key)] = value if isinstance(value, str) else json.dumps(value)
    state = {k: v.detach().to("cpu").contiguous() for k, v in network.state_dict().items()}
    save_file(state, str(path), metadata=metadata)
    path.with_suffix(".json").write_text(
        json.dumps(json.loads(config_json), indent=2, sort_keys=True) + "\n"
    )
    return path
