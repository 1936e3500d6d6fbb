"""Small real movies for the Resolve tests (PyAV), and a helper that edits them into a fake
Resolve timeline through the scripting API, the way an editor's timeline would look."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def make_movie(path: str, frames: int, rate: Fraction = Fraction(24000, 1001),
               size: tuple[int, int] = (64, 48), with_audio: bool = False) -> str:
    """A `frames`-frame MPEG-4 movie whose brightness ramps (so every frame differs)."""
    width, height = size
    with av.open(path, "w") as container:
        video = container.add_stream("mpeg4", rate=rate)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=48000) if with_audio else None
        for n in range(frames):
            level = int(255 * n / max(1, frames - 1))
            image = np.full((height, width, 3), level, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            samples = round(frames / rate * 48000)
            pcm = (0.1 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)
            chunk = 1024
            for start in range(0, samples, chunk):
                block = pcm[start:start + chunk][None, :]
                frame = av.AudioFrame.from_ndarray(block, format="fltp", layout="mono")
                frame.sample_rate = 48000
                for packet in audio.encode(frame):
                    container.mux(packet)
            for packet in audio.encode():
                container.mux(packet)
    return path


def edit_timeline(resolve, name: str, rate_setting: str, shots: list[dict],
                  start_timecode: str = "01:00:00:00", project_name: str = "V2A test"):
    """A project with one timeline holding `shots` on V1 through the scripting API.

    Each shot: {"path", "record" (frames from the timeline's start), "in", "out" (source frames,
    out exclusive)}. Returns (project, timeline)."""
    manager = resolve.GetProjectManager()
    project = manager.CreateProject(project_name) or manager.LoadProject(project_name)
    project.SetSetting("timelineFrameRate", rate_setting)
    pool = project.GetMediaPool()
    timeline = pool.CreateEmptyTimeline(name)
    timeline.SetStartTimecode(start_timecode)
    start = timeline.GetStartFrame()
    clips = {}
    for shot in shots:
        if shot["path"] not in clips:
            imported = pool.ImportMedia([shot["path"]])
            assert imported, f"the fake could not import {shot['path']}"
            clips[shot["path"]] = imported[0]
        placed = pool.AppendToTimeline([{
            "mediaPoolItem": clips[shot["path"]], "startFrame": shot["in"],
            "endFrame": shot["out"], "mediaType": 1, "trackIndex": 1,
            "recordFrame": start + shot["record"],
        }])
        assert placed, f"the fake did not place {shot}"
    return project, timeline
