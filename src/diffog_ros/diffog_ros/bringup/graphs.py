"""The project's bringups (see :mod:`diffog_ros.bringup.spec`); each has a ``launch/<name>.launch.py``.

Node parameters come from the ``config/*.yaml`` params files; the arguments below only override what
a user picks per run. Topic names are the relative names of docs/interfaces.md.
"""

from __future__ import annotations

from diffog_ros.bringup.spec import Arg, Bringup, NodeLaunch

A = "$(arg {})".format

# ------------------------------------------------------------------------------ shared arguments
RECORD = Arg("record", True, "run the demonstration / rollout recorder")
OUTPUT_DIR = Arg("output_dir", "episodes", "dataset directory of the recorder (created or resumed)")
METHOD = Arg(
    "method",
    "diffog",
    "trajectory optimisation: diffog | leto | static | clip | penalty | passthrough",
    ("diffog", "leto", "static", "clip", "penalty", "passthrough"),
)
TRAJOPT_MODEL = Arg("trajopt_model", "", "checkpoint of the diffog / leto trajectory layer")
POLICY_TYPE = Arg(
    "policy_type", "diffusion", "policy: diffusion | leto | replay | an entry-point name"
)
POLICY_CKPT = Arg("policy_checkpoint", "", "policy checkpoint dir (or an episode file for replay)")
POLICY_ENABLED = Arg(
    "policy_enabled", True, "publish chunks from the start (false: wait to be enabled)"
)
CONTINUITY = Arg(
    "use_continuity", True, "anchor each chunk to the executed action (DiffOG Sec. V-D)"
)


def _trajopt(params_file: str) -> NodeLaunch:
    return NodeLaunch(
        "trajopt_node",
        "trajopt",
        params_files=(params_file,),
        parameters={
            "method": A("method"),
            "model_path": A("trajopt_model"),
            "use_continuity": A("use_continuity"),
        },
    )


def _policy(params_file: str) -> NodeLaunch:
    return NodeLaunch(
        "policy_node",
        "policy",
        params_files=(params_file,),
        parameters={
            "policy_type": A("policy_type"),
            "checkpoint": A("policy_checkpoint"),
            "enabled": A("policy_enabled"),
        },
    )


def _recorder(params_file: str, **params) -> NodeLaunch:
    return NodeLaunch(
        "recorder_node",
        "recorder",
        params_files=(params_file,),
        parameters={"output_dir": A("output_dir"), **params},
        condition="record",
    )


def _camera(name: str, params_file: str) -> NodeLaunch:
    return NodeLaunch(
        "camera_node", name, params_files=(params_file,), parameters={"camera_name": name}
    )


ALOHA_CAMERAS = ("cam_high", "cam_low", "cam_left_wrist", "cam_right_wrist")

BRINGUPS: dict[str, Bringup] = {}


def _add(b: Bringup) -> None:
    BRINGUPS[b.name] = b


_add(
    Bringup(
        "sim_rollout",
        "policy rollout on the simulated ALOHA: sim camera -> policy -> trajopt -> controller -> recorder",
        args=(
            Arg("task", "transfer_cube", "simulated task", ("transfer_cube", "insertion")),
            Arg("seed", 0, "seed of the object reset"),
            POLICY_TYPE,
            POLICY_CKPT,
            POLICY_ENABLED,
            METHOD,
            TRAJOPT_MODEL,
            CONTINUITY,
            Arg("cameras", ["cam_high"], "simulated cameras to publish"),
            RECORD,
            OUTPUT_DIR,
        ),
        nodes=(
            NodeLaunch(
                "controller_node",
                "controller",
                params_files=("controller_aloha_sim.yaml",),
                parameters={
                    "backend": "aloha_sim",
                    "task": A("task"),
                    "seed": A("seed"),
                    "publish_cameras": A("cameras"),
                },
            ),
            _policy("policy_aloha.yaml"),
            _trajopt("trajopt_aloha.yaml"),
            _recorder(
                "recorder_aloha.yaml", task=A("task"), sim=True, robot_config="aloha_sim.yaml"
            ),
        ),
    )
)

ROLLOUT_ARGS = (
    POLICY_TYPE,
    POLICY_CKPT,
    POLICY_ENABLED,
    METHOD,
    TRAJOPT_MODEL,
    CONTINUITY,
    RECORD,
    OUTPUT_DIR,
)
TASK_NAME = Arg("task", "", "task name stored with the episodes")


def _controller(robot: str, backend: str, mode: str) -> NodeLaunch:
    return NodeLaunch(
        "controller_node",
        "controller",
        params_files=(f"controller_{robot}.yaml",),
        parameters={"backend": backend, "mode": mode},
    )


def _cameras(robot: str) -> tuple[NodeLaunch, ...]:
    names = ALOHA_CAMERAS if robot == "aloha" else ("cam_wrist",)
    return tuple(_camera(c, f"cameras_{robot}.yaml") for c in names)


def _rollout(robot: str, description: str) -> Bringup:
    """Policy -> trajopt -> controller on a real robot, with cameras and the recorder."""
    return Bringup(
        f"{robot}_rollout",
        description,
        args=ROLLOUT_ARGS,
        nodes=(
            _controller(robot, robot, "policy"),
            *_cameras(robot),
            _policy(f"policy_{robot}.yaml"),
            _trajopt(f"trajopt_{robot}.yaml"),
            _recorder(f"recorder_{robot}.yaml"),
        ),
    )


def _teleop_record(robot: str, description: str, teleop: NodeLaunch) -> Bringup:
    """Teleoperation through the controller's safety layer, with cameras and the recorder."""
    return Bringup(
        f"{robot}_teleop_record",
        description,
        args=(TASK_NAME, RECORD, OUTPUT_DIR),
        nodes=(
            _controller(robot, robot, "teleop"),
            teleop,
            *_cameras(robot),
            _recorder(f"recorder_{robot}.yaml", task=A("task")),
        ),
    )


_add(_rollout("aloha", "policy rollout on the real ALOHA (Interbotix followers, four USB cameras)"))
_add(
    _teleop_record(
        "aloha",
        "ALOHA leader-follower teleoperation with demonstration recording",
        NodeLaunch("leader_follower_node", "leader_follower", params_files=("teleop_aloha.yaml",)),
    )
)
_add(
    _teleop_record(
        "single_arm",
        "single vx300s driven in end-effector space by a SpaceMouse, with recording",
        NodeLaunch("spacemouse_node", "spacemouse", params_files=("spacemouse.yaml",)),
    )
)
_add(_rollout("single_arm", "policy rollout on the single vx300s"))
