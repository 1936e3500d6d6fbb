"""Captions for world clips, written the many ways an editor might type a prompt.

Each sound class has several paraphrases; a caption names one to three of a clip's sounds as a
sentence, a terse list, or a single word, and some clips get no caption at all.
`class_prompt(cls, rng)` gives one phrase for a class (what evaluation prompts with).
"""

from __future__ import annotations

import numpy as np

PHRASES: dict[str, tuple[str, ...]] = {
    "impact_wood": ("wooden blocks dropping", "a wood block hitting the floor", "wood knocks",
                    "timber thuds", "a wooden object falls and bounces", "wood impacts"),
    "impact_metal": ("metal clanging", "a steel object hitting the ground", "metallic clangs",
                     "an iron pipe dropped", "metal impacts ringing", "tin can bouncing"),
    "impact_glass": ("glass clinking", "a glass bottle hitting the floor", "glass taps",
                     "crystal clinks", "glass objects dropping", "a glass cup bouncing"),
    "impact_stone": ("stones thudding", "a rock dropped on the ground", "stone impacts",
                     "heavy rocks falling", "pebbles knocking", "a brick hitting the floor"),
    "footsteps_concrete": ("footsteps on concrete", "walking on pavement", "steps on concrete",
                           "someone walking on a hard floor", "heels on concrete"),
    "footsteps_gravel": ("footsteps on gravel", "walking on gravel", "crunchy steps on gravel",
                         "someone walking on a gravel path", "gravel footsteps"),
    "footsteps_grass": ("footsteps on grass", "walking through grass", "soft steps on grass",
                        "someone walking on a lawn", "grass footsteps"),
    "footsteps_wood": ("footsteps on a wooden floor", "walking on floorboards",
                       "steps on wood", "someone walking on a wooden deck", "wooden footsteps"),
    "whoosh": ("a whoosh", "something swooshing past", "fast swishes", "whooshing by",
               "a swoosh as it flies past"),
    "zap": ("an electric zap", "electric zaps with flashes", "a zapping sound", "sparks zapping",
            "lightning crackle zaps"),
    "click": ("a light switch clicking", "clicks", "a switch click", "clicking lamp",
              "switch clicks on and off"),
    "door_slam": ("a door slamming", "door slams", "someone slams a door", "a slammed door",
                  "the door bangs shut"),
    "rain": ("rain", "rain falling", "heavy rain", "rainfall", "rain pouring down",
             "a rainy day"),
    "ocean": ("ocean waves", "waves at the sea", "the sea", "surf rolling in", "ocean",
              "waves washing on the shore"),
    "wind": ("wind", "wind blowing", "gusty wind", "a windy field", "strong wind through grass"),
    "fire": ("fire crackling", "a crackling campfire", "burning fire", "flames", "a fire"),
    "underwater": ("underwater bubbles", "underwater", "bubbling water", "under the sea",
                   "bubbles rising underwater"),
    "city": ("city traffic hum", "city ambience", "engine hum", "urban traffic",
             "a busy street at night"),
    "music_tense": ("tense music", "a suspenseful drone", "dark pulsing music",
                    "tense score with pulses", "ominous music"),
    "music_calm": ("calm music", "soft pads", "gentle ambient music", "a calm score",
                   "peaceful music"),
    "music_upbeat": ("upbeat music", "happy arpeggios", "cheerful upbeat score",
                     "energetic music", "bright plucky music"),
}

CLASSES: tuple[str, ...] = tuple(PHRASES)
"""Every sound class of the world, in a fixed order (the audio classifier's label order)."""


def class_prompt(cls: str, rng: np.random.Generator) -> str:
    return str(rng.choice(PHRASES[cls]))


def caption(classes: list[str], rng: np.random.Generator, none_probability: float = 0.15
            ) -> str | None:
    """A caption naming some of `classes` (most prominent first), or None."""
    if not classes or rng.random() < none_probability:
        return None
    count = int(rng.integers(1, min(3, len(classes)) + 1))
    named = [class_prompt(c, rng) for c in classes[:count]]
    style = rng.random()
    if style < 0.25 or len(named) == 1:
        text = named[0] if len(named) == 1 else ", ".join(named)
    elif style < 0.7:
        joiner = str(rng.choice([" and ", " with ", " while ", ", then "]))
        text = joiner.join(named)
    else:
        text = ", ".join(named)
    if rng.random() < 0.3:
        text = text[0].upper() + text[1:]
    return text


def negative_caption(classes: tuple[str, ...], rng: np.random.Generator) -> str:
    """A negative prompt naming `classes`, as an editor types one ("rain, door slams")."""
    return ", ".join(class_prompt(c, rng) for c in classes)
