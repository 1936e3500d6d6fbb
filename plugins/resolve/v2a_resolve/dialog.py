"""What happens when the editor picks Workspace ▸ Scripts ▸ Edit ▸ V2A Generate.

Where Resolve offers Fusion's UIManager (`fu.UIManager`, Studio), a small dialog: prompt,
negative prompt, seed, takes, Generate, Cancel and a progress line. The job runs in the daemon;
a UIDispatcher timer polls it every POLL_INTERVAL_S without waiting, so Resolve's UI loop is never
held longer than one tick. Where there is no UIManager (the free version since 19.1), the settings
come from `V2A Generate.json` next to the script and progress is printed to the console.
"""

from __future__ import annotations

from bridge.client import V2AError

from .errors import ResolveScriptError
from .generation import POLL_INTERVAL_S, GenerationReport, TimelineGeneration, generate_for_timeline
from .settings import SETTINGS_FILE_NAME, GenerateSettings, load_settings

WINDOW_ID = "V2AGenerate"
TIMER_ID = "V2APoll"
MAX_SEED = 2**31 - 1  # what a UIManager SpinBox holds


def run_from_menu(resolve, fu=None, bmd=None, settings_path: str | None = None,
                  out=print) -> GenerationReport | None:
    """The script's entry point: the dialog when the UIManager exists, else the console."""
    try:
        settings = load_settings(settings_path) if settings_path else GenerateSettings()
    except ResolveScriptError as exc:
        out(f"V2A: {exc}")
        return None
    manager = getattr(fu, "UIManager", None) if fu is not None else None
    if manager is None or bmd is None:
        return run_in_console(resolve, settings, settings_path, out)
    return GenerateDialog(resolve, manager, bmd, settings).run()


def run_in_console(resolve, settings: GenerateSettings, settings_path: str | None,
                   out=print) -> GenerationReport | None:
    where = settings_path or SETTINGS_FILE_NAME
    out(f"V2A: generating with the settings in {where} (prompt: {settings.prompt!r}); "
        "progress follows in this console.")
    try:
        return generate_for_timeline(resolve, settings=settings, on_progress=out)
    except (ResolveScriptError, V2AError) as exc:
        out(f"V2A: {exc}")
        return None


class GenerateDialog:
    def __init__(self, resolve, manager, bmd, settings: GenerateSettings):
        self.resolve = resolve
        self.ui = manager
        self.settings = settings
        self.dispatcher = bmd.UIDispatcher(manager)
        self.generation: TimelineGeneration | None = None
        self.report: GenerationReport | None = None
        self.window = self._build()

    def _build(self):
        ui = self.ui
        s = self.settings
        window = self.dispatcher.AddWindow(
            {"ID": WINDOW_ID, "WindowTitle": "V2A Generate", "Geometry": [200, 200, 520, 260]},
            ui.VGroup([
                ui.Label({"Text": "Prompt (optional)"}),
                ui.LineEdit({"ID": "Prompt", "Text": s.prompt,
                             "PlaceholderText": "footsteps on gravel, distant traffic"}),
                ui.Label({"Text": "Negative prompt (optional)"}),
                ui.LineEdit({"ID": "NegativePrompt", "Text": s.negative_prompt,
                             "PlaceholderText": "music, speech"}),
                ui.HGroup([
                    ui.Label({"Text": "Seed"}),
                    ui.SpinBox({"ID": "Seed", "Minimum": 0, "Maximum": MAX_SEED,
                                "Value": min(s.seed, MAX_SEED)}),
                    ui.Label({"Text": "Takes"}),
                    ui.SpinBox({"ID": "Takes", "Minimum": 1, "Maximum": 16, "Value": s.takes}),
                ]),
                ui.Label({"ID": "Progress", "Text": "Ready.", "WordWrap": True}),
                ui.HGroup([
                    ui.Button({"ID": "Generate", "Text": "Generate"}),
                    ui.Button({"ID": "Cancel", "Text": "Close"}),
                ]),
            ]),
        )
        self.timer = ui.Timer({"ID": TIMER_ID, "Interval": int(POLL_INTERVAL_S * 1000)})
        window.On.Generate.Clicked = self.on_generate
        window.On.Cancel.Clicked = self.on_cancel
        getattr(window.On, WINDOW_ID).Close = self.on_close
        # Every UIManager timer reports to the dispatcher's one Timeout handler; `who` says which.
        self.dispatcher.On.Timeout = self.on_tick
        return window

    def run(self) -> GenerationReport | None:
        self.window.Show()
        self.dispatcher.RunLoop()
        self.window.Hide()
        return self.report

    # --- handlers: each returns within one poll interval --------------------------------------
    def item(self, element_id: str):
        return self.window.Find(element_id)

    def show(self, text: str) -> None:
        self.item("Progress").Text = text

    def running(self) -> bool:
        return self.generation is not None and not self.generation.done

    def on_generate(self, event=None) -> None:
        if self.running():
            return
        try:
            chosen = self.settings.replaced(
                prompt=str(self.item("Prompt").Text or ""),
                negative_prompt=str(self.item("NegativePrompt").Text or ""),
                seed=int(self.item("Seed").Value or 0),
                takes=int(self.item("Takes").Value or 1),
            )
            self.generation = TimelineGeneration(self.resolve, chosen)
            self.generation.start()
        except (ResolveScriptError, V2AError) as exc:
            self.finish(f"{exc}")
            return
        self.item("Generate").Enabled = False
        self.item("Cancel").Text = "Cancel"
        self.show("Sending the timeline to the V2A daemon…")
        self.timer.Start()

    def on_tick(self, event=None) -> None:
        if _who(event) not in (None, TIMER_ID):
            return
        if not self.running():
            self.timer.Stop()
            return
        try:
            lines = self.generation.poll(timeout=0.0)
        except (ResolveScriptError, V2AError) as exc:
            message = ("Cancelled." if getattr(exc, "code", None) == "cancelled" else f"{exc}")
            self.finish(message)
            return
        if self.generation.done:
            self.report = self.generation.report
            self.finish(self.report.summary())
        elif lines:
            self.show(f"{self.generation.status}")

    def on_cancel(self, event=None) -> None:
        if self.running():
            self.generation.cancel()
            self.show("Cancelling…")
        else:
            self.dispatcher.ExitLoop()

    def on_close(self, event=None) -> None:
        if self.running():
            self.generation.cancel()
            self.generation.close()
        self.timer.Stop()
        self.dispatcher.ExitLoop()

    def finish(self, text: str) -> None:
        self.timer.Stop()
        if self.generation is not None:
            self.generation.close()
            self.generation = None
        self.show(text)
        self.item("Generate").Enabled = True
        self.item("Cancel").Text = "Close"


def _who(event) -> str | None:
    try:
        return event["who"]
    except (TypeError, KeyError, IndexError):
        return None
