"""Simulated bimanual ALOHA: gym_aloha's MuJoCo model, stepped directly at the control rate.

No gymnasium wrapper and no rendering on the control path: :meth:`AlohaSim.send_command` writes the
position-actuator targets and advances the physics by one control period (``dt / timestep``
substeps, 10 x 0.002 s at 50 Hz). Cameras (ALOHA names ``cam_high``, ``cam_low``,
``cam_left_wrist``, ``cam_right_wrist`` mapped to model cameras in config) are rendered only when
:meth:`AlohaSim.render` is called, from any one thread other than the control loop, with one cached
``mujoco.Renderer`` per image size and thread (``MUJOCO_GL=egl``).

Action -> ``ctrl`` mapping (constants in ``config/aloha_sim.yaml`` ``sim:``):

* arm joint ``a_j`` (rad) -> the position actuator of the mapped model joint;
* gripper ``g`` (0 closed .. 1 open) -> finger position ``x = close + g (open - close)`` (m) and
  ``ctrl[finger_i] = sign_i * x`` for its two finger actuators (the model mirrors the fingers).

The state reports arm ``qpos`` / ``qvel`` / actuator force, and the first finger normalised the same
way (``(x - close) / (open - close)``), as ALOHA's observation does.

Tasks ``transfer_cube`` and ``insertion``: objects reset uniformly inside config boxes from the
reset seed; :meth:`reward` reproduces the tasks' 0..4 contact-stage reward (4 = success) and
:meth:`object_state` gives every object's pose.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from diffog_ros.robots.config import RobotConfig, RobotConfigError
from diffog_ros.robots.interface import Robot, RobotNotConnectedError, RobotState
from diffog_ros.robots.kinematics import ArmKinematics

_log = logging.getLogger(__name__)

TASKS = ("transfer_cube", "insertion")

_ACTIVE_LOCK = threading.Lock()
_ACTIVE: AlohaSim | None = None


def active_sim() -> AlohaSim | None:
    """The connected :class:`AlohaSim` of this process (the one a controller drives), or None.

    A camera publisher running in the same process renders through it.
    """
    with _ACTIVE_LOCK:
        return _ACTIVE


def assets_dir(package: str) -> Path:
    """The ``assets/`` folder of an installed Python package, located without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RobotConfigError(
            f"package {package!r} holding the MuJoCo assets is not installed (pip install gym-aloha)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "assets"
    if not path.is_dir():
        raise RobotConfigError(f"{package!r} has no assets/ folder at {path}")
    return path


# ----------------------------------------------------------------------------- config parsing


@dataclass(frozen=True)
class ObjectSpec:
    name: str
    joint: str
    low: np.ndarray
    high: np.ndarray
    quat: np.ndarray


@dataclass(frozen=True)
class GripperSpec:
    fingers: tuple[str, ...]
    signs: tuple[float, ...]


@dataclass(frozen=True)
class SimSpec:
    assets: Path
    model_file: Path
    timestep: float
    initial_pose: str
    joint_map: Mapping[str, str]
    grippers: Mapping[str, GripperSpec]
    position_open: float
    position_close: float
    cameras: Mapping[str, str]
    objects: tuple[ObjectSpec, ...]
    reward: Mapping[str, Any]
    render_shadows: bool = True


def _need(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise RobotConfigError(f"{where}.{key}: required key is missing")
    return mapping[key]


def _float(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RobotConfigError(f"{where}: must be a finite number, got {value!r}")
    return float(value)


def _vec(value: Any, n: int, where: str) -> np.ndarray:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise RobotConfigError(f"{where}: must be a list of {n} numbers, got {value!r}")
    return np.array([_float(v, f"{where}[{i}]") for i, v in enumerate(value)])


def parse_sim_spec(config: RobotConfig, task: str) -> SimSpec:
    """Validate the ``sim:`` section of ``config`` for ``task``."""
    src = config.source
    sim = config.section("sim")
    where = f"{src}: sim"
    tasks = _need(sim, "tasks", where)
    if task not in tasks:
        raise RobotConfigError(f"{where}.tasks: unknown task {task!r}; known: {sorted(tasks)}")
    tspec = tasks[task]
    twhere = f"{where}.tasks.{task}"
    assets = assets_dir(str(_need(sim, "assets_package", where)))
    model_file = assets / str(_need(tspec, "model", twhere))
    if not model_file.is_file():
        raise RobotConfigError(f"{twhere}.model: {model_file} does not exist")
    timestep = _float(_need(sim, "timestep", where), f"{where}.timestep")
    initial = sim.get("initial_pose", "start")
    if initial not in ("start", "sleep"):
        raise RobotConfigError(f"{where}.initial_pose: must be 'start' or 'sleep', got {initial!r}")
    joint_map = dict(_need(sim, "joint_map", where))
    grippers = {}
    for name, g in dict(_need(sim, "grippers", where)).items():
        fingers = tuple(str(f) for f in _need(g, "fingers", f"{where}.grippers.{name}"))
        signs = tuple(
            _float(s, f"{where}.grippers.{name}.signs")
            for s in _need(g, "signs", f"{where}.grippers.{name}")
        )
        if not fingers or len(fingers) != len(signs) or any(s not in (1.0, -1.0) for s in signs):
            raise RobotConfigError(
                f"{where}.grippers.{name}: fingers and signs (+-1) must be equal-length, non-empty"
            )
        grippers[name] = GripperSpec(fingers, signs)
    names = set(config.names)
    covered = list(joint_map) + list(grippers)
    missing = sorted(names - set(covered))
    extra = sorted(set(covered) - names)
    dupes = sorted({n for n in covered if covered.count(n) > 1})
    if missing or extra or dupes:
        raise RobotConfigError(
            f"{where}: joint_map + grippers must cover each joint exactly once "
            f"(missing {missing}, unknown {extra}, duplicated {dupes})"
        )
    for name in grippers:
        if config.joints[config.index(name)].unit != "normalized":
            raise RobotConfigError(f"{src}: gripper joint {name!r} must have unit 'normalized'")
    p_open = _float(_need(sim, "gripper_position_open", where), f"{where}.gripper_position_open")
    p_close = _float(_need(sim, "gripper_position_close", where), f"{where}.gripper_position_close")
    if p_open == p_close:
        raise RobotConfigError(f"{where}: gripper_position_open must differ from _close")
    cameras = {str(k): str(v) for k, v in dict(sim.get("cameras", {}) or {}).items()}
    shadows = sim.get("render_shadows", True)
    if not isinstance(shadows, bool):
        raise RobotConfigError(f"{where}.render_shadows: must be true or false, got {shadows!r}")
    objects = []
    for oname, o in dict(tspec.get("objects", {}) or {}).items():
        ow = f"{twhere}.objects.{oname}"
        low, high = (
            _vec(_need(o, "low", ow), 3, f"{ow}.low"),
            _vec(_need(o, "high", ow), 3, f"{ow}.high"),
        )
        if np.any(low > high):
            raise RobotConfigError(f"{ow}: low must be <= high")
        quat = _vec(o.get("quat", [1.0, 0.0, 0.0, 0.0]), 4, f"{ow}.quat")
        objects.append(
            ObjectSpec(
                str(oname), str(_need(o, "joint", ow)), low, high, quat / np.linalg.norm(quat)
            )
        )
    reward = dict(tspec.get("reward", {}) or {})
    if reward and reward.get("type") != task:
        raise RobotConfigError(f"{twhere}.reward.type must be {task!r}, got {reward.get('type')!r}")
    return SimSpec(
        assets=assets,
        model_file=model_file,
        timestep=timestep,
        initial_pose=initial,
        joint_map=joint_map,
        grippers=grippers,
        position_open=p_open,
        position_close=p_close,
        cameras=cameras,
        objects=tuple(objects),
        reward=reward,
        render_shadows=shadows,
    )


# ----------------------------------------------------------------------------- the simulator


class AlohaSim(Robot):
    """Bimanual ALOHA in MuJoCo, joint-space position control (see module docstring).

    Thread safety: physics stepping, state reads, resets and the scene capture of :meth:`render`
    share one lock; the (slow) rasterisation happens outside it, so rendering in a camera thread
    does not stall the control loop.
    """

    def __init__(
        self,
        config: RobotConfig,
        task: str = "transfer_cube",
        seed: int | None = 0,
        control_rate_hz: float | None = None,
    ) -> None:
        super().__init__(config)
        if task not in TASKS:
            raise ValueError(f"unknown sim task {task!r}; expected one of {TASKS}")
        self.task = task
        self.seed = seed
        rate = float(control_rate_hz or config.control_rate_hz)
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"control_rate_hz must be > 0, got {rate!r}")
        self.spec = parse_sim_spec(config, task)
        substeps = (1.0 / rate) / self.spec.timestep
        if abs(substeps - round(substeps)) > 1e-6 or round(substeps) < 1:
            raise ValueError(
                f"control period 1/{rate} s is not a whole number of physics steps "
                f"({self.spec.timestep} s)"
            )
        self.substeps = int(round(substeps))
        self.dt = self.substeps * self.spec.timestep
        self._lock = threading.RLock()
        self._tls = threading.local()
        self._model: mujoco.MjModel | None = None
        self._data: mujoco.MjData | None = None
        self._resets = 0

    # ------------------------------------------------------------------ properties
    @property
    def lock(self) -> threading.RLock:
        """The physics lock (hold it when touching :attr:`model` / :attr:`data` directly)."""
        return self._lock

    @property
    def model(self) -> mujoco.MjModel:
        if self._model is None:
            raise RobotNotConnectedError("AlohaSim.connect() has not been called")
        return self._model

    @property
    def data(self) -> mujoco.MjData:
        if self._data is None:
            raise RobotNotConnectedError("AlohaSim.connect() has not been called")
        return self._data

    @property
    def sim_time(self) -> float:
        with self._lock:
            return float(self.data.time)

    @property
    def camera_names(self) -> tuple[str, ...]:
        """The ALOHA camera names this model provides (config ``sim.cameras`` keys)."""
        return tuple(self.spec.cameras)

    @property
    def max_reward(self) -> int:
        return 4

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> None:
        global _ACTIVE
        if self._connected:
            return
        model = mujoco.MjModel.from_xml_path(str(self.spec.model_file))
        if abs(model.opt.timestep - self.spec.timestep) > 1e-12:
            raise RobotConfigError(
                f"{self.config.source}: sim.timestep {self.spec.timestep} differs from the model's "
                f"{model.opt.timestep} ({self.spec.model_file.name})"
            )
        self._model = model
        self._data = mujoco.MjData(model)
        self._build_maps()
        self._connected = True
        self.reset(self.seed)
        with _ACTIVE_LOCK:
            _ACTIVE = self
        _log.info(
            "aloha_sim: %s task %s, %d substeps of %.4f s per tick",
            self.spec.model_file.name,
            self.task,
            self.substeps,
            self.spec.timestep,
        )

    def disconnect(self) -> None:
        global _ACTIVE
        with _ACTIVE_LOCK:
            if _ACTIVE is self:
                _ACTIVE = None
        self.close_renderers()
        self._connected = False

    # ------------------------------------------------------------------ model maps
    def _joint_id(self, name: str) -> int:
        j = mujoco.mj_name2id(self._model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if j < 0:
            raise RobotConfigError(f"{self.config.source}: model has no joint {name!r}")
        return j

    def _actuator_for(self, joint: int) -> int:
        m = self._model
        for a in range(m.nu):
            if int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT) and int(
                m.actuator_trnid[a, 0]
            ) == int(joint):
                if int(m.actuator_biastype[a]) != int(mujoco.mjtBias.mjBIAS_AFFINE):
                    raise RobotConfigError(
                        f"actuator of joint {m.joint(joint).name!r} is not a position actuator"
                    )
                return a
        raise RobotConfigError(f"model has no actuator driving joint {m.joint(joint).name!r}")

    def _build_maps(self) -> None:
        m = self._model
        n = self.dof
        self._qadr = np.zeros(n, dtype=int)  # qpos address of the reported joint
        self._vadr = np.zeros(n, dtype=int)
        self._sign = np.ones(n)  # sign of the reported (first) finger
        self._is_gripper = np.zeros(n, dtype=bool)
        self._ctrl_rows: list[tuple[int, int, float]] = []  # (actuator, joint index, sign)
        self._state_act = np.zeros(n, dtype=int)
        for i, name in enumerate(self.names):
            if name in self.spec.joint_map:
                j = self._joint_id(self.spec.joint_map[name])
                a = self._actuator_for(j)
                self._ctrl_rows.append((a, i, 1.0))
                self._qadr[i], self._vadr[i] = m.jnt_qposadr[j], m.jnt_dofadr[j]
                self._state_act[i] = a
            else:
                g = self.spec.grippers[name]
                self._is_gripper[i] = True
                for k, (finger, sign) in enumerate(zip(g.fingers, g.signs, strict=True)):
                    j = self._joint_id(finger)
                    a = self._actuator_for(j)
                    self._ctrl_rows.append((a, i, sign))
                    if k == 0:
                        self._qadr[i], self._vadr[i] = m.jnt_qposadr[j], m.jnt_dofadr[j]
                        self._sign[i], self._state_act[i] = sign, a
        self._ctrl_act = np.array([r[0] for r in self._ctrl_rows], dtype=int)
        self._ctrl_src = np.array([r[1] for r in self._ctrl_rows], dtype=int)
        self._ctrl_sign = np.array([r[2] for r in self._ctrl_rows])
        self._cam_ids = {}
        for logical, cam in self.spec.cameras.items():
            cid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, cam)
            if cid < 0:
                raise RobotConfigError(
                    f"{self.config.source}: sim.cameras.{logical}: model has no camera {cam!r}"
                )
            self._cam_ids[logical] = cid
        self._objects = []
        for o in self.spec.objects:
            j = self._joint_id(o.joint)
            if int(m.jnt_type[j]) != int(mujoco.mjtJoint.mjJNT_FREE):
                raise RobotConfigError(f"object joint {o.joint!r} is not a free joint")
            self._objects.append((o, int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j])))
        self._geom_names = {i: m.geom(i).name for i in range(m.ngeom)}

    # ------------------------------------------------------------------ conversions
    def _span(self) -> float:
        return self.spec.position_open - self.spec.position_close

    def gripper_to_position(self, g: np.ndarray | float) -> np.ndarray | float:
        """Normalised gripper -> finger position (m)."""
        return self.spec.position_close + np.asarray(g) * self._span()

    def action_to_ctrl(self, q: np.ndarray) -> np.ndarray:
        """Actuator targets (``len(ctrl_actuators)``) for a command in action units."""
        v = np.asarray(q, dtype=np.float64).copy()
        v[self._is_gripper] = self.gripper_to_position(v[self._is_gripper])
        return v[self._ctrl_src] * self._ctrl_sign

    @property
    def ctrl_actuators(self) -> np.ndarray:
        """Model actuator indices written by :meth:`action_to_ctrl` (in its output order)."""
        return self._ctrl_act.copy()

    # ------------------------------------------------------------------ robot API
    def reset(self, seed: int | None = None) -> RobotState:
        """Reset arms to the configured initial pose and objects from ``seed`` (physics time 0)."""
        if not self._connected:
            raise RobotNotConnectedError("AlohaSim.connect() has not been called")
        pose = (
            self.config.start_pose if self.spec.initial_pose == "start" else self.config.sleep_pose
        )
        rng = np.random.default_rng(seed)
        with self._lock:
            m, d = self._model, self._data
            mujoco.mj_resetData(m, d)
            ctrl = self.action_to_ctrl(pose)
            d.ctrl[self._ctrl_act] = ctrl
            # joint positions equal to the actuator targets: start at rest
            for (a, _i, _s), c in zip(self._ctrl_rows, ctrl, strict=True):
                j = int(m.actuator_trnid[a, 0])
                lo, hi = m.jnt_range[j] if m.jnt_limited[j] else (-np.inf, np.inf)
                d.qpos[m.jnt_qposadr[j]] = min(max(c, lo), hi)
            for o, qadr, _vadr in self._objects:
                d.qpos[qadr : qadr + 3] = rng.uniform(o.low, o.high)
                d.qpos[qadr + 3 : qadr + 7] = o.quat
            mujoco.mj_forward(m, d)
            self._last_command = np.clip(
                np.asarray(pose, dtype=np.float64), self._lower, self._upper
            )
            self.seed = seed
            self._resets += 1
        return self.read_state()

    def _send(self, command: np.ndarray) -> None:
        ctrl = self.action_to_ctrl(command)
        with self._lock:
            self._data.ctrl[self._ctrl_act] = ctrl
            mujoco.mj_step(self._model, self._data, self.substeps)

    def read_state(self) -> RobotState:
        if not self._connected:
            raise RobotNotConnectedError("AlohaSim.connect() has not been called")
        with self._lock:
            d = self._data
            pos = d.qpos[self._qadr] * self._sign
            vel = d.qvel[self._vadr] * self._sign
            eff = d.actuator_force[self._state_act] * self._sign
            t = float(d.time)
        g = self._is_gripper
        pos[g] = (pos[g] - self.spec.position_close) / self._span()
        vel[g] = vel[g] / self._span()
        return RobotState(self.names, pos, vel, eff, t)

    # ------------------------------------------------------------------ task state
    def object_state(self) -> dict[str, np.ndarray]:
        """Each object's pose ``[x, y, z, qw, qx, qy, qz]`` (world frame, m)."""
        with self._lock:
            return {o.name: self.data.qpos[qadr : qadr + 7].copy() for o, qadr, _ in self._objects}

    def env_state(self) -> np.ndarray:
        """All object poses concatenated in config order (gym_aloha's ``env_state`` layout)."""
        states = self.object_state()
        return (
            np.concatenate([states[o.name] for o in self.spec.objects]) if states else np.zeros(0)
        )

    def contact_pairs(self) -> set[frozenset[str]]:
        """Unordered geom-name pairs currently in contact."""
        with self._lock:
            d = self.data
            return {
                frozenset((self._geom_names[c.geom1], self._geom_names[c.geom2]))
                for c in d.contact[: d.ncon]
            }

    def reward(self) -> int:
        """Stage reward 0..4 of the task (4 = success), from the current contacts."""
        r = self.spec.reward
        if not r:
            return 0
        pairs = self.contact_pairs()

        def touch(a: str, b: str | Sequence[str]) -> bool:
            bs = [b] if isinstance(b, str) else list(b)
            return any(frozenset((a, x)) in pairs for x in bs)

        if r["type"] == "transfer_cube":
            obj = r["object"]
            right = touch(obj, r["right_finger"])
            left = touch(obj, r["left_finger"])
            on_table = touch(obj, r["table"])
            stage = 0
            if right:
                stage = 1
            if right and not on_table:
                stage = 2  # lifted
            if left:
                stage = 3  # attempted transfer
            if left and not on_table:
                stage = 4  # transferred
            return stage
        # insertion
        peg, sockets = r["peg"], list(r["socket"])
        right = touch(peg, r["right_finger"])
        left = any(touch(s, r["left_finger"]) for s in sockets)
        peg_table = touch(peg, r["table"])
        socket_table = any(touch(s, r["table"]) for s in sockets)
        peg_socket = touch(peg, sockets)
        stage = 0
        if left and right:
            stage = 1
        if left and right and not peg_table and not socket_table:
            stage = 2
        if peg_socket and not peg_table and not socket_table:
            stage = 3
        if touch(peg, r["pin"]):
            stage = 4
        return stage

    def is_success(self) -> bool:
        return self.reward() == self.max_reward

    # ------------------------------------------------------------------ kinematics
    def arm_kinematics(
        self, prefix: str, tip_offset: Sequence[float] = (0.0, 0.0, 0.0)
    ) -> ArmKinematics:
        """Kinematics of the arm whose action names start with ``prefix`` (e.g. ``"left_"``).

        Root = the body holding the arm's first joint's parent frame; tip = the last arm joint's
        body plus ``tip_offset`` (m). Limits are the robot config's.
        """
        arm = [n for n in self.names if n.startswith(prefix) and n in self.spec.joint_map]
        if not arm:
            raise ValueError(f"no arm joints with prefix {prefix!r}")
        m = self.model
        joints = [self.spec.joint_map[n] for n in arm]
        first = self._joint_id(joints[0])
        last = self._joint_id(joints[-1])
        root = m.body(int(m.body_parentid[m.jnt_bodyid[first]])).name
        tip = m.body(int(m.jnt_bodyid[last])).name
        idx = [self.config.index(n) for n in arm]
        return ArmKinematics.from_mujoco(
            m, root, tip, joints, tip_offset, self._lower[idx], self._upper[idx]
        )

    # ------------------------------------------------------------------ cameras
    def camera_id(self, camera: str) -> int:
        """Model camera id of an ALOHA camera name (or a model camera name)."""
        if camera in self._cam_ids:
            return self._cam_ids[camera]
        cid = mujoco.mj_name2id(self.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if cid < 0:
            raise ValueError(f"unknown camera {camera!r}; ALOHA names: {sorted(self._cam_ids)}")
        return cid

    def camera_fovy(self, camera: str) -> float:
        """Vertical field of view (deg) of a camera, for camera_info."""
        return float(self.model.cam_fovy[self.camera_id(camera)])

    def _renderer(self, width: int, height: int) -> mujoco.Renderer:
        cache = getattr(self._tls, "renderers", None)
        if cache is None:
            cache = self._tls.renderers = {}
        r = cache.get((width, height))
        if r is None:
            with self._lock:
                vis = self.model.vis.global_
                vis.offwidth = max(int(vis.offwidth), width)
                vis.offheight = max(int(vis.offheight), height)
                r = mujoco.Renderer(self.model, height=height, width=width)
                if not self.spec.render_shadows:  # ~3.5x faster on a CPU (llvmpipe) renderer
                    r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
                    r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            cache[(width, height)] = r
        return r

    def render(self, camera: str, width: int = 640, height: int = 480) -> np.ndarray:
        """An RGB image ``(height, width, 3)`` uint8 of the current state from ``camera``.

        Call from one rendering thread (each thread gets its own GL renderers); never from the
        control loop.
        """
        if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
            raise ValueError(f"width and height must be positive ints, got {width}x{height}")
        cid = self.camera_id(camera)
        renderer = self._renderer(width, height)
        with self._lock:
            renderer.update_scene(self.data, camera=cid)
        return renderer.render()

    def close_renderers(self) -> None:
        """Free the calling thread's renderers."""
        cache = getattr(self._tls, "renderers", None) or {}
        for r in cache.values():
            try:
                r.close()
            except Exception:  # noqa: BLE001 - freeing GL resources at shutdown must not raise
                _log.debug("renderer close failed", exc_info=True)
        cache.clear()
