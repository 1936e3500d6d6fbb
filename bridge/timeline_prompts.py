"""Prompts written on the timeline: notes in clip markers and clip metadata that add to or
replace the global prompt and negative prompt for that clip.

Syntax, one note per line, in a marker's name or comment, or in the clip's `v2a` metadata (a
string, or a dict with `prompt` / `prompt!` / `negative_prompt` / `negative_prompt!`):

    v2a: footsteps on gravel        adds to the prompt
    v2a!: rain on a tin roof        replaces the global prompt
    v2a-negative: speech            adds to the negative prompt
    v2a-negative!: music            replaces the global negative prompt
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

_NOTE = re.compile(r"^\s*v2a(-negative)?(!)?\s*:\s*(.*?)\s*$", re.IGNORECASE)


@dataclass
class _Notes:
    add: list[str] = field(default_factory=list)
    replace: str | None = None
    add_negative: list[str] = field(default_factory=list)
    replace_negative: str | None = None

    def read_text(self, text: str) -> None:
        for line in (text or "").splitlines():
            m = _NOTE.match(line)
            if not m or not m.group(3):
                continue
            negative, override, words = bool(m.group(1)), bool(m.group(2)), m.group(3)
            if negative and override:
                self.replace_negative = words
            elif negative:
                self.add_negative.append(words)
            elif override:
                self.replace = words
            else:
                self.add.append(words)

    def read_item(self, item) -> None:
        for marker in getattr(item, "markers", ()):
            self.read_text(marker.name)
            self.read_text(getattr(marker, "comment", "") or "")
        meta = item.metadata.get("v2a") if hasattr(item, "metadata") else None
        if isinstance(meta, str):
            self.read_text(meta if _NOTE.match(meta) else f"v2a: {meta}")
        elif meta is not None and hasattr(meta, "get") and not meta.get("generated"):
            for key, prefix in (
                ("prompt", "v2a"),
                ("prompt!", "v2a!"),
                ("negative_prompt", "v2a-negative"),
                ("negative_prompt!", "v2a-negative!"),
            ):
                if isinstance(meta.get(key), str):
                    self.read_text(f"{prefix}: {meta[key]}")

    def apply(self, prompt: str, negative: str) -> tuple[str, str]:
        base = self.replace if self.replace is not None else prompt
        neg_base = self.replace_negative if self.replace_negative is not None else negative
        return _join([base, *self.add]), _join([neg_base, *self.add_negative])


def _join(parts: Sequence[str]) -> str:
    seen: list[str] = []
    for p in parts:
        p = (p or "").strip()
        if p and p not in seen:
            seen.append(p)
    return ", ".join(seen)


def clip_prompts(piece_items: Sequence, prompt: str, negative: str) -> tuple[str, str]:
    """The prompt and negative prompt for a clip: the global ones, then notes written on the
    enclosing compound clips (outermost first) and on the clip itself.

    Syntax, in a marker's name or comment or in the clip's `v2a` metadata (a string, or a dict
    with `prompt` / `prompt!` / `negative_prompt` / `negative_prompt!`):
    `v2a: words` adds to the prompt, `v2a!: words` replaces the global prompt,
    `v2a-negative: words` adds to the negative prompt, `v2a-negative!: words` replaces it.
    """
    notes = _Notes()
    for item in piece_items:
        notes.read_item(item)
    return notes.apply(prompt, negative)
