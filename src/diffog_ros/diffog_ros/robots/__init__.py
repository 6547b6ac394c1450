"""diffog_ros.robots: robot backends, the safety layer and the controller core (no rclpy).

Modules: ``config`` (robot YAML), ``interface`` (the Robot ABC), ``safety`` (limits, step caps,
workspace box, watchdog, e-stop, counters), ``kinematics`` (vx300s FK / Jacobian / IK from the MuJoCo
model), ``aloha_sim`` (MuJoCo ALOHA), ``aloha_real`` (Interbotix followers), ``single_arm``
(end-effector control of one arm), ``scheduler`` (latency-compensated chunk queue), ``motion``
(safe start / shutdown moves), ``control_loop`` (one control tick), ``factory`` (backend by name).
"""

import os

# Headless rendering by default (the simulated cameras); must be set before mujoco is imported.
os.environ.setdefault("MUJOCO_GL", "egl")
