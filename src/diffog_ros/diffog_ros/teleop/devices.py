"""Hardware readers for teleoperation (no rclpy here): the SpaceMouse and the ALOHA leader arms.

These are the only parts that touch hardware, so they are the only parts tests replace with
doubles. Both libraries are imported lazily and fail with a message naming the fix.

* :class:`SpaceMouseReader` -- pyspacemouse 2.x, opened with ``AxisConvention.HID_Z_UP`` and
  non-blocking reads. Needs the hidapi C library and read access to the hidraw device.
* :class:`InterbotixLeaderArms` -- the leader arms (wx250s) through interbotix_xs_modules, the way
  the ALOHA stack does it: one global Interbotix node, one ``InterbotixManipulatorXS`` per arm,
  ``robot_startup``, then the configured set-up calls (by default: arm in 'pwm' mode, torque off on
  arm and gripper so the operator can move them). Joint positions are read from each arm's
  ``core.joint_states`` (kept up to date by the Interbotix node).
"""

from __future__ import annotations

import importlib
import logging
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

from diffog_ros.teleop.leader_follower import LeaderArmSpec, LeaderReading

log = logging.getLogger(__name__)

HIDAPI_FIX = (
    "the hidapi C library is missing: install it with `sudo apt-get install libhidapi-hidraw0` "
    "(Debian / Ubuntu; libhidapi-dev to build against it)"
)
UDEV_FIX = (
    "no SpaceMouse found: plug it in and give your user access to its hidraw device with a udev "
    'rule, e.g. /etc/udev/rules.d/99-spacemouse.rules containing KERNEL=="hidraw*", '
    'ATTRS{idVendor}=="256f", MODE="0666" (3Dconnexion; older models use idVendor 046d), then '
    "`sudo udevadm control --reload-rules && sudo udevadm trigger` and replug"
)


class DeviceError(RuntimeError):
    """A teleoperation device could not be opened or read (the message names the fix)."""


def explain_spacemouse_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if "HID API" in text or "hid_enumerate" in text or "hidapi" in text.lower():
        return f"{HIDAPI_FIX} ({text})"
    if "not found" in text or "No connected" in text or "Permission" in text or "denied" in text:
        return f"{UDEV_FIX} ({text})"
    return f"cannot open the SpaceMouse: {text}; check the USB connection and the udev rule"


class SpaceMouseReader:
    """Reads six axes and the buttons of a SpaceMouse through pyspacemouse 2.x."""

    def __init__(
        self,
        device: str = "",
        device_index: int = 0,
        importer: Callable[[str], Any] = importlib.import_module,
    ) -> None:
        self.device = device
        self.device_index = int(device_index)
        self._import = importer
        self._dev: Any = None

    def open(self) -> None:
        try:
            mod = self._import("pyspacemouse")
        except ImportError as exc:
            raise DeviceError(
                f"pyspacemouse is not installed ({exc}): `pip install pyspacemouse==2.1.0`"
            ) from exc
        try:
            self._dev = mod.open(
                device=self.device or None,
                device_index=self.device_index,
                nonblocking=True,
                axis_convention=mod.AxisConvention.HID_Z_UP,
            )
        except Exception as exc:  # noqa: BLE001 - pyspacemouse raises RuntimeError / ValueError / OSError
            raise DeviceError(explain_spacemouse_error(exc)) from exc

    @property
    def is_open(self) -> bool:
        return self._dev is not None

    def read(self) -> tuple[list[float], list[int]]:
        """``([x, y, z, roll, pitch, yaw], buttons)``; raises :class:`DeviceError`."""
        if self._dev is None:
            raise DeviceError("SpaceMouse is not open")
        try:
            s = self._dev.read()
        except Exception as exc:  # noqa: BLE001 - a USB fault
            self.close()
            raise DeviceError(f"SpaceMouse read failed: {exc}") from exc
        axes = [float(s.x), float(s.y), float(s.z), float(s.roll), float(s.pitch), float(s.yaw)]
        return axes, [int(b) for b in s.buttons]

    def close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None:
            try:
                dev.close()
            except Exception as exc:  # noqa: BLE001
                log.warning("closing the SpaceMouse failed: %s", exc)


def parse_setup_calls(lines: Sequence[str]) -> list[tuple[str, list[Any]]]:
    """``"robot_torque_enable group arm false"`` -> ``("robot_torque_enable", ["group", "arm",
    False])``; numbers and booleans are converted."""
    allowed = {
        "robot_set_operating_modes",
        "robot_torque_enable",
        "robot_set_motor_registers",
        "robot_reboot_motors",
    }
    calls = []
    for line in lines:
        parts = shlex.split(line)
        if not parts:
            continue
        if parts[0] not in allowed:
            raise ValueError(
                f"leader set-up call {parts[0]!r} not allowed; use one of {sorted(allowed)}"
            )
        args: list[Any] = []
        for p in parts[1:]:
            low = p.lower()
            if low in ("true", "false"):
                args.append(low == "true")
            else:
                try:
                    args.append(int(p))
                except ValueError:
                    args.append(p)
        calls.append((parts[0], args))
    return calls


class InterbotixLeaderArms:
    """The ALOHA leader arms through interbotix_xs_modules (see the module docstring)."""

    def __init__(
        self,
        arms: Sequence[LeaderArmSpec],
        robot_model: str,
        node_name: str,
        setup_calls: Sequence[tuple[str, list[Any]]],
        group_name: str = "arm",
        gripper_name: str = "gripper",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.arms = tuple(arms)
        self.robot_model = robot_model
        self.node_name = node_name
        self.setup_calls = list(setup_calls)
        self.group_name, self.gripper_name = group_name, gripper_name
        self._clock = clock
        self._robot_mod: Any = None
        self._node: Any = None
        self.bots: dict[str, Any] = {}

    def connect(self) -> None:
        from diffog_ros.robots.aloha_real import InterbotixNotInstalledError, import_interbotix

        try:
            robot_mod, arm_mod, _msgs = import_interbotix()
        except InterbotixNotInstalledError as exc:
            raise DeviceError(str(exc)) from exc
        self._robot_mod = robot_mod
        self._node = robot_mod.create_interbotix_global_node(self.node_name)
        for arm in self.arms:
            self.bots[arm.robot_name] = arm_mod.InterbotixManipulatorXS(
                robot_model=self.robot_model,
                group_name=self.group_name,
                gripper_name=self.gripper_name,
                robot_name=arm.robot_name,
                node=self._node,
                iterative_update_fk=False,
            )
        robot_mod.robot_startup(self._node)
        for arm in self.arms:
            core = self.bots[arm.robot_name].core
            for method, args in self.setup_calls:
                getattr(core, method)(*args)
        log.info("leader arms %s connected", [a.robot_name for a in self.arms])

    def read(self) -> dict[str, LeaderReading]:
        """Newest joint positions of every leader arm, by robot name."""
        out = {}
        now = self._clock()
        for name, bot in self.bots.items():
            js = bot.core.joint_states
            if js is None:
                raise DeviceError(f"no joint states from leader {name} yet")
            stamp = now
            header = getattr(js, "header", None)  # the driver's stamp tells a stale arm apart
            if header is not None and (header.stamp.sec or header.stamp.nanosec):
                stamp = header.stamp.sec + 1e-9 * header.stamp.nanosec
            out[name] = LeaderReading(
                {str(n): float(p) for n, p in zip(js.name, js.position, strict=False)}, stamp
            )
        return out

    def disconnect(self) -> None:
        if self._robot_mod is not None and self._node is not None:
            self._robot_mod.robot_shutdown(self._node)
        self._node = None
        self.bots = {}
