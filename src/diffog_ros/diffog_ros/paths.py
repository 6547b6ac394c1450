"""Locate the package's share directory (config/, launch/, models/) at run time.

Looked up in this order:

1. ``DIFFOG_ROS_SHARE`` (explicit override);
2. the ament index (a sourced colcon workspace or ``/opt/ros/<distro>``); a missing or unset
   ``AMENT_PREFIX_PATH`` is not an error, the next places are tried;
3. the install prefix this module was installed into (``<prefix>/lib/pythonX.Y/site-packages/
   diffog_ros/paths.py`` -> ``<prefix>/share/diffog_ros``): a colcon install whose setup script
   was not sourced, or a ``pip install`` (wheel) into a venv or ``--prefix``;
4. the source checkout holding this file (editable ``pip install -e``, as ``make setup`` does):
   the repository root, whose top-level ``config/``, ``launch/`` and ``models/`` are the originals;
5. ``sys.prefix/share/diffog_ros``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "diffog_ros"
_HERE = Path(__file__).resolve()
# src/diffog_ros/diffog_ros/paths.py -> repository root (only meaningful in a source checkout).
_REPO_ROOT = _HERE.parents[3]
# <prefix>/lib/pythonX.Y/site-packages/diffog_ros/paths.py -> <prefix>
_INSTALL_PREFIX = _HERE.parents[4] if len(_HERE.parents) > 4 else None


def _from_ament_index() -> Path | None:
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE))
    except (LookupError, ValueError, OSError):
        # PackageNotFoundError is a KeyError; an unset AMENT_PREFIX_PATH raises EnvironmentError.
        return None


def _is_share(path: Path) -> bool:
    return (path / "package.xml").is_file()


def _is_source_checkout(root: Path) -> bool:
    return (root / "src" / PACKAGE / "package.xml").is_file() and (root / "config").is_dir()


def share_dir() -> Path:
    """Return the directory holding ``config/``, ``launch/`` and ``models/``."""
    env = os.environ.get("DIFFOG_ROS_SHARE")
    if env:
        return Path(env)
    found = _from_ament_index()
    if found is not None:
        return found
    if _INSTALL_PREFIX is not None and _is_share(_INSTALL_PREFIX / "share" / PACKAGE):
        return _INSTALL_PREFIX / "share" / PACKAGE
    if _is_source_checkout(_REPO_ROOT):
        return _REPO_ROOT
    if _is_share(Path(sys.prefix) / "share" / PACKAGE):
        return Path(sys.prefix) / "share" / PACKAGE
    raise FileNotFoundError(
        f"cannot find the {PACKAGE} share directory (config/, launch/, models/): "
        "build with colcon, pip install the package, or set DIFFOG_ROS_SHARE"
    )


def config_path(name: str) -> Path:
    """Path of ``config/<name>`` (``name`` may omit the ``.yaml`` suffix)."""
    p = share_dir() / "config" / name
    if not p.suffix:
        p = p.with_suffix(".yaml")
    if not p.is_file():
        raise FileNotFoundError(f"config file not found: {p}")
    return p


def models_dir() -> Path:
    """Directory of the shipped models (safetensors + JSON)."""
    return share_dir() / "models"
