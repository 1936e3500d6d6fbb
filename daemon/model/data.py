"""Training data: what a training example is, and its features computed once for many epochs.

A `TrainingDataset` is anything with `len()` and `[i] -> TrainingItem`: a stretch of picture
(a `Segment` of a media file, several segments back to back, or frames in memory), the sound
that belongs to it (mono waveform at its own rate) and a caption ("" for none). The procedural
world (daemon.model.world) and a folder of real footage (`VideoFolderDataset`) are two such
datasets.

Decoding video and running the front ends costs far more than a training step of the tiny
network on a CPU, so training never does it per step: `precompute` turns a dataset into a
`FeatureSet` (audio latents, both picture streams, one text encoding per distinct caption),
saved as safetensors under a folder and loaded whole into memory. A dataset that already has
features (e.g. made on a GPU box) builds a FeatureSet directly with `FeatureSet.from_tensors`.

Every example covers exactly one training window (the network's `window_s`, 8 s for tiny):
longer examples are cut to their first window, shorter ones padded (silence, last picture
held).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import parse_qsl

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from daemon.engine import Segment
from daemon.media import read_audio
from daemon.model.codec import AudioCodec, resample
from daemon.model.config import NetworkConfig
from daemon.model.text import TextEncoder
from daemon.model.visual import VisualEncoder, VisualFeatures

log = logging.getLogger(__name__)

FEATURES_FORMAT = "v2a-features-1"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".mxf", ".avi", ".webm", ".m4v")


class DatasetError(ValueError):
    """A dataset that cannot be opened or read; the message says what to fix."""


@dataclass(frozen=True)
class FramesPicture:
    """Frames in memory: (F, H, W, 3) uint8 RGB shown at `fps` from t = 0."""

    frames: np.ndarray
    fps: float | Fraction

    @property
    def duration(self) -> float:
        return len(self.frames) / float(self.fps)


@dataclass(frozen=True)
class TrainingItem:
    picture: Segment | tuple[Segment, ...] | FramesPicture
    audio: np.ndarray  # (L,) float32 mono
    audio_rate: int
    caption: str = ""


@runtime_checkable
class TrainingDataset(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> TrainingItem: ...


# ---------------------------------------------------------------------------------------------
# Features of one example


def _fit_rows(x: torch.Tensor, count: int) -> torch.Tensor:
    """(L, C) -> (count, C): cut, or hold the last row."""
    if x.shape[0] >= count:
        return x[:count]
    return torch.cat([x, x[-1:].expand(count - x.shape[0], -1)])


def picture_features(picture, visual: VisualEncoder) -> VisualFeatures:
    if isinstance(picture, FramesPicture):
        return visual.encode_frames(picture.frames, picture.fps)
    segments = (picture,) if isinstance(picture, Segment) else tuple(picture)
    return visual.encode_segments(segments)


def example_features(
    item: TrainingItem, config: NetworkConfig, visual: VisualEncoder, codec: AudioCodec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(latent (N, latent_dim), clip (Nc, clip_dim), sync (Ns, sync_dim)) of one window."""
    latent_len, clip_len, sync_len = config.seq_lens_for(config.window_s)
    audio = np.asarray(item.audio, dtype=np.float32).reshape(-1)
    if item.audio_rate != codec.sample_rate:
        audio = resample(audio, item.audio_rate, codec.sample_rate)
    samples = latent_len * codec.samples_per_token
    audio = audio[:samples] if audio.shape[0] >= samples else np.pad(audio, (0, samples - audio.shape[0]))
    latent = codec.encode(torch.from_numpy(audio)[None])[0]  # (N, latent_dim)
    picture = picture_features(item.picture, visual)
    return latent, _fit_rows(picture.clip, clip_len), _fit_rows(picture.sync, sync_len)


# ---------------------------------------------------------------------------------------------
# Precomputed features


class FeatureSet:
    """Features of many examples, in memory (float16 storage, float32 batches)."""

    def __init__(self, latents: torch.Tensor, clips: torch.Tensor, syncs: torch.Tensor,
                 text_index: torch.Tensor, texts: torch.Tensor, captions: list[str]) -> None:
        count = latents.shape[0]
        if not (clips.shape[0] == syncs.shape[0] == text_index.shape[0] == count):
            raise DatasetError("feature tensors disagree on the number of examples")
        if texts.shape[0] != len(captions):
            raise DatasetError("one text encoding per distinct caption is required")
        self.latents, self.clips, self.syncs = latents, clips, syncs  # (M, N, C) ...
        self.text_index, self.texts, self.captions = text_index.long(), texts, captions

    def __len__(self) -> int:
        return self.latents.shape[0]

    @classmethod
    def from_tensors(cls, latents: torch.Tensor, clips: torch.Tensor, syncs: torch.Tensor,
                     captions: Sequence[str], text: TextEncoder) -> FeatureSet:
        """Examples whose latents and picture features are already computed; captions are
        encoded here once per distinct caption."""
        distinct = list(dict.fromkeys(captions))
        where = {c: i for i, c in enumerate(distinct)}
        texts = torch.cat([text.encode(distinct[i : i + 64]).tokens for i in range(0, len(distinct), 64)])
        index = torch.tensor([where[c] for c in captions], dtype=torch.long)
        return cls(latents.half(), clips.half(), syncs.half(), index, texts.half(), distinct)

    def batch(self, indices: torch.Tensor, device: torch.device | str = "cpu"):
        """(latent, clip, sync, text) float32 on `device` for the examples `indices`."""
        take = [self.latents[indices], self.clips[indices], self.syncs[indices],
                self.texts[self.text_index[indices]]]
        return tuple(t.to(device=device, dtype=torch.float32) for t in take)

    def save(self, folder: str | os.PathLike) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(
            {"latents": self.latents.contiguous(), "clips": self.clips.contiguous(),
             "syncs": self.syncs.contiguous(), "text_index": self.text_index.contiguous(),
             "texts": self.texts.contiguous()},
            str(folder / "features.safetensors"),
        )
        manifest = {"format": FEATURES_FORMAT, "count": len(self), "captions": self.captions}
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> FeatureSet:
        folder = Path(folder)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            tensors = load_file(str(folder / "features.safetensors"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DatasetError(f"cannot read precomputed features in {folder}: {exc}") from exc
        if manifest.get("format") != FEATURES_FORMAT:
            raise DatasetError(f"{folder} holds features of format {manifest.get('format')!r}, "
                               f"not {FEATURES_FORMAT}; precompute them again")
        return cls(tensors["latents"], tensors["clips"], tensors["syncs"], tensors["text_index"],
                   tensors["texts"], list(manifest["captions"]))

    def check(self, config: NetworkConfig) -> None:
        """Raise DatasetError unless the features fit the network's inputs."""
        n, nc, ns = config.seq_lens_for(config.window_s)
        want = {"latents": (n, config.latent_dim), "clips": (nc, config.clip_dim),
                "syncs": (ns, config.sync_dim), "texts": (config.text_seq_len, config.text_dim)}
        for name, shape in want.items():
            got = tuple(getattr(self, name).shape[1:])
            if got != shape:
                raise DatasetError(f"precomputed {name} are {got} per example but the network "
                                   f"needs {shape}; precompute the features for this config")


def precompute(dataset: TrainingDataset, config: NetworkConfig, visual: VisualEncoder,
               text: TextEncoder, codec: AudioCodec, log_every: int = 100) -> FeatureSet:
    """Run the front ends over every example of `dataset` once."""
    latents, clips, syncs, captions = [], [], [], []
    started = time.monotonic()
    for i in range(len(dataset)):
        item = dataset[i]
        latent, clip, sync = example_features(item, config, visual, codec)
        latents.append(latent.half())
        clips.append(clip.half())
        syncs.append(sync.half())
        captions.append(item.caption)
        if (i + 1) % log_every == 0 or i + 1 == len(dataset):
            rate = (i + 1) / max(1e-9, time.monotonic() - started)
            log.info("features: %d / %d examples (%.1f per s)", i + 1, len(dataset), rate)
    if not latents:
        raise DatasetError("the dataset is empty")
    return FeatureSet.from_tensors(torch.stack(latents), torch.stack(clips), torch.stack(syncs),
                                   captions, text)


# ---------------------------------------------------------------------------------------------
# Datasets


class VideoFolderDataset:
    """Real footage: every video file in a folder (with its own soundtrack as the target) and
    its caption from `<name>.txt` beside it (none: no caption). One window from the start."""

    def __init__(self, folder: str | os.PathLike, window_s: float = 8.0, audio_rate: int = 16_000):
        self.folder = Path(folder)
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        if not self.files:
            raise DatasetError(f"no video files ({', '.join(VIDEO_SUFFIXES)}) in {self.folder}")
        self.window_s, self.audio_rate = window_s, audio_rate

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> TrainingItem:
        path = self.files[index]
        caption_file = path.with_suffix(".txt")
        caption = caption_file.read_text().strip() if caption_file.is_file() else ""
        audio = read_audio(str(path), 0.0, self.window_s, self.audio_rate)
        return TrainingItem(Segment(str(path), 0.0, self.window_s), audio, self.audio_rate, caption)


def open_dataset(spec: str, window_s: float = 8.0) -> TrainingDataset | FeatureSet:
    """`--data` of the training command:

    - a folder with `manifest.json`: precomputed features (FeatureSet);
    - a folder of video files: VideoFolderDataset;
    - ``module:factory?key=value&...``: factory(**kwargs) returning a TrainingDataset or a
      FeatureSet (values are passed as int/float when they look like numbers).
    """
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "manifest.json").is_file():
            return FeatureSet.load(path)
        return VideoFolderDataset(path, window_s)
    if ":" not in spec:
        raise DatasetError(
            f"--data {spec!r} is neither a folder nor module:factory; pass a folder of videos, "
            "a folder of precomputed features, or e.g. daemon.model.world:WorldDataset?count=1000"
        )
    target, _, query = spec.partition("?")
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise DatasetError(f"cannot load the dataset factory {target!r}: {exc}") from exc
    kwargs = {key: _number(value) for key, value in parse_qsl(query)}
    dataset = factory(**kwargs)
    if not isinstance(dataset, TrainingDataset | FeatureSet):
        raise DatasetError(f"{target} returned {type(dataset).__name__}, not a dataset")
    return dataset


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text
