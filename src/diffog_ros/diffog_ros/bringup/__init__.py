"""diffog_ros.bringup"""
