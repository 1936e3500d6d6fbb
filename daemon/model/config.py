"""Sizes of the V2A network: one dataclass, and the named presets.

The five published MMAudio variants (`small_16k` ... `large_44k_v2`) are sized so that their
state-dict keys and shapes equal the published checkpoints; `tiny` is the CPU default whose
input sizes match this project's own front ends (16 kHz log-mel latents, 8 fps semantic and
25 fps sync picture features, MiniLM text states).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace

SYNC_SEGMENT = 8
"""The sync encoder emits its features in segments of 8 frames; `sync_pos_emb` has one entry
per position inside a segment, so sync sequences are a whole number of segments."""


_FLAGS = ("v2", "reads_negation")
_OPTIONAL = ("v2", "window_s", "reads_negation")  # fields a stored config may leave out


class ConfigError(ValueError):
    """A network size that cannot be built; the message says which field to change."""


@dataclass(frozen=True)
class NetworkConfig:
    """Constructor sizes of the network (the published names), plus the trained window."""

    latent_dim: int
    clip_dim: int
    sync_dim: int
    text_dim: int
    hidden_dim: int
    depth: int
    fused_depth: int
    num_heads: int
    latent_seq_len: int
    clip_seq_len: int
    sync_seq_len: int
    text_seq_len: int
    v2: bool = False
    # Seconds of audio the sequence lengths above cover: the window the network was trained
    # on. The token rates of every stream follow from it.
    window_s: float = 8.0
    # Trained on examples whose negative prompt names what is not heard: the engine then puts
    # a negative prompt into the text too (`daemon.model.text.conditioning_text`), not only
    # into guidance. The published checkpoints were not.
    reads_negation: bool = False

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _FLAGS:
                continue
            if f.name == "window_s":
                if not value > 0:
                    raise ConfigError(f"window_s must be positive seconds, got {value!r}")
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{f.name} must be a positive integer, got {value!r}")
        if self.hidden_dim % self.num_heads:
            raise ConfigError(
                f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}; "
                "choose hidden_dim = num_heads * head channels (64 in the published variants)"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head channels {self.head_dim} must be even for rotary positions")
        if not 0 <= self.fused_depth < self.depth:
            raise ConfigError(
                f"fused_depth {self.fused_depth} must be below depth {self.depth}: at least one "
                "joint block is needed for the picture and text to reach the audio"
            )
        if self.sync_seq_len % SYNC_SEGMENT:
            raise ConfigError(
                f"sync_seq_len {self.sync_seq_len} must be a multiple of {SYNC_SEGMENT} "
                "(sync features come in segments of 8 frames)"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_dim // self.num_heads

    @property
    def joint_depth(self) -> int:
        return self.depth - self.fused_depth

    @property
    def latent_rate(self) -> float:
        """Latent tokens per second."""
        return self.latent_seq_len / self.window_s

    @property
    def clip_rate(self) -> float:
        """Semantic picture features per second."""
        return self.clip_seq_len / self.window_s

    @property
    def sync_rate(self) -> float:
        """Sync picture features per second."""
        return self.sync_seq_len / self.window_s

    def seq_lens_for(self, duration_s: float) -> tuple[int, int, int]:
        """(latent, clip, sync) token counts for `duration_s` seconds at this network's rates;
        sync rounded up to whole segments, the way the front ends produce them."""
        latent = max(1, math.ceil(duration_s * self.latent_rate - 1e-6))
        clip = max(1, round(duration_s * self.clip_rate))
        segments = max(1, math.ceil(duration_s * self.sync_rate / SYNC_SEGMENT - 1e-6))
        return latent, clip, segments * SYNC_SEGMENT

    def constructor_kwargs(self) -> dict:
        """The published constructor sizes (everything but `window_s` and `reads_negation`)."""
        d = asdict(self)
        d.pop("window_s")
        d.pop("reads_negation")
        return d

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown network config fields {unknown}; expected a subset of {sorted(known)}"
            )
        missing = sorted(
            f.name for f in fields(cls) if f.name not in data and f.name not in _OPTIONAL
        )
        if missing:
            raise ConfigError(f"network config lacks {missing}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> NetworkConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"network config is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError("network config JSON must be an object of constructor sizes")
        return cls.from_dict(data)

    def with_(self, **changes) -> NetworkConfig:
        return replace(self, **changes)


def _published(latent_dim: int, latent_seq_len: int, hidden: int, depth: int, fused: int,
               v2: bool = False) -> NetworkConfig:
    return NetworkConfig(
        latent_dim=latent_dim, clip_dim=1024, sync_dim=768, text_dim=1024, hidden_dim=hidden,
        depth=depth, fused_depth=fused, num_heads=hidden // 64, latent_seq_len=latent_seq_len,
        clip_seq_len=64, sync_seq_len=192, text_seq_len=77, v2=v2,
    )


PRESETS: dict[str, NetworkConfig] = {
    # The embedded CPU default; sizes fixed by the front ends (see team CONTEXT).
    "tiny": NetworkConfig(
        latent_dim=160, clip_dim=64, sync_dim=64, text_dim=384, hidden_dim=128, depth=4,
        fused_depth=2, num_heads=2, latent_seq_len=250, clip_seq_len=64, sync_seq_len=200,
        text_seq_len=32, v2=True,
    ),
    "small_16k": _published(20, 250, 448, 12, 8),
    "small_44k": _published(40, 345, 448, 12, 8),
    "medium_44k": _published(40, 345, 896, 12, 8),
    "large_44k": _published(40, 345, 896, 21, 14),
    "large_44k_v2": _published(40, 345, 896, 21, 14, v2=True),
}


def preset(name: str) -> NetworkConfig:
    """The config called `name`; raises ConfigError listing the known names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown network preset {name!r}; choose one of {', '.join(PRESETS)}"
        ) from None
