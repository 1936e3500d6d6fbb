"""V2A Bridge for Blender's Video Sequence Editor: generate synchronized sound for movie and
image-sequence strips with a local V2A daemon, from the Sequencer's sidebar (tab "V2A"), without
freezing Blender.

The add-on only describes the edit (OTIO text), talks to the daemon through the vendored
`bridge.client` (pyzmq + msgpack) and places the returned WAVs as sound strips. No model, torch
or OpenTimelineIO code runs inside Blender.
"""

from . import operators, panel, properties, session

_MODULES = (properties, operators, panel)


def register() -> None:
    for module in _MODULES:
        module.register()


def unregister() -> None:
    session.stop_timer()
    session.RUNNER.close()
    for module in reversed(_MODULES):
        module.unregister()
