"""Test double of interbotix_xs_msgs.msg (only imported by the reader)."""
