"""Scripted demonstrations in the simulated ALOHA (no rclpy).

* :mod:`.geometry` - poses, minimum-jerk interpolation;
* :mod:`.arms` - one arm's action dims, tool point and IK;
* :mod:`.policy` - phases of end-effector goals executed as joint targets;
* :mod:`.tasks` - the TransferCube and Insertion scripts;
* :mod:`.noise` - jerky-teleoperator noise on the arm joint actions;
* :mod:`.rollout` - running a scripted episode through the safety layer and recording it.
"""
