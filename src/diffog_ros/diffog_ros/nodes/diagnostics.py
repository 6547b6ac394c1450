"""Publishing one node's ``/diagnostics`` status, the same way in every node."""

from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node
from rclpy.publisher import Publisher


def publish_status(node: Node, publisher: Publisher, status: DiagnosticStatus) -> None:
    """Publish ``status`` as a DiagnosticArray stamped with the node's clock."""
    arr = DiagnosticArray(status=[status])
    arr.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(arr)
