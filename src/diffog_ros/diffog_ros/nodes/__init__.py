"""diffog_ros.nodes"""
