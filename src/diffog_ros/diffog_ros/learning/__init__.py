"""Learning core (no rclpy): Diffusion Policy, the DiffOG layer, LeTO, training and checkpoints.

Importing this package registers the DiffOG / LeTO checkpoint loaders with
:mod:`diffog_ros.trajopt.model_io`, so the trajectory-optimisation node can load them.
"""

from diffog_ros.learning.trajopt_models import load_trajopt_model, register_builders

register_builders()

__all__ = ["load_trajopt_model"]
