"""Test media for the front-end and engine tests: small real video files written with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BACKGROUND = 60


def moving_box_frames(count: int, size: tuple[int, int], flash: int | None = None) -> np.ndarray:
    """(count, H, W, 3) uint8: a bright box sliding right over grey; frame `flash` all white."""
    width, height = size
    frames = np.full((count, height, width, 3), BACKGROUND, np.uint8)
    box_h, box_w = max(2, height // 4), max(2, width // 12)
    for j in range(count):
        x = (j * 3) % max(1, width - box_w)
        frames[j, height // 3 : height // 3 + box_h, x : x + box_w] = (220, 180, 90)
    if flash is not None:
        frames[flash] = 255
    return frames


def write_video(
    path: Path,
    frames: np.ndarray,
    rate: Fraction | int,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    gop: int | None = None,
) -> Path:
    """Encode RGB frames to `path` with FFmpeg's `codec` at frame rate `rate`."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = pix_fmt
    if options:
        stream.options = options
    if gop:
        stream.codec_context.gop_size = gop
    for image in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def write_image_sequence(folder: Path, frames: np.ndarray, start_number: int) -> str:
    """Write PNGs shot.%04d.png numbered from `start_number`; returns the printf pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for j, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        container = av.open(str(folder / f"shot.{start_number + j:04d}.png"), "w", format="image2")
        stream = container.add_stream("png", rate=25)
        stream.height, stream.width = image.shape[:2]
        stream.pix_fmt = "rgb24"
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        container.close()
    return str(folder / "shot.%04d.png")


def write_video_with_tone(path: Path, seconds: float, frequency: float, rate: int = 25) -> Path:
    """An H.264 + AAC file: the moving box, and a sine tone of `frequency` Hz at 48 kHz."""
    frames = moving_box_frames(int(seconds * rate), (64, 36))
    container = av.open(str(path), "w")
    video = container.add_stream("libx264", rate=rate)
    video.height, video.width = frames.shape[1:3]
    video.pix_fmt = "yuv420p"
    audio = container.add_stream("aac", rate=48_000)
    audio.layout = "mono"
    for image in frames:
        for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    tone = np.sin(2 * np.pi * frequency * np.arange(int(seconds * 48_000)) / 48_000)
    tone = (0.5 * tone).astype(np.float32)
    for start in range(0, len(tone), 1024):
        chunk = tone[start : start + 1024][None]
        frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
        frame.sample_rate = 48_000
        frame.pts = start
        for packet in audio.encode(frame):
            container.mux(packet)
    for stream in (video, audio):
        for packet in stream.encode():
            container.mux(packet)
    container.close()
    return path
