"""One generation for the current Resolve timeline, as a job the host polls.

`TimelineGeneration` exports the timeline to OTIO, submits it to the daemon without waiting, and
is then polled (`poll(timeout)` with a timeout of at most a UI timer tick) until the result
arrives, when it imports the WAVs and places them on new audio tracks. The dialog polls it from a
UIDispatcher timer; `generate_for_timeline` polls it in a loop for scripts and the console.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field

from bridge.client import UNTRUSTED_ADVICE, Client, DaemonError, DaemonUnavailable

from . import host
from .errors import PlacementFailed, SettingsInvalid
from .settings import GenerateSettings

POLL_INTERVAL_S = 0.1
"""The longest a poll may hold the caller (Resolve's UI loop, via its timer)."""


@dataclass
class GenerationReport:
    """What a generation did to the timeline."""

    timeline: str
    media_dir: str
    placed: list[host.PlacedSound] = field(default_factory=list)
    not_placed: list[host.MissedSound] = field(default_factory=list)  # generated, did not land
    failed: list[dict] = field(default_factory=list)  # daemon could not generate: clip, code, message
    audio_tracks: list[int] = field(default_factory=list)  # Resolve audio track indices added
    otio_path: str | None = None  # the daemon's result timeline, importable by hand

    @property
    def complete(self) -> bool:
        return not self.not_placed and not self.failed

    def summary(self) -> str:
        tracks = ", ".join(f"A{n}" for n in self.audio_tracks) or "none"
        firsts = [p for p in self.placed if p.take <= 1]
        takes = len(self.placed) - len(firsts)
        extra = f", {takes} more take(s) in their take selectors" if takes else ""
        lines = [f"V2A: {len(firsts)} sound(s) placed on {self.timeline!r} "
                 f"(new audio tracks: {tracks}{extra}); WAVs in {self.media_dir}"]
        color = host.UNTRUSTED_COLOR.lower()
        for p in self.placed:
            if p.unfamiliar:
                mark = f"marked {color}" if p.marked else f"Resolve would not colour it {color}"
                lines.append(f"  not to be trusted: {p.clip} ({os.path.basename(p.file)}): "
                             f"{UNTRUSTED_ADVICE} ({mark})")
        for f in self.failed:
            lines.append(f"  not generated: {f.get('clip')}: {f.get('message')} "
                         f"[{f.get('code')}]")
        for m in self.not_placed:
            untrusted = " (and it is not to be trusted)" if m.unfamiliar else ""
            lines.append(f"  not placed: {m.clip} ({os.path.basename(m.file)}): {m.reason}"
                         f"{untrusted}")
        if self.not_placed and self.otio_path:
            lines.append(f"  the complete result can be imported with File ▸ Import ▸ Timeline: "
                         f"{self.otio_path}")
        return "\n".join(lines)


class TimelineGeneration:
    """Generate sound for the current timeline: `start()`, then `poll()` until `done`."""

    def __init__(self, resolve, settings: GenerateSettings, *, client: Client | None = None):
        self.resolve = resolve
        self.settings = settings.validated()
        self._client = client
        self._own_client = client is None
        self.request_id: str | None = None
        self.edit: host.Edit | None = None
        self.media_dir = ""
        self.report: GenerationReport | None = None
        self.status = "not started"
        self.fraction = 0.0
        self._submitted_at = 0.0
        self._last_heard = 0.0
        self._ping_id: str | None = None
        self._ping_sent_at = 0.0
        self._cancelling = False
        self._body: dict | None = None
        self._instance: str | None = None  # the daemon run that accepted the job

    @property
    def done(self) -> bool:
        return self.report is not None

    def start(self) -> str:
        """Exports the timeline and submits it; returns at once with the request id."""
        self.edit = host.current_edit(self.resolve)
        self.media_dir = self.settings.media_dir or host.default_media_dir(self.edit) or ""
        if not self.media_dir:
            raise SettingsInvalid(
                "No folder for the generated audio: the timeline's video clips have no media "
                "folder on this computer. Set \"media_dir\" (an absolute folder) in "
                "V2A Generate.json or pass media_dir=...")
        try:
            os.makedirs(self.media_dir, exist_ok=True)
        except OSError as exc:
            raise SettingsInvalid(
                f"Cannot create the folder for the generated audio, {self.media_dir}: {exc}. "
                "Set \"media_dir\" in V2A Generate.json to a folder you can write to.") from exc
        with tempfile.TemporaryDirectory(prefix="v2a-resolve-") as scratch:
            otio_text = host.export_otio(
                self.resolve, self.edit.timeline,
                os.path.join(scratch, host.safe_file_name(self.edit.name) + ".otio"))
        if self._client is None:
            try:
                self._client = Client(self.settings.endpoint)
            except Exception as exc:  # a ZeroMQ address that does not parse
                raise SettingsInvalid(
                    f"Cannot talk to the V2A daemon at {self.settings.endpoint!r} ({exc}): set "
                    "\"endpoint\" in V2A Generate.json to an address like "
                    "tcp://127.0.0.1:5755.") from None
        body = {"otio": otio_text, "media_dir": os.path.abspath(self.media_dir),
                **self.settings.request_options()}
        self.request_id = self._client.submit("generate_timeline", body)
        self._body = body
        self._submitted_at = self._last_heard = time.monotonic()
        self.status = "waiting for the V2A daemon"
        return self.request_id

    def poll(self, timeout: float = 0.0) -> list[str]:
        """Handles what the daemon sent (waiting at most `timeout` s, capped at
        POLL_INTERVAL_S); returns progress lines. Raises DaemonError when the job fails,
        DaemonUnavailable when the daemon does not answer (at first, or to a ping after a
        silence)."""
        if self.done or self.request_id is None:
            return []
        lines = []
        now = time.monotonic()
        for event in self._client.poll(timeout=min(timeout, POLL_INTERVAL_S)):
            if event.id == self._ping_id:
                self._ping_id = None
                self._last_heard = now
                if event.type == "pong":
                    self._on_pong(event.body)
            if event.id != self.request_id:
                continue  # the pong, or the reply to our cancel request
            self._last_heard = now
            line = self._handle(event.type, event.body)
            if line:
                lines.append(line)
            if self.done:
                return lines
        self._check_daemon_alive(time.monotonic())
        return lines

    def _on_pong(self, pong: dict) -> None:
        """A pong from another daemon run than the one that accepted the job: the daemon
        restarted and the job is lost with it, so send it again under the same id (the new run
        answers from its journal or runs it)."""
        instance = pong.get("instance")
        if not instance or self._instance is None or instance == self._instance:
            return
        self._instance = instance
        if self._cancelling:
            self.close()
            raise DaemonError("cancelled", "Cancelled (the V2A daemon restarted meanwhile).")
        self._client.submit("generate_timeline", self._body, request_id=self.request_id)
        self.status = "the V2A daemon restarted; sending the timeline again"

    def _check_daemon_alive(self, now: float) -> None:
        """Silence is not trusted: after `answer_timeout_s` without a word, ask for a pong
        (without waiting for it); a daemon that answers neither is gone."""
        limit = self.settings.answer_timeout_s
        waiting_since = self._ping_sent_at if self._ping_id else self._last_heard
        if now - waiting_since <= limit:
            return
        if self._ping_id is None and self._last_heard > self._submitted_at:
            self._ping_id = self._client.submit("ping", {})
            self._ping_sent_at = now
            return
        self.close()
        raise DaemonUnavailable(self.settings.endpoint, limit)

    def cancel(self) -> None:
        """Asks the daemon to stop; the job then ends with a "cancelled" error on a later poll."""
        if self.request_id is not None and not self.done and not self._cancelling:
            self._cancelling = True
            self.status = "cancelling"
            self._client.submit("cancel", {"id": self.request_id})

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    def _handle(self, kind: str, body: dict) -> str | None:
        if kind == "accepted":
            self._instance = body.get("instance") or self._instance
            self.status = "queued"
            return "V2A: the daemon accepted the timeline"
        if kind == "progress":
            self.fraction = float(body.get("fraction", self.fraction))
            clip = body.get("clip")
            where = (f"clip {int(body['clip_index']) + 1}/{body['clip_count']} ({clip}) "
                     if clip and body.get("clip_index") is not None else "")
            self.status = f"{where}{body.get('stage', '')} {self.fraction:.0%}".strip()
            return f"V2A: {self.status}"
        if kind == "clip_done":
            cached = " (cached)" if body.get("cached") else ""
            untrusted = ", not to be trusted" if body.get("unfamiliar") else ""
            return (f"V2A: done {body.get('clip')} "
                    f"({int(body.get('index', 0)) + 1}/{body.get('count')}){cached}{untrusted}")
        if kind == "error":
            self.close()
            raise DaemonError(str(body.get("code", "internal")),
                              str(body.get("message", "the daemon reported an error")),
                              body.get("clip"))
        if kind == "result":
            self.close()
            self.report = self._apply(body)
            self.status = "done"
            self.fraction = 1.0
            return self.report.summary()
        return None

    def _apply(self, result: dict) -> GenerationReport:
        edit = self.edit
        report = GenerationReport(edit.name, self.media_dir,
                                  failed=list(result.get("failed", [])))
        otio_text = result.get("otio")
        if otio_text:
            path = os.path.join(self.media_dir, host.safe_file_name(edit.name) + " V2A.otio")
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(otio_text)
                report.otio_path = path
            except OSError:
                pass  # only a convenience copy; the placements below do not need it
        current = self.resolve.GetProjectManager().GetCurrentProject()
        if current is None or host._unique_id(current) != host._unique_id(edit.project):
            raise PlacementFailed(
                f"The project changed while the sound was generated, so it was not placed. "
                f"Import {report.otio_path} with File ▸ Import ▸ Timeline in the original "
                "project instead.")
        placements = host.placements_from_result(result, edit)
        if not placements:
            return report
        files = sorted({p.file for p in placements})
        items = host.media_pool_items(edit, files, self.settings.bin_name)
        report.audio_tracks = host.add_audio_tracks(
            edit.timeline, max(p.track for p in placements))
        report.placed, report.not_placed = host.place_sounds(
            edit, placements, items, report.audio_tracks)
        return report


def generate_for_timeline(resolve, prompt: str | None = None,
                          negative_prompt: str | None = None, endpoint: str | None = None,
                          *, settings: GenerateSettings | None = None, on_progress=print,
                          client: Client | None = None, **options) -> GenerationReport:
    """Generates sound for the current timeline and places it on new audio tracks.

    Keywords override `settings` (defaults if None): seed, takes, steps, cfg, mode, track,
    stems, media_dir, bin_name, answer_timeout_s. Progress lines go to `on_progress`. Raises
    ResolveScriptError (Resolve side), DaemonUnavailable or DaemonError (daemon side), each with
    a message that says what to do.
    """
    chosen = (settings or GenerateSettings()).replaced(
        prompt=prompt, negative_prompt=negative_prompt, endpoint=endpoint, **options)
    generation = TimelineGeneration(resolve, chosen, client=client)
    try:
        generation.start()
        while not generation.done:
            for line in generation.poll(timeout=POLL_INTERVAL_S):
                if on_progress is not None:
                    on_progress(line)
        return generation.report
    finally:
        generation.close()
