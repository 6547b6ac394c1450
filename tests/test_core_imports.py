"""Core packages import without ROS: every module under trajopt, learning, robots and data.

Each check runs in a fresh interpreter where ``sys.modules[name] = None`` blocks the ROS Python
packages before anything else is imported, so a module that needs one fails with ImportError.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG_DIR = ROOT / "src" / "diffog_ros" / "diffog_ros"
CORE = ("trajopt", "learning", "robots", "data")

# ROS client library and interface packages: none may be needed by the core.
ROS_PACKAGES = (
    "rclpy",
    "rcl_interfaces",
    "builtin_interfaces",
    "std_msgs",
    "sensor_msgs",
    "geometry_msgs",
    "trajectory_msgs",
    "diagnostic_msgs",
    "std_srvs",
    "launch",
    "launch_ros",
)

_PROBE = r"""
import importlib, json, pkgutil, sys
blocked, core, pkg_dir = json.loads(sys.argv[1])
for name in blocked:
    sys.modules[name] = None
result = {"blocked_ok": [], "modules": [], "failures": {}}
for name in blocked:
    try:
        importlib.import_module(name)
    except ImportError:
        result["blocked_ok"].append(name)

def walk(package, path):
    yield package
    for info in pkgutil.iter_modules([path]):
        full = package + "." + info.name
        if info.ispkg:
            yield from walk(full, path + "/" + info.name)
        else:
            yield full

for sub in core:
    for mod in walk("diffog_ros." + sub, pkg_dir + "/" + sub):
        result["modules"].append(mod)
        try:
            importlib.import_module(mod)
        except BaseException as exc:
            needs, seen, e = [], set(), exc
            while e is not None and id(e) not in seen:
                seen.add(id(e))
                top = (getattr(e, "name", None) or "").split(".")[0]
                if isinstance(e, ImportError) and top in blocked and top not in needs:
                    needs.append(top)
                e = e.__cause__ or e.__context__
            result["failures"][mod] = {
                "error": type(exc).__name__ + ": " + str(exc),
                "needs": needs,
            }
print("RESULT " + json.dumps(result))
"""


def _probe(blocked: tuple[str, ...]) -> dict:
    # -I is not used: the venv's editable install must stay importable. cwd="/" keeps the
    # repository's tests/ and any local module shadows off sys.path.
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps([list(blocked), list(CORE), str(PKG_DIR)])],
        capture_output=True,
        text=True,
        timeout=300,
        cwd="/",
    )
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, f"probe crashed (rc={proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(line[len("RESULT ") :])


def _report(failures: dict) -> str:
    lines = []
    for mod, info in sorted(failures.items()):
        why = f" (needs {', '.join(info['needs'])})" if info["needs"] else ""
        lines.append(f"  {mod}{why}: {info['error']}")
    return "\n".join(lines)


def _check(result: dict, blocked: tuple[str, ...]) -> None:
    assert result["blocked_ok"] == list(blocked), "the import blocker did not take effect"
    modules = result["modules"]
    # Not vacuous: the walk found the trajectory-optimisation core and its submodules.
    assert "diffog_ros.trajopt" in modules
    assert any(m.startswith("diffog_ros.trajopt.") for m in modules), modules
    for sub in CORE:
        assert f"diffog_ros.{sub}" in modules
    assert not result["failures"], "core modules fail to import without ROS:\n" + _report(
        result["failures"]
    )


def test_core_imports_without_rclpy():
    _check(_probe(("rclpy",)), ("rclpy",))


@pytest.mark.slow
def test_core_imports_without_any_ros_package():
    _check(_probe(ROS_PACKAGES), ROS_PACKAGES)


def test_probe_detects_a_module_needing_rclpy(tmp_path):
    """The probe itself catches a core-style module that imports rclpy (guards the guard)."""
    pkg = tmp_path / "fakecore"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "clean.py").write_text("import json\n")
    (pkg / "bad.py").write_text("import rclpy.node\n")
    probe = _PROBE.replace('"diffog_ros." + sub', "sub")
    proc = subprocess.run(
        [sys.executable, "-c", probe, json.dumps([["rclpy"], ["fakecore"], str(tmp_path)])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    assert sorted(result["modules"]) == ["fakecore", "fakecore.bad", "fakecore.clean"]
    assert list(result["failures"]) == ["fakecore.bad"]
    assert result["failures"]["fakecore.bad"]["needs"] == ["rclpy"]
