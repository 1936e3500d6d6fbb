"""What the editor chooses for one generation, from the dialog, from keywords, or (where Resolve
offers no dialog: the free version since 19.1) from `V2A Generate.json` next to the script.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass

from .errors import SettingsInvalid

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5755"
SETTINGS_FILE_NAME = "V2A Generate.json"
MODES = ("clip", "continuous")


@dataclass
class GenerateSettings:
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    takes: int = 1
    steps: int = 25
    cfg: float = 4.5
    mode: str = "clip"  # "clip": one sound per shot; "continuous": one soundtrack across cuts
    track: int | None = None  # video track that drives the sound; None: top-most visible
    stems: bool = False  # one audio track per prompt
    media_dir: str | None = None  # where the WAVs go; None: "V2A Audio/<timeline>" by the media
    endpoint: str = DEFAULT_ENDPOINT
    bin_name: str = "V2A Audio"  # media pool bin the WAVs are imported into
    answer_timeout_s: float = 10.0  # a daemon that has not accepted the job by then is down

    def validated(self) -> GenerateSettings:
        """This, checked; raises SettingsInvalid naming the setting and what it must be."""
        hints = {f.name: f.type for f in dataclasses.fields(self)}
        for name, kind in hints.items():
            value = getattr(self, name)
            ok = {
                "str": isinstance(value, str),
                "int": isinstance(value, int) and not isinstance(value, bool),
                "float": isinstance(value, (int, float)) and not isinstance(value, bool),
                "bool": isinstance(value, bool),
                "int | None": value is None or (isinstance(value, int)
                                                and not isinstance(value, bool)),
                "str | None": value is None or isinstance(value, str),
            }[kind]
            if not ok:
                raise SettingsInvalid(f"Setting {name!r} must be of type {kind}, "
                                      f"not {type(value).__name__} ({value!r}).")
        checks = [
            (self.takes >= 1, "takes", "at least 1"),
            (self.steps >= 1, "steps", "at least 1"),
            (self.cfg >= 0, "cfg", "0 or more"),
            (self.seed >= 0, "seed", "0 or more"),
            (self.mode in MODES, "mode", f"one of {', '.join(MODES)}"),
            (self.track is None or self.track >= 1, "track", "a video track number from 1"),
            (self.answer_timeout_s > 0, "answer_timeout_s", "more than 0"),
            (bool(self.endpoint), "endpoint", "a ZeroMQ address like " + DEFAULT_ENDPOINT),
            (bool(self.bin_name), "bin_name", "a bin name"),
            (self.media_dir is None or os.path.isabs(self.media_dir), "media_dir",
             "an absolute folder path"),
        ]
        for ok, name, what in checks:
            if not ok:
                raise SettingsInvalid(f"Setting {name!r} must be {what}; it is "
                                      f"{getattr(self, name)!r}.")
        return self

    def replaced(self, **changes) -> GenerateSettings:
        """A copy with `changes` (None values mean "keep"); unknown names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SettingsInvalid(f"Unknown setting(s) {', '.join(unknown)}; "
                                  f"known settings are: {', '.join(sorted(known))}.")
        kept = {k: v for k, v in changes.items() if v is not None}
        if "cfg" in kept and isinstance(kept["cfg"], int) and not isinstance(kept["cfg"], bool):
            kept["cfg"] = float(kept["cfg"])
        return dataclasses.replace(self, **kept).validated()

    def request_options(self) -> dict:
        """The generate_timeline options the daemon takes from these settings."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "mode": self.mode,
            "takes": self.takes,
            "seed": self.seed,
            "steps": self.steps,
            "cfg": float(self.cfg),
            "track": self.track,
            "stems": self.stems,
            "resolve": True,  # the returned OTIO can then be imported into Resolve by hand
        }


def load_settings(path: str) -> GenerateSettings:
    """Settings from a JSON object file; defaults where the file is missing."""
    if not os.path.exists(path):
        return GenerateSettings()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise SettingsInvalid(f"Could not read the settings file {path}: {exc}. "
                              "Fix the JSON or delete the file to use the defaults.") from exc
    if not isinstance(data, dict):
        raise SettingsInvalid(f"The settings file {path} must hold a JSON object "
                              '(like {"prompt": "rain on a tin roof"}).')
    try:
        return GenerateSettings().replaced(**{str(k): v for k, v in data.items()})
    except SettingsInvalid as exc:
        raise SettingsInvalid(f"In {path}: {exc}") from exc
