"""Builds the installable Blender extension zip (`make blender-addon`).

The zip holds the add-on package (`v2a_bridge/`), the host side of the wire (`bridge/client.py`
and `bridge/wire.py`, vendored as `_bridge/` so the add-on needs nothing of this repository), and
the cp311 wheels of its only two dependencies, pyzmq and msgpack, for every platform Blender 4.2
through 5.0 runs on; `blender_manifest.toml` lists those wheels and Blender installs the right
ones when the zip is installed (Preferences ▸ Get Extensions ▸ Install from Disk).

    python -m plugins.blender.build [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ADDON = HERE / "v2a_bridge"
REPO = HERE.parents[1]
DIST = HERE / "dist"

# Pinned: the versions the add-on is tested with (the client needs nothing newer).
REQUIREMENTS = ("pyzmq==27.3.0", "msgpack==1.2.4")
PYTHON_VERSION = "3.11"  # what Blender 4.2 LTS through 5.0 bundle
# Blender platform -> pip platform tags, most specific first (pip takes any that match).
PLATFORM_TAGS = {
    "linux-x64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"),
    "macos-x64": ("macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2",
                  "macosx_10_9_universal2"),
}
VENDORED = ("client.py", "wire.py")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "wheels", "_bridge")
DEFAULT_INDEX = "https://pypi.org/simple"


class BuildError(Exception):
    """The zip could not be built; the message says why."""


class IndexUnreachable(BuildError):
    """pip could not reach the package index to download the wheels."""


def stage_addon(dest: Path) -> Path:
    """Copy the add-on package to `dest/v2a_bridge` with `bridge.client` vendored into it.
    Returns the staged package folder (importable once `dest` is on sys.path)."""
    target = Path(dest) / ADDON.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(ADDON, target, ignore=_SKIP)
    vendored = target / "_bridge"
    vendored.mkdir()
    (vendored / "__init__.py").write_text(
        '"""V2A Bridge\'s client side of the wire, copied from the repository\'s bridge/ '
        'package by plugins/blender/build.py (do not edit here)."""\n', encoding="utf-8")
    for name in VENDORED:
        source = REPO / "bridge" / name
        if not source.is_file():
            raise BuildError(f"{source} is missing: the add-on vendors it; check out the repo")
        shutil.copy2(source, vendored / name)
    return target


def download_wheels(folder: Path) -> list[str]:
    """Download the pinned wheels for every platform into `folder`; returns their file names.
    One pip per platform, all at once (each spends most of its time waiting on the index)."""
    folder.mkdir(parents=True, exist_ok=True)
    runs = {}
    for platform, tags in PLATFORM_TAGS.items():
        command = [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
            "--only-binary=:all:", "--no-deps", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "--abi", "cp311",
            *(arg for tag in tags for arg in ("--platform", tag)),
            "--dest", str(folder / platform), *REQUIREMENTS,
        ]
        runs[platform] = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    failures = []
    for platform, run in runs.items():
        out, err = run.communicate()
        if run.returncode != 0:
            failures.append((platform, (err or out).strip()[-2000:]))
    if failures:
        platform, detail = failures[0]
        index = package_index()
        if not index_reachable(index):
            raise IndexUnreachable(f"the package index {index} cannot be reached; pip said: "
                                   f"{detail}")
        raise BuildError(f"pip could not download the {platform} wheels: {detail}")
    for platform in runs:  # the same universal2 wheel may serve two platforms
        for wheel in (folder / platform).glob("*.whl"):
            wheel.replace(folder / wheel.name)
        shutil.rmtree(folder / platform)
    wheels = sorted(p.name for p in folder.glob("*.whl"))
    for requirement in REQUIREMENTS:
        name = requirement.split("==")[0]
        if not any(w.startswith(name + "-") for w in wheels):
            raise BuildError(f"no {name} wheel was downloaded")
    return wheels


def package_index() -> str:
    """The index pip downloads from: PIP_INDEX_URL, else pip's configured index-url, else PyPI."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"]
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True).stdout
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        if key.endswith("index-url") and not key.endswith("extra-index-url"):
            return value.strip().strip("'\"")
    return DEFAULT_INDEX


def index_reachable(index: str, timeout: float = 10.0) -> bool:
    """pip hides connection failures behind "no matching distribution"; ask the index itself."""
    try:
        with urllib.request.urlopen(index.rstrip("/") + "/msgpack/", timeout=timeout):
            return True
    except (urllib.error.URLError, OSError, ValueError):
        return False


def write_manifest(package: Path, wheels: list[str]) -> None:
    """Fill the manifest's `wheels` list with the bundled files."""
    manifest = package / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    listed = "wheels = [\n" + "".join(f'  "./wheels/{w}",\n' for w in wheels) + "]"
    text, count = re.subn(r"(?m)^wheels = \[[^\]]*\]", lambda _: listed, text)
    if count != 1:
        raise BuildError(f"{manifest} must have exactly one `wheels = [...]` line")
    manifest.write_text(text, encoding="utf-8")


def addon_version() -> str:
    with open(ADDON / "blender_manifest.toml", "rb") as manifest:
        return tomllib.load(manifest)["version"]


def build_zip(out_dir: Path = DIST) -> Path:
    """Build `<out_dir>/v2a_bridge-<version>.zip` (manifest at the archive's root)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"v2a_bridge-{addon_version()}.zip"
    with tempfile.TemporaryDirectory(prefix="v2a-addon-") as tmp:
        package = stage_addon(Path(tmp))
        wheels = download_wheels(package / "wheels")
        write_manifest(package, wheels)
        partial = archive.with_suffix(".zip.partial")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(package.rglob("*")):
                if path.is_file():
                    zf.write(path, path.relative_to(package).as_posix())
        partial.replace(archive)
    return archive


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DIST, help=f"output folder (default {DIST})")
    args = parser.parse_args(argv)
    try:
        archive = build_zip(args.out)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"built {archive}")
    print("install: Blender ▸ Edit ▸ Preferences ▸ Get Extensions ▸ ⌄ ▸ Install from Disk…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
