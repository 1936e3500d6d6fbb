"""V2A Generate — DaVinci Resolve, Workspace ▸ Scripts ▸ Edit ▸ V2A Generate.

Generates synchronized sound for the current timeline with the local V2A daemon and places it on
new audio tracks. This file only finds the `v2a_resolve` module and hands it Resolve's objects;
`v2a install-resolve` copies it into Resolve's Scripts/Edit folder and fills in V2A_LIBRARY.
Resolve's Python needs pyzmq and msgpack: `python3 -m pip install pyzmq msgpack` for the Python
that Resolve uses.
"""

import os
import sys

V2A_LIBRARY = ""  # filled in by `v2a install-resolve`: the folder holding v2a_resolve + bridge
V2A_SETTINGS = ""  # filled in by `v2a install-resolve`: V2A Generate.json beside this script


def _script_dir():
    # Resolve runs menu scripts with __file__ set; the installer's paths are the fallback.
    here = globals().get("__file__")
    return os.path.dirname(os.path.abspath(here)) if here else None


def _library_paths():
    if V2A_LIBRARY:
        return [V2A_LIBRARY]
    here = _script_dir() or ""
    # Run from a checkout: v2a_resolve sits beside this file, bridge/ two folders up.
    return [here, os.path.dirname(os.path.dirname(here))]


def _resolve_objects():
    found = globals()
    resolve = found.get("resolve")
    if resolve is None:
        # Run from outside Resolve (external scripting): Resolve's own module connects.
        import DaVinciResolveScript  # only where Resolve is installed

        resolve = DaVinciResolveScript.scriptapp("Resolve")
    fu = found.get("fu") or (resolve.Fusion() if resolve is not None else None)
    return resolve, fu, found.get("bmd")


def main():
    for path in reversed(_library_paths()):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    try:
        from v2a_resolve import run_from_menu
    except ImportError as exc:
        print(f"V2A: cannot load the V2A module ({exc}). Run `v2a install-resolve` again, and "
              "install pyzmq and msgpack for Resolve's Python: python3 -m pip install pyzmq "
              "msgpack")
        return None
    settings = V2A_SETTINGS or os.path.join(_script_dir() or "", "V2A Generate.json")
    resolve, fu, bmd = _resolve_objects()
    return run_from_menu(resolve, fu=fu, bmd=bmd, settings_path=settings)


# Resolve runs the file top to bottom; there is no __main__ convention to rely on.
main()
