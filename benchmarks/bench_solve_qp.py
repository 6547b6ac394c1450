"""Benchmark: solve_qp fast backend against qpth on identical DiffOG-shaped problems.

Problems: Q from DiffOG Algorithm 1 (random unconstrained L), random-walk chunks a (q = -a), a
per-step bound chosen so that 30-40 % of the bounds are active at the optimum, smoothing alpha = 4
(Table VII). Cases: 16x7, 16x14, 50x14; batch 1 with continuity (inference, forward only) and batch 64
forward + backward (training). One thread. Prints median times, the fast/qpth ratio, the largest bound
violation of each backend and the largest |y_fast - y_qpth|; writes JSON.

    .venv/bin/python benchmarks/bench_solve_qp.py [--quick] [--out benchmarks/results/solve_qp.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from diffog_ros.runtime import limit_threads
from diffog_ros.trajopt import TrajOptSpec, solve_qp, spd_from_unconstrained
from diffog_ros.trajopt.constraints import constraint_matrix, max_violation, row_bounds

ALPHA = 4.0


def make_problem(t_len: int, d_len: int, batch: int, seed: int, with_prev: bool):
    """Random DiffOG-shaped problem with the bound tuned to 30-40 % active constraints."""
    gen = torch.Generator().manual_seed(seed)
    n = t_len * d_len
    dims = [d for d in range(d_len) if d % 7 != 6]  # ALOHA layout: every 7th dim is a gripper
    q_mat = spd_from_unconstrained(
        0.3 * torch.randn(batch, n, n, generator=gen, dtype=torch.float64)
    )
    a = torch.cumsum(0.05 * torch.randn(batch, t_len, d_len, generator=gen, dtype=torch.float64), 1)
    prev = (
        a[:, 0] + 0.02 * torch.randn(batch, d_len, generator=gen, dtype=torch.float64)
        if with_prev
        else None
    )
    q_vec = -a.reshape(batch, n)
    lo, hi = 0.001, 0.2
    spec = None
    for _ in range(30):  # bisection on the bound for the target activity
        bound = 0.5 * (lo + hi)
        spec = TrajOptSpec(t_len, d_len, dims, max_delta=bound, smooth_weight=ALPHA)
        act = activity(spec, solve_qp(q_mat, q_vec, spec, prev), prev)
        if 0.30 <= act <= 0.40:
            break
        lo, hi = (lo, bound) if act < 0.30 else (bound, hi)
    return spec, q_mat, q_vec, prev


def activity(spec, y, prev) -> float:
    cmat, _ = constraint_matrix(spec, prev is not None)
    cmat = torch.from_numpy(np.array(cmat))
    lo, hi = row_bounds(
        spec, None if prev is None else prev[:, list(spec.continuous_dims)], None, y.shape[0]
    )
    cy = y.detach() @ cmat.T
    tight = ((cy - hi).abs() <= 1e-7) | ((cy - lo).abs() <= 1e-7)
    return float(tight.double().mean())


def violation(spec, y, prev) -> float:
    cmat, _ = constraint_matrix(spec, prev is not None)
    lo, hi = row_bounds(
        spec, None if prev is None else prev[:, list(spec.continuous_dims)], None, y.shape[0]
    )
    return float(max_violation(y.detach().double(), torch.from_numpy(np.array(cmat)), lo, hi).max())


def time_call(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_case(t_len, d_len, batch, training, repeats_fast, repeats_qpth, seed=0):
    spec, q_mat, q_vec, prev = make_problem(t_len, d_len, batch, seed, with_prev=not training)
    if training:
        weights = torch.randn(
            batch, t_len * d_len, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )

    def call(backend):
        def fn():
            if not training:
                with torch.no_grad():
                    return solve_qp(q_mat, q_vec, spec, prev, backend=backend)
            q_var = q_mat.clone().requires_grad_(True)  # gradients w.r.t. Q and q, as in training
            qv = q_vec.clone().requires_grad_(True)
            y = solve_qp(q_var, qv, spec, prev, backend=backend)
            (y * weights).sum().backward()
            return y.detach()

        return fn

    t_fast, y_fast = time_call(call("fast"), repeats_fast)
    t_qpth, y_qpth = time_call(call("qpth"), repeats_qpth)
    return {
        "case": f"{t_len}x{d_len}",
        "batch": batch,
        "mode": "forward+backward" if training else "forward, continuity",
        "active_fraction": round(activity(spec, y_fast, prev), 3),
        "fast_ms": t_fast * 1e3,
        "qpth_ms": t_qpth * 1e3,
        "speedup": t_qpth / t_fast,
        "fast_max_violation": violation(spec, y_fast, prev),
        "qpth_max_violation": violation(spec, y_qpth, prev),
        "max_abs_dy": float((y_fast - y_qpth).abs().max()),
        "repeats": {"fast": repeats_fast, "qpth": repeats_qpth},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a smoke run)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/solve_qp.json"))
    args = parser.parse_args()
    limit_threads(1)
    cases = [
        (16, 7, 1, False, 50, 10),
        (16, 14, 1, False, 50, 5),
        (50, 14, 1, False, 20, 3),
        (16, 7, 64, True, 10, 2),
        (16, 14, 64, True, 5, 1),
        (50, 14, 64, True, 2, 1),
    ]
    if args.quick:
        cases = [(t, d, b, tr, max(2, rf // 10), 1) for t, d, b, tr, rf, _ in cases[:4]]
    rows = []
    print(
        f"{'case':>7} {'batch':>5} {'mode':<21} {'active':>6} {'fast ms':>9} {'qpth ms':>10} "
        f"{'speedup':>8} {'viol fast':>9} {'viol qpth':>9} {'max|dy|':>9}"
    )
    for case in cases:
        row = run_case(*case)
        rows.append(row)
        print(
            f"{row['case']:>7} {row['batch']:>5} {row['mode']:<21} {row['active_fraction']:>6.2f} "
            f"{row['fast_ms']:>9.2f} {row['qpth_ms']:>10.1f} {row['speedup']:>7.1f}x "
            f"{row['fast_max_violation']:>9.1e} {row['qpth_max_violation']:>9.1e} {row['max_abs_dy']:>9.1e}",
            flush=True,
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
