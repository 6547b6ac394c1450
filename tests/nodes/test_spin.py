"""BackgroundSpinner: spins a real executor over DDS, stays bounded, stops promptly."""

from __future__ import annotations

import os
import threading
import time

import pytest
import rclpy
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from std_msgs.msg import String

from diffog_ros.nodes.spin import BackgroundSpinner, CooperativeMultiThreadedExecutor

pytestmark = [pytest.mark.ros]


@pytest.mark.parametrize("make", [MultiThreadedExecutor, CooperativeMultiThreadedExecutor])
def test_spinner_handles_messages_without_growing_and_stops(ros, make):
    pub_node = rclpy.create_node(f"spin_pub_{os.getpid()}")
    sub_node = rclpy.create_node(f"spin_sub_{os.getpid()}")
    topic = f"spin_test_{os.getpid()}"
    got = []
    lock = threading.Lock()

    def on_msg(msg: String) -> None:
        with lock:
            got.append(msg.data)

    pub = pub_node.create_publisher(String, topic, 50)
    sub_node.create_subscription(String, topic, on_msg, 50)
    executor = make(num_threads=2)
    executor.add_node(sub_node)
    spinner = BackgroundSpinner(executor)
    try:
        deadline = time.monotonic() + 20.0
        while not pub.get_subscription_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        for k in range(300):
            pub.publish(String(data=str(k)))
            time.sleep(0.002)
        deadline = time.monotonic() + 10.0
        while len(got) < 250 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(got) >= 250  # the executor really handled the traffic
        # rclpy adds a wake-up callback to the spun future on every spin_once: only one is kept.
        assert len(spinner._done._callbacks) == 0 and spinner._done._wake is not None
        assert spinner.is_alive()
    finally:
        t0 = time.monotonic()
        clean = spinner.stop()
        stop_s = time.monotonic() - t0
        sub_node.destroy_node()
        pub_node.destroy_node()
    assert clean and not spinner.is_alive()
    assert stop_s < 5.0


def test_cooperative_executor_yields_to_a_task_waiting_for_a_worker(ros):
    """One worker, busy in a slow callback: the next message's task waits in the pool's queue.

    Stock rclpy hands that waiting task out again on every pass without blocking (ros2/rclpy#1452);
    the cooperative executor notices (``requeued``), lets the workers run, and both callbacks
    complete in order.
    """
    pub_node = rclpy.create_node(f"coop_pub_{os.getpid()}")
    sub_node = rclpy.create_node(f"coop_sub_{os.getpid()}")
    topic = f"coop_test_{os.getpid()}"
    order = []
    group = ReentrantCallbackGroup()

    def on_msg(msg: String) -> None:
        order.append(("start", msg.data))
        if msg.data == "slow":
            time.sleep(0.5)
        order.append(("end", msg.data))

    pub = pub_node.create_publisher(String, topic, 10)
    sub_node.create_subscription(String, topic, on_msg, 10, callback_group=group)
    executor = CooperativeMultiThreadedExecutor(num_threads=1)
    executor.add_node(sub_node)
    spinner = BackgroundSpinner(executor)
    try:
        deadline = time.monotonic() + 20.0
        while not pub.get_subscription_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.publish(String(data="slow"))
        deadline = time.monotonic() + 10.0
        while ("start", "slow") not in order and time.monotonic() < deadline:
            time.sleep(0.01)
        pub.publish(String(data="next"))
        deadline = time.monotonic() + 10.0
        while ("end", "next") not in order and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        assert spinner.stop()
        sub_node.destroy_node()
        pub_node.destroy_node()
    assert order == [("start", "slow"), ("end", "slow"), ("start", "next"), ("end", "next")]
    # The queued task came back while the worker was busy; with pauses growing to MAX_YIELD_S the
    # executor did not spin meanwhile (a free-running loop comes back thousands of times in 0.5 s).
    assert 0 < executor.requeued < 0.5 / CooperativeMultiThreadedExecutor.MAX_YIELD_S + 20
