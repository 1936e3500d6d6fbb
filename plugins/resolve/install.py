"""`v2a install-resolve`: puts V2A Generate into DaVinci Resolve's Workspace ▸ Scripts ▸ Edit menu.

Into a Fusion folder (per user by default) it writes:
- ``Scripts/Edit/V2A Generate.py``: the launcher, with the library's path filled in;
- ``Scripts/Edit/V2A Generate.json``: the settings used where Resolve has no dialog (kept if it
  exists, so an editor's settings survive a reinstall);
- ``V2A/``: the `v2a_resolve` module and the vendored `bridge` client (client.py, wire.py), outside
  ``Scripts/`` because every .py under a Scripts folder would show up as a menu entry.

Resolve's Python then needs pyzmq and msgpack (``python3 -m pip install pyzmq msgpack``).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAUNCHER = "V2A Generate.py"
SETTINGS = "V2A Generate.json"
LIBRARY = "V2A"
BRIDGE_FILES = ("client.py", "wire.py")
_MARKER = "v2a_resolve"  # a library folder we may replace holds this package


class InstallError(Exception):
    """The scripts could not be installed; the message says why and what to do."""


@dataclass
class Installed:
    launcher: Path
    settings: Path
    library: Path

    def describe(self) -> str:
        return (f"Installed V2A Generate for DaVinci Resolve:\n"
                f"  menu script: {self.launcher}\n"
                f"  settings:    {self.settings}\n"
                f"  library:     {self.library}\n"
                "In Resolve: Workspace ▸ Scripts ▸ Edit ▸ V2A Generate (restart Resolve if the "
                "menu does not show it).\n"
                "Resolve's Python needs pyzmq and msgpack: python3 -m pip install pyzmq msgpack")


def fusion_folder(platform: str = sys.platform, env=None, home: Path | None = None,
                  all_users: bool = False) -> Path:
    """Resolve's Fusion folder, whose Scripts/Edit holds Edit-page scripts."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if platform == "darwin":
        base = Path("/Library") if all_users else home / "Library"
        return base / "Application Support" / "Blackmagic Design" / "DaVinci Resolve" / "Fusion"
    if platform.startswith("win"):
        if all_users:
            root = env.get("PROGRAMDATA") or r"C:\ProgramData"
            return Path(root) / "Blackmagic Design" / "DaVinci Resolve" / "Fusion"
        root = env.get("APPDATA") or str(home / "AppData" / "Roaming")
        return Path(root) / "Blackmagic Design" / "DaVinci Resolve" / "Support" / "Fusion"
    if all_users:
        return Path("/opt/resolve/Fusion")
    return home / ".local" / "share" / "DaVinciResolve" / "Fusion"


def install_resolve(target: Path) -> Installed:
    """Installs into the Fusion folder `target` (created if missing)."""
    target = Path(target)
    edit = target / "Scripts" / "Edit"
    library = target / LIBRARY
    sources = [REPO / "bridge" / name for name in BRIDGE_FILES] + [HERE / LAUNCHER]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise InstallError(f"Files to install are missing from {REPO}: {', '.join(missing)}. "
                           "Run `v2a install-resolve` from a complete V2A Bridge checkout.")
    if library.exists() and not (library / _MARKER).is_dir() and any(library.iterdir()):
        raise InstallError(f"{library} exists and is not a V2A library; move it away and run "
                           "`v2a install-resolve` again.")
    try:
        edit.mkdir(parents=True, exist_ok=True)
        staging = target / (LIBRARY + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(HERE / "v2a_resolve", staging / "v2a_resolve",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        (staging / "bridge").mkdir()
        for name in BRIDGE_FILES:
            shutil.copy2(REPO / "bridge" / name, staging / "bridge" / name)
        (staging / "bridge" / "__init__.py").write_text(
            '"""V2A Bridge client, vendored for DaVinci Resolve by `v2a install-resolve`."""\n',
            encoding="utf-8")
        # Swap the whole library at once so an upgrade leaves no stale modules behind.
        shutil.rmtree(library, ignore_errors=True)
        staging.rename(library)
        launcher = edit / LAUNCHER
        launcher.write_text(_launcher_text(library, edit / SETTINGS), encoding="utf-8")
        settings = edit / SETTINGS
        if not settings.exists():
            shutil.copy2(HERE / SETTINGS, settings)
    except OSError as exc:
        raise InstallError(f"Could not write into {target}: {exc}. Check that the folder is "
                           "writable (for all users, run as an administrator).") from exc
    return Installed(launcher, settings, library)


def _launcher_text(library: Path, settings: Path) -> str:
    text = (HERE / LAUNCHER).read_text(encoding="utf-8")
    for name, value in (("V2A_LIBRARY", library), ("V2A_SETTINGS", settings)):
        line = f'{name} = ""'
        if line not in text:
            raise InstallError(f"The launcher template has no `{line}` line to fill in.")
        text = text.replace(line, f"{name} = {str(value)!r}", 1)
    return text


def run(target: Path | None = None, all_users: bool = False) -> int:
    """What `v2a install-resolve [--target DIR] [--all-users]` does; returns the exit status."""
    target = Path(target) if target else fusion_folder(all_users=all_users)
    try:
        installed = install_resolve(target)
    except InstallError as exc:
        print(f"v2a install-resolve: {exc}", file=sys.stderr)
        return 1
    print(installed.describe())
    return 0
