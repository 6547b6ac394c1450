"""Trajectory-optimisation core (no rclpy): one QP formulation for DiffOG and LeTO.

Public contract::

    from diffog_ros.trajopt import TrajOptSpec, solve_qp
    spec = TrajOptSpec(horizon=T, action_dim=D, continuous_dims=[...], max_delta=0.1,
                       min_delta=None, smooth_weight=alpha, min_value=None, max_value=None)
    y = solve_qp(Q, q, spec, prev=None, backend="fast")   # Q [B,n,n], q [B,n], prev [B,D] -> y [B,n]

Chunks are flattened time-major: y = [a_0; a_1; ...; a_{T-1}], n = T*D.
"""

from diffog_ros.trajopt.baselines import clip_chunk, penalty_chunk
from diffog_ros.trajopt.metrics import leto_metrics, trajectory_metrics
from diffog_ros.trajopt.qp import solve_qp
from diffog_ros.trajopt.spd import spd_from_unconstrained
from diffog_ros.trajopt.spec import TrajOptSpec

__all__ = [
    "TrajOptSpec",
    "clip_chunk",
    "leto_metrics",
    "penalty_chunk",
    "solve_qp",
    "spd_from_unconstrained",
    "trajectory_metrics",
]
