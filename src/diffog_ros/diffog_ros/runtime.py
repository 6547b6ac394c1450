"""Process-level run-time settings for latency-critical processes (no rclpy)."""

from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


def limit_threads(n: int = 1, include_torch: bool = True) -> None:
    """Limit torch's intra-op threads and the BLAS/OpenMP pools to ``n`` threads.

    The trajectory QPs are small (n <= ~1000): multi-threaded BLAS and OpenMP barriers only add
    latency, and on a loaded robot PC spinning pool threads can slow each call by 10-100x. Call once
    at process start-up (nodes, CLIs, benchmarks), never from library code paths.
    """
    from threadpoolctl import threadpool_limits

    if include_torch:  # processes that never use torch skip its ~1 s import
        import torch

        torch.set_num_threads(n)
    threadpool_limits(limits=n)
    LOG.debug("limited torch and BLAS/OpenMP pools to %d thread(s)", n)
