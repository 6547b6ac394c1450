"""Run inside the 'robot PC' namespace: talk to trajopt_node on the other host over DDS.

Publishes the executed action and a jerky raw chunk, waits for the optimised chunk, prints a JSON
line with what it received. Exit 0 when a chunk arrived, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from nodes.trajopt_peer import Peer, aloha_params, chunk_msg  # noqa: E402


def main() -> int:
    rclpy.init()
    peer = Peer()
    try:
        peer.wait_ready(timeout=60.0)
        names = aloha_params()["joint_names"]
        prev = np.zeros(len(names))
        peer.send_executed_and_wait(names, prev, timeout=30.0)
        rows = np.cumsum(np.random.default_rng(0).normal(0, 0.1, (16, len(names))), axis=0)
        key = peer.send_chunk(chunk_msg(rows, names, peer.fresh_stamp()))
        out = peer.wait_output(key, timeout=30.0)
        print(json.dumps({"raw": rows.tolist(), "optimised": out.tolist(), "prev": prev.tolist()}))
        return 0
    except TimeoutError as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    finally:
        peer.close()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
