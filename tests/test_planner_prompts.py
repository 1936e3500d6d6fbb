"""Prompts written on the timeline (markers, metadata, compound clips) as the planner reads them."""

from __future__ import annotations

import opentimelineio as otio
import pytest

from bridge.planner import PlanOptions, plan_timeline
from bridge.timeline_prompts import clip_prompts
from tests.timeline_kit import clip, marker, rng, timeline, track


@pytest.mark.parametrize(
    "notes, prompt, negative",
    [
        ([], "city", "hum"),
        (["V2A: sirens"], "city, sirens", "hum"),  # case does not matter
        (["v2a: sirens", "v2a: sirens"], "city, sirens", "hum"),  # nor does repetition
        (["v2a!: forest", "v2a: birds"], "forest, birds", "hum"),
        (["v2a-negative: traffic"], "city", "hum, traffic"),
        (["v2a-negative!: nothing loud"], "city", "nothing loud"),
        (["just a note", "v2a:"], "city", "hum"),  # not notes / empty notes
    ],
)
def test_marker_notes(notes, prompt, negative):
    c = clip("A", 0, 24, markers=[marker(n) for n in notes])
    assert clip_prompts([c], "city", "hum") == (prompt, negative)


def test_metadata_string_and_dict():
    as_text = clip("A", 0, 24, metadata={"v2a": "footsteps"})
    assert clip_prompts([as_text], "", "")[0] == "footsteps"
    as_dict = clip("A", 0, 24, metadata={"v2a": {"prompt!": "rain", "negative_prompt": "music"}})
    assert clip_prompts([as_dict], "wind", "hum") == ("rain", "hum, music")


def test_notes_on_a_compound_clip_apply_inside():
    inner = otio.schema.Stack(name="scene", source_range=rng(0, 24))
    inner.markers.append(marker("v2a!: underwater"))
    inner.append(track(clip("B", 0, 24, markers=[marker("v2a: bubbles")])))
    (job,) = plan_timeline(timeline(track(inner)), PlanOptions(prompt="beach")).jobs
    assert job.prompt == "underwater, bubbles"
