"""Fusion's UIManager as a script sees it: `fu.UIManager`, `bmd.UIDispatcher(ui)`, windows,
widgets, timers and the dispatcher's event loop.

Shapes follow the documented usage: elements are built as ``ui.VGroup({props}, [children])`` or
``ui.LineEdit({"ID": ..., "Text": ...})``; properties are read and written as attributes
(``item.Text``, ``item.Value``); handlers are assigned as ``win.On.<ID>.Clicked = fn`` and
``win.On.<WindowID>.Close = fn``; a timer is ``ui.Timer({"ID", "Interval" (ms)})``; every
timer's tick calls the dispatcher's one ``disp.On.Timeout`` handler with ``ev["who"]`` the
timer's ID (as public UIManager scripts use it), while ``disp.RunLoop()`` runs, until
``disp.ExitLoop()``.

`RunLoop` plays a scripted user (`FakeUIManager.user_actions`: ``(after_s, fn(window))``) in real
time and records how long every handler held the loop (`handler_seconds`), which is what a test
checks to prove that the script never blocks Resolve's UI.
"""

from __future__ import annotations

import time


class _Slots:
    """`On.<ID>`: the handlers assigned for one element (Clicked, Close, Timeout, ...)."""

    def __init__(self):
        object.__setattr__(self, "_handlers", {})

    def __setattr__(self, event: str, handler) -> None:
        self._handlers[event] = handler

    def __getattr__(self, event: str):
        return self._handlers.get(event)


class _On:
    """`win.On.<ID>.<Event> = fn` for elements; `disp.On.Timeout = fn` for timers."""

    def __init__(self):
        object.__setattr__(self, "_slots", {})
        object.__setattr__(self, "_direct", {})

    def __getattr__(self, element_id: str) -> _Slots:
        return self._slots.setdefault(element_id, _Slots())

    def __setattr__(self, event: str, handler) -> None:
        self._direct[event] = handler

    def _handler(self, element_id: str, event: str):
        slots = self._slots.get(element_id)
        return None if slots is None else slots._handlers.get(event)


class FakeWidget:
    def __init__(self, manager: FakeUIManager, kind: str, props: dict, children: list):
        object.__setattr__(self, "_manager", manager)
        object.__setattr__(self, "_kind", kind)
        object.__setattr__(self, "_props", dict(props))
        object.__setattr__(self, "_children", list(children))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._props.get(name)

    def __setattr__(self, name: str, value) -> None:
        self._props[name] = value

    def _walk(self):
        yield self
        for child in self._children:
            yield from child._walk()

    # Timer methods (a timer is an element too).
    def Start(self) -> None:
        self._props["_running"] = True
        self._props["_due"] = time.monotonic() + self._props.get("Interval", 0) / 1000

    def Stop(self) -> None:
        self._props["_running"] = False

    def GetIsActive(self) -> bool:
        return bool(self._props.get("_running"))


class FakeWindow(FakeWidget):
    def __init__(self, manager, props, children):
        super().__init__(manager, "Window", props, children)
        object.__setattr__(self, "On", _On())

    def Find(self, element_id: str):
        return next((w for w in self._walk() if w._props.get("ID") == element_id), None)

    def GetItems(self) -> dict:
        return {w._props["ID"]: w for w in self._walk() if "ID" in w._props}

    def Show(self) -> None:
        self._props["_visible"] = True

    def Hide(self) -> None:
        self._props["_visible"] = False

    # What a user does (called by the scripted user of RunLoop).
    def _click(self, element_id: str) -> None:
        widget = self.Find(element_id)
        if widget is None or widget._props.get("Enabled") is False:
            return  # a disabled or missing button cannot be clicked
        self._manager._call(self.On._handler(element_id, "Clicked"),
                            {"who": element_id, "what": "Clicked"})

    def _close(self) -> None:
        self._manager._call(self.On._handler(self._props.get("ID"), "Close"),
                            {"who": self._props.get("ID"), "what": "Close"})


class FakeUIManager:
    """`fu.UIManager`."""

    def __init__(self, user_actions=None, max_run_s: float = 60.0):
        self.user_actions = list(user_actions or [])
        self.max_run_s = max_run_s
        self.handler_seconds: list[float] = []
        self.windows: list[FakeWindow] = []
        self._timers: list[FakeWidget] = []

    def _element(self, kind: str, *args) -> FakeWidget:
        props, children = {}, []
        for arg in args:
            if isinstance(arg, dict):
                props = arg
            elif isinstance(arg, list | tuple):
                children = list(arg)
        widget = FakeWidget(self, kind, props, children)
        if kind == "Timer":
            self._timers.append(widget)
        return widget

    def __getattr__(self, kind: str):
        if kind.startswith("_") or not kind[:1].isupper():
            raise AttributeError(kind)
        return lambda *args: self._element(kind, *args)

    def _call(self, handler, event: dict) -> None:
        if handler is None:
            return
        began = time.monotonic()
        try:
            handler(event)
        finally:
            self.handler_seconds.append(time.monotonic() - began)


class FakeDispatcher:
    """`bmd.UIDispatcher(ui)`."""

    def __init__(self, manager: FakeUIManager):
        self._manager = manager
        self.On = _On()
        self._running = False

    def AddWindow(self, props: dict, children=None) -> FakeWindow:
        kids = children if isinstance(children, list) else [children] if children else []
        window = FakeWindow(self._manager, props, kids)
        self._manager.windows.append(window)
        return window

    def RunLoop(self) -> None:
        manager = self._manager
        began = time.monotonic()
        pending = sorted(manager.user_actions, key=lambda a: a[0])
        self._running = True
        while self._running:
            now = time.monotonic()
            if now - began > manager.max_run_s:
                raise AssertionError(f"the dialog's event loop ran past {manager.max_run_s} s")
            while pending and now - began >= pending[0][0]:
                _, action = pending.pop(0)
                action(manager.windows[-1] if manager.windows else None)
            for timer in list(manager._timers):
                if timer._props.get("_running") and now >= timer._props["_due"]:
                    if timer._props.get("SingleShot"):
                        timer.Stop()
                    else:
                        timer._props["_due"] = now + timer._props.get("Interval", 0) / 1000
                    manager._call(self.On._direct.get("Timeout"),
                                  {"who": timer._props.get("ID"), "what": "Timeout"})
            time.sleep(0.002)

    def ExitLoop(self) -> None:
        self._running = False


class FakeBmd:
    """The `bmd` module a script gets: `bmd.UIDispatcher(ui)`."""

    def UIDispatcher(self, manager: FakeUIManager) -> FakeDispatcher:
        return FakeDispatcher(manager)


class FakeFusion:
    """The `fu` object: `fu.UIManager` (Studio; absent from the free version since 19.1)."""

    def __init__(self, manager: FakeUIManager):
        self.UIManager = manager
