"""A procedural audio-visual world with known ground truth, for training and evaluating V2A.

Seeded clips of small video (25 fps RGB) and 16 kHz mono audio in which every sound has a
visible cause on an exact frame: objects dropping on wood, metal, glass or stone; a figure
walking on concrete, gravel, grass or wood; fast swipes; flashes; door slams; ambiences with
their textures (rain, ocean, wind, fire, underwater, city); music beds that change on cuts.
All sound is synthesised here (modal synthesis, filtered noise, oscillators).

    from daemon.model.world import generate_clip, write_mp4
    clip = generate_clip(seed=7)          # clip.frames, clip.audio, clip.caption, clip.events
"""

from .captions import CLASSES, PHRASES, caption, class_prompt
from .clip import (
    AMBIENCE_CLASSES,
    EVAL_SYNC,
    EVENT_CLASSES,
    MUSIC_CLASSES,
    Clip,
    WorldConfig,
    compress_frames,
    generate_clip,
    write_mp4,
)
from .sources import Event

__all__ = [
    "AMBIENCE_CLASSES", "CLASSES", "EVAL_SYNC", "EVENT_CLASSES", "MUSIC_CLASSES", "PHRASES",
    "Clip", "Event", "WorldConfig", "caption", "class_prompt", "compress_frames",
    "generate_clip", "write_mp4",
]
