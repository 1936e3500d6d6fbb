"""`make blender-addon`: the installable zip, checked with Blender's own extension tools.

The wheel download needs the package index; when pip cannot reach it the zip tests are skipped
with that reason (everything else about the add-on is tested in test_blender_addon.py).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from plugins.blender import build

HOST_SIDE = {"bpy", "addon_utils", "zmq", "msgpack"}
HEAVY = ("torch", "av", "opentimelineio", "pydantic", "numpy", "daemon", "schemas")


def _blender_ext_cli() -> Path:
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the bpy wheel is not installed")
    root = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    assert found, f"Blender's extension command line is missing under {root}"
    return found[-1]


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory) -> Path:
    try:
        return build.build_zip(tmp_path_factory.mktemp("dist"))
    except build.IndexUnreachable as exc:
        pytest.skip(f"the package index is unreachable, so the wheels cannot be bundled: {exc}")


def test_staged_addon_vendors_the_client_and_imports_nothing_heavy(tmp_path):
    package = build.stage_addon(tmp_path)
    vendored = package / "_bridge"
    for name in ("client.py", "wire.py"):
        assert (vendored / name).read_bytes() == (build.REPO / "bridge" / name).read_bytes()
    assert not (package / "wheels").exists()
    stdlib = sys.stdlib_module_names
    for source in package.rglob("*.py"):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in HOST_SIDE, f"{source.name} imports {name}"


def test_zip_has_manifest_code_client_and_wheels_for_every_platform(addon_zip):
    with zipfile.ZipFile(addon_zip) as zf:
        names = set(zf.namelist())
        manifest = tomllib.loads(zf.read("blender_manifest.toml").decode())
    assert {"__init__.py", "_bridge/client.py", "_bridge/wire.py", "session.py"} <= names
    assert manifest["schema_version"] == "1.0.0"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["type"] == "add-on"
    assert "ZeroMQ" in manifest["permissions"]["network"]
    wheels = [w.removeprefix("./") for w in manifest["wheels"]]
    assert wheels and set(wheels) == {n for n in names if n.endswith(".whl")}
    for package in ("pyzmq", "msgpack"):
        tags = [Path(w).name for w in wheels if Path(w).name.startswith(package + "-")]
        assert tags, f"no {package} wheel in the zip"
        assert all("-cp311-" in w for w in tags)
        assert any("manylinux" in w and "x86_64" in w for w in tags), (package, tags)
        assert any(w.endswith("win_amd64.whl") for w in tags), (package, tags)
        assert any("arm64" in w or "universal2" in w for w in tags if "macosx" in w), tags
        assert any("x86_64" in w or "universal2" in w for w in tags if "macosx" in w), tags


def test_blender_validates_the_zip(addon_zip):
    done = subprocess.run(
        [sys.executable, str(_blender_ext_cli()), "validate", str(addon_zip)],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


INSTALL_AND_ENABLE = """
import json, sys
import bpy
before = set(sys.modules)
result = bpy.ops.extensions.package_install_files(
    filepath=sys.argv[1], repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.v2a_bridge"
prefs = bpy.context.preferences.addons[module].preferences
print(json.dumps({
    "result": sorted(result),
    "enabled": module in bpy.context.preferences.addons,
    "operators": [hasattr(bpy.types, n) for n in
                  ("SEQUENCER_OT_v2a_generate", "SEQUENCER_OT_v2a_cancel",
                   "SEQUENCER_OT_v2a_connect", "SEQUENCER_PT_v2a")],
    "endpoint": prefs.endpoint,
    "heavy": [m for m in %r if m in set(sys.modules) - before],
}))
"""


def test_blender_installs_and_enables_the_zip(addon_zip, tmp_path):
    script = INSTALL_AND_ENABLE % (HEAVY,)
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender-user"))
    done = subprocess.run([sys.executable, "-c", script, str(addon_zip)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["result"] == ["FINISHED"] and report["enabled"]
    assert all(report["operators"])
    assert report["endpoint"] == "tcp://127.0.0.1:5755"
    assert report["heavy"] == [], "the add-on pulled heavy modules into Blender"
