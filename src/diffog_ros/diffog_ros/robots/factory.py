"""Build a robot backend by name (no rclpy).

=================  ==========================================  ==========================
backend            class                                       default config
=================  ==========================================  ==========================
``aloha_sim``      :class:`~.aloha_sim.AlohaSim`               ``config/aloha_sim.yaml``
``aloha``          :class:`~.aloha_real.AlohaReal`             ``config/aloha.yaml``
``single_arm_sim`` :class:`~.single_arm.SingleArmSim`          ``config/single_arm.yaml``
``single_arm``     :class:`~.single_arm.SingleArmReal`         ``config/single_arm.yaml``
=================  ==========================================  ==========================
"""

from __future__ import annotations

from pathlib import Path

from diffog_ros.robots.config import (
    DEFAULT_CONFIGS,
    RobotConfig,
    RobotConfigError,
    default_config_for,
    load_robot_config,
)
from diffog_ros.robots.interface import Robot

BACKENDS = tuple(DEFAULT_CONFIGS)
SIM_BACKENDS = ("aloha_sim", "single_arm_sim")
EXPECTED_KIND = {
    "aloha_sim": "aloha",
    "aloha": "aloha",
    "single_arm_sim": "single_arm",
    "single_arm": "single_arm",
}


def load_backend_config(backend: str, robot_config: str | Path | None = None) -> RobotConfig:
    """The robot config for ``backend`` (``robot_config`` path/name, or the backend's default)."""
    name = robot_config or default_config_for(backend)
    config = load_robot_config(name)
    if config.kind != EXPECTED_KIND[backend]:
        raise RobotConfigError(
            f"{config.source}: kind {config.kind!r} does not fit backend {backend!r} "
            f"(needs kind {EXPECTED_KIND[backend]!r})"
        )
    return config


def make_robot(
    backend: str,
    config: RobotConfig | None = None,
    *,
    task: str = "transfer_cube",
    seed: int | None = 0,
    control_rate_hz: float | None = None,
) -> Robot:
    """An unconnected robot of ``backend`` (call ``connect()``)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    config = config or load_backend_config(backend)
    if backend == "aloha_sim":
        from diffog_ros.robots.aloha_sim import AlohaSim

        return AlohaSim(config, task=task, seed=seed, control_rate_hz=control_rate_hz)
    if backend == "aloha":
        from diffog_ros.robots.aloha_real import AlohaReal

        return AlohaReal(config)
    if backend == "single_arm_sim":
        from diffog_ros.robots.single_arm import SingleArmSim

        return SingleArmSim(config, task=task, seed=seed, control_rate_hz=control_rate_hz)
    from diffog_ros.robots.single_arm import SingleArmReal

    return SingleArmReal(config)
