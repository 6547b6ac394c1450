"""Benchmark: one DiffOG training step with the fast and the qpth backend, and the QP's share of it.

A step is what ``diffog-ros train diffog`` does per batch: transformer encoder over the chunk (Table
IX sizes: 2 layers, 4 heads, d = 256, ff = 256, dropout 0.1) -> L -> Q (Algorithm 1) -> solve_qp
(q = -a, bounds 0.1 on the normalised scale, alpha = 4, Table VII) -> loss eq. (10) -> backward ->
AdamW step.  Chunks are random walks; about a third of the difference bounds are active at the
optimum (the ``active`` column).

The QP share is (QP forward + QP backward) / step: the forward is timed around solve_qp, the
backward between the gradient reaching y* and the gradient reaching Q (the QP's backward node runs
in between).  One thread.  Target: with the fast backend the QP takes < 25 % of the step.

    .venv/bin/python benchmarks/bench_training_step.py [--quick] [--out benchmarks/results/training_step.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from diffog_ros.learning.diffog import DiffOGConfig, DiffOGLayer, bound_activity
from diffog_ros.runtime import limit_threads
from diffog_ros.trajopt import TrajOptSpec, solve_qp

BATCH = 64
BOUND = 0.1  # Table VII, normalised scale
ALPHA = 4.0  # Table VII
STEP_STD = 0.27  # random-walk step size giving ~35 % active difference bounds at the optimum


def make_layer(t_len: int, d_len: int, backend: str) -> DiffOGLayer:
    dims = [d for d in range(d_len) if d % 7 != 6]  # ALOHA layout: every 7th dim is a gripper
    spec = TrajOptSpec(t_len, d_len, dims, max_delta=BOUND, smooth_weight=ALPHA)
    torch.manual_seed(0)
    return DiffOGLayer(DiffOGConfig(horizon=t_len, action_dim=d_len, backend=backend), spec)


def chunks(t_len: int, d_len: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.rand(BATCH, 1, d_len, generator=g) * 1.6 - 0.8
    return start + torch.cumsum(STEP_STD * torch.randn(BATCH, t_len, d_len, generator=g), dim=1)


def timed_step(layer: DiffOGLayer, opt: torch.optim.Optimizer, a: torch.Tensor) -> dict[str, float]:
    """One training step, with the QP's forward and backward timed inside it."""
    marks: dict[str, float] = {}

    def mark(name: str):
        def hook(_grad):
            marks.setdefault(name, time.perf_counter())  # returns None: the gradient is unchanged

        return hook

    t0 = time.perf_counter()
    q_mat = layer.q_matrix(a)  # transformer + Algorithm 1
    q_mat.register_hook(mark("bwd_end"))
    t1 = time.perf_counter()
    y = solve_qp(q_mat, -a.reshape(BATCH, -1), layer.spec, backend=layer.cfg.backend)
    t2 = time.perf_counter()
    y.register_hook(mark("bwd_start"))
    loss = F.mse_loss(y.reshape(a.shape), a)  # eq. (10), dataset training
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    t3 = time.perf_counter()
    fwd, bwd = t2 - t1, marks["bwd_end"] - marks["bwd_start"]
    return {
        "step": t3 - t0,
        "qp": fwd + bwd,
        "qp_fwd": fwd,
        "qp_bwd": bwd,
        "activity": bound_activity(y.reshape(a.shape), layer.spec),
    }


def run_case(t_len: int, d_len: int, backend: str, repeats: int) -> dict:
    layer = make_layer(t_len, d_len, backend).train()
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-4)
    timed_step(layer, opt, chunks(t_len, d_len, 0))  # warm-up
    rows = [timed_step(layer, opt, chunks(t_len, d_len, 1 + i)) for i in range(repeats)]
    step = statistics.median(r["step"] for r in rows)
    qp = statistics.median(r["qp"] for r in rows)
    return {
        "case": f"{t_len}x{d_len}",
        "backend": backend,
        "batch": BATCH,
        "step_ms": 1e3 * step,
        "qp_ms": 1e3 * qp,
        "qp_fwd_ms": 1e3 * statistics.median(r["qp_fwd"] for r in rows),
        "qp_bwd_ms": 1e3 * statistics.median(r["qp_bwd"] for r in rows),
        "qp_share": qp / step,
        "rest_ms": 1e3 * (step - qp),
        "active_fraction": statistics.median(r["activity"] for r in rows),
        "repeats": repeats,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats; qpth on 16x7 only")
    parser.add_argument("--no-qpth", action="store_true", help="skip the (slow) qpth backend")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/training_step.json"))
    args = parser.parse_args()
    limit_threads(1)
    cases = [(16, 7, "fast", 10), (16, 14, "fast", 5)]
    if not args.no_qpth:
        cases += [(16, 7, "qpth", 2)] + ([] if args.quick else [(16, 14, "qpth", 1)])
    if args.quick:
        cases = [(t, d, b, max(1, r // 3)) for t, d, b, r in cases]
    print(
        f"{'case':>6} {'backend':>7} {'step ms':>9} {'QP ms':>9} {'(fwd':>8} {'bwd)':>7} {'rest ms':>8} "
        f"{'QP share':>8} {'active':>6}"
    )
    rows = []
    for case in cases:
        row = run_case(*case)
        rows.append(row)
        print(
            f"{row['case']:>6} {row['backend']:>7} {row['step_ms']:>9.1f} {row['qp_ms']:>9.1f} "
            f"{row['qp_fwd_ms']:>8.1f} {row['qp_bwd_ms']:>7.1f} {row['rest_ms']:>8.1f} {100 * row['qp_share']:>7.1f}% {row['active_fraction']:>6.2f}",
            flush=True,
        )
    by = {(r["case"], r["backend"]): r for r in rows}
    for case in ("16x7", "16x14"):
        fast, qpth = by.get((case, "fast")), by.get((case, "qpth"))
        if fast:
            verdict = "meets" if fast["qp_share"] < 0.25 else "MISSES"
            print(
                f"{case}: fast QP share {100 * fast['qp_share']:.1f}% ({verdict} the < 25% target)"
            )
        if fast and qpth:
            print(
                f"{case}: training step {qpth['step_ms'] / fast['step_ms']:.1f}x faster with fast than with qpth"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "layer": "transformer, Table IX sizes",
        "bound": BOUND,
        "alpha": ALPHA,
    }
    args.out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
