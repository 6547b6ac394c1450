"""Default parameter files for nodes that must run with no configuration (no rclpy needed).

``recorder_node`` with no arguments records the ALOHA layout: when the command line names no
``--params-file``, :func:`with_default_params_file` puts the node's default file from the
package's ``config/`` first (``--ros-args --params-file <share>/config/<file> --``), so explicit
``-p name:=value`` overrides given afterwards win over it. Passing any ``--params-file`` replaces
the default file entirely.
"""

from __future__ import annotations

import logging
import sys

from diffog_ros.paths import config_path

log = logging.getLogger(__name__)


def with_default_params_file(args: list[str] | None, filename: str) -> list[str]:
    """``args`` (default ``sys.argv``) plus the default params file unless one is given."""
    argv = list(sys.argv if args is None else args)
    if "--params-file" in argv:
        return argv
    try:
        path = config_path(filename)
    except FileNotFoundError as exc:
        log.warning("default parameter file not found (%s); using built-in defaults", exc)
        return argv
    return [*argv[:1], "--ros-args", "--params-file", str(path), "--", *argv[1:]]
