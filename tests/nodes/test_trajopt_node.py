"""trajopt_node as a real process over real DDS: outputs, continuity, live parameters, rejects, fuzz.

One node process serves the whole module (start-up imports torch); every test first puts the
parameters it relies on back in force. Expected chunks are computed here, in the test process,
with the core functions on the same data; bounds are checked with an independent numpy check.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time

import numpy as np
import pytest
import rclpy
import torch
from support.procs import BIN, node_command, running, stop

from diffog_ros.trajopt import TrajOptSpec, clip_chunk, penalty_chunk, solve_qp
from nodes.trajopt_peer import Peer, aloha_params, chunk_msg, write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]

BASE = aloha_params()
NAMES = list(BASE["joint_names"])
CONSTRAINED = list(BASE["constrained_joints"])
DIMS = [NAMES.index(n) for n in CONSTRAINED]
D = len(NAMES)
T = 16
DT = float(BASE["dt"])
TOL = 1e-9
# Test-node settings: generous ages and deadline so a loaded machine never changes an outcome.
NODE_OVERRIDES = {
    "max_prev_age": 30.0,
    "max_chunk_age": 30.0,
    "solve_deadline": 30.0,
    "diagnostics_period": 0.1,
    "queue_depth": 200,
    "max_horizon": 64,
}
# What every test starts from (set through the parameter services).
DEFAULTS = {
    "method": "static",
    "max_delta": [float(v) for v in BASE["max_delta"]],
    "min_delta": [],
    "smooth_weight": float(BASE["smooth_weight"]),
    "dt": DT,
    "use_continuity": True,
    "max_prev_age": 30.0,
    "max_chunk_age": 30.0,
    "backend": "fast",
    "solve_deadline": 30.0,
    "model_path": "",
    "constrained_joints": CONSTRAINED,
}


# ----------------------------------------------------------------------------- fixtures / helpers
@pytest.fixture(scope="module")
def peer(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trajopt_node")
    params = write_params(tmp / "params.yaml", **NODE_OVERRIDES)
    cmd = node_command("trajopt_node") + ["--params-file", str(params)]
    rclpy.init()
    with running(cmd, log=tmp / "node.log") as proc:
        p = Peer()
        try:
            p.wait_ready()
            p.proc = proc
            yield p
        finally:
            p.close()
            rclpy.try_shutdown()
            code = stop(proc)
    assert code == 0, (
        f"trajopt_node exited with {code} on SIGINT; log: {(tmp / 'node.log').read_text()}"
    )


@pytest.fixture
def node(peer):
    """The running node with DEFAULTS in force."""
    peer.set_ok(**DEFAULTS)
    assert peer.proc.poll() is None, "trajopt_node died"
    return peer


def spec_for(max_delta=None, min_delta=None, smooth_weight=None, horizon=T) -> TrajOptSpec:
    md = DEFAULTS["max_delta"] if max_delta is None else max_delta
    return TrajOptSpec(
        horizon=horizon,
        action_dim=D,
        continuous_dims=DIMS,
        max_delta=md[0] if len(md) == 1 else md,
        min_delta=None if not min_delta else (min_delta[0] if len(min_delta) == 1 else min_delta),
        smooth_weight=DEFAULTS["smooth_weight"] if smooth_weight is None else smooth_weight,
    )


def random_chunk(rng: np.random.Generator, horizon: int = T, scale: float = 0.1) -> np.ndarray:
    """A random-walk chunk whose steps break the ALOHA bound (0.0628 rad) about half the time."""
    start = rng.uniform(-1.0, 1.0, D)
    return start + np.cumsum(rng.normal(0.0, scale, (horizon, D)), axis=0)


def violation(y: np.ndarray, spec: TrajOptSpec, prev: np.ndarray | None) -> float:
    """Independent check of DiffOG eq. (7) plus the continuity row: the largest bound violation."""
    c = y[:, list(spec.continuous_dims)]
    if prev is not None:
        c = np.vstack([prev[list(spec.continuous_dims)], c])
    d = np.diff(c, axis=0)
    return float(max(0.0, (d - spec.hi_delta).max(), (spec.lo_delta - d).max()))


def qp_reference(a: np.ndarray, spec: TrajOptSpec, prev: np.ndarray | None) -> np.ndarray:
    """solve_qp with Q = I, q = -a (DiffOG eq. 6) in this process."""
    n = spec.n
    q = -torch.from_numpy(a.reshape(1, n))
    p = None if prev is None else torch.from_numpy(prev.reshape(1, D))
    y = solve_qp(torch.eye(n, dtype=torch.float64), q, spec, prev=p, backend="fast")
    return y.numpy().reshape(spec.horizon, D)


def full_prev(a0: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """prev as the node forms it: executed values on the constrained joints."""
    prev = a0.copy()
    prev[DIMS] = anchor
    return prev


def roundtrip(node: Peer, a: np.ndarray, **kw) -> np.ndarray:
    key = node.send_chunk(chunk_msg(a, NAMES, node.fresh_stamp(), DT, **kw))
    return node.wait_output(key)


def set_executed(node: Peer, rng: np.random.Generator, a0: np.ndarray, offset: float = 0.3):
    """Publish an executed action far from a_0 (so the continuity row binds) and wait for it."""
    anchor = a0[DIMS] + rng.choice([-offset, offset], len(DIMS))
    # Send the constrained joints only, in reverse order: the node must select them by name.
    names = CONSTRAINED[::-1]
    node.send_executed_and_wait(names, anchor[::-1])
    return anchor


# ----------------------------------------------------------------------------- tests
def test_without_executed_action_solves_without_continuity_and_counts_it(node):
    before = node.counters()
    assert before["executed_received"] == 0, "this test needs a node that never got executed_action"
    rng = np.random.default_rng(1)
    a = random_chunk(rng)
    y = roundtrip(node, a)
    after = node.counters()
    assert after["continuity_skipped.no_prev"] == before["continuity_skipped.no_prev"] + 1
    np.testing.assert_allclose(y, qp_reference(a, spec_for(), None), rtol=0, atol=1e-9)
    assert violation(y, spec_for(), None) <= TOL


def test_static_equals_solve_qp_and_keeps_continuity(node):
    rng = np.random.default_rng(2)
    for _ in range(3):
        a = random_chunk(rng)
        anchor = set_executed(node, rng, a[0])
        before = node.counters()
        stamp = node.fresh_stamp()
        key = node.send_chunk(chunk_msg(a, NAMES, stamp, DT))
        y = node.wait_output(key)
        prev = full_prev(a[0], anchor)
        expected = qp_reference(a, spec_for(), prev)
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9)
        assert violation(y, spec_for(), prev) <= TOL  # bounds and continuity
        assert np.abs(y[0, DIMS] - anchor).max() <= DEFAULTS["max_delta"][0] + TOL
        assert np.abs(a[0, DIMS] - anchor).max() > DEFAULTS["max_delta"][0]  # the row did bind
        after = node.counters()
        assert after["continuity_used"] == before["continuity_used"] + 1
        assert after["fallbacks_total"] == before["fallbacks_total"]
        msg = node.outputs[key]
        assert list(msg.joint_names) == NAMES
        assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == divmod(stamp, 10**9)
        times = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points]
        np.testing.assert_allclose(times, np.arange(T) * DT, atol=1e-9)


def test_clip_and_penalty_match_the_core_baselines(node):
    rng = np.random.default_rng(3)
    spec = spec_for()
    a = random_chunk(rng)
    anchor = set_executed(node, rng, a[0])
    prev = full_prev(a[0], anchor)

    node.set_ok(method="clip")
    y = roundtrip(node, a)
    np.testing.assert_array_equal(y, clip_chunk(a[None], spec, prev[None])[0])
    assert violation(y, spec, prev) <= TOL

    node.set_ok(method="penalty")
    before = node.counters()
    y = roundtrip(node, a)
    pen = penalty_chunk(a[None], spec, prev[None])[0]
    if violation(pen, spec, prev) <= TOL:
        np.testing.assert_array_equal(y, pen)
    else:  # the penalty method stops within its tolerance: the node clips its result
        np.testing.assert_array_equal(y, clip_chunk(pen[None], spec, prev[None])[0])
        assert node.counters()["fallback.bound_check"] == before["fallback.bound_check"] + 1
    assert violation(y, spec, prev) <= TOL

    feasible = clip_chunk(a[None], spec, prev[None])[0]  # already within the bounds
    np.testing.assert_array_equal(
        roundtrip(node, feasible), penalty_chunk(feasible[None], spec, prev[None])[0]
    )


def test_passthrough_publishes_feasible_chunks_unchanged_and_clips_the_rest(node):
    rng = np.random.default_rng(4)
    spec = spec_for()
    a = random_chunk(rng)
    anchor = set_executed(node, rng, a[0])
    prev = full_prev(a[0], anchor)
    node.set_ok(method="passthrough")
    feasible = clip_chunk(a[None], spec, prev[None])[0]
    np.testing.assert_array_equal(roundtrip(node, feasible), feasible)
    before = node.counters()
    y = roundtrip(node, a)
    np.testing.assert_array_equal(y, clip_chunk(a[None], spec, prev[None])[0])
    assert node.counters()["fallback.bound_check"] == before["fallback.bound_check"] + 1


def test_parameter_client_change_applies_to_the_next_chunk(node):
    rng = np.random.default_rng(5)
    a = random_chunk(rng, scale=0.15)
    anchor = set_executed(node, rng, a[0])
    prev = full_prev(a[0], anchor)
    y_old = roundtrip(node, a)
    np.testing.assert_allclose(y_old, qp_reference(a, spec_for(), prev), atol=1e-9, rtol=0)

    node.set_ok(max_delta=[0.02], min_delta=[-0.01], smooth_weight=0.5)
    assert node.get_params("max_delta")["max_delta"] == [0.02]
    new_spec = spec_for(max_delta=[0.02], min_delta=[-0.01], smooth_weight=0.5)
    y_new = roundtrip(node, a)
    np.testing.assert_allclose(y_new, qp_reference(a, new_spec, prev), atol=1e-9, rtol=0)
    assert violation(y_new, new_spec, prev) <= TOL
    assert violation(y_old, new_spec, prev) > 1e-3  # the change did matter


def test_param_cli_set_applies_to_the_next_chunk(node):
    rng = np.random.default_rng(6)
    a = random_chunk(rng)
    anchor = set_executed(node, rng, a[0])
    prev = full_prev(a[0], anchor)
    y_old = roundtrip(node, a)
    cli = subprocess.run(
        [str(BIN / "diffog-ros"), "param", "set", "trajopt", "smooth_weight", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )
    assert cli.returncode == 0, cli.stderr
    assert node.get_params("smooth_weight")["smooth_weight"] == 0.0  # "0" was coerced to 0.0
    y_new = roundtrip(node, a)
    np.testing.assert_allclose(
        y_new, qp_reference(a, spec_for(smooth_weight=0.0), prev), atol=1e-9, rtol=0
    )
    assert np.abs(y_new - y_old).max() > 1e-3


INVALID = [
    ("max_delta", [-0.1], "max_delta"),
    ("max_delta", [0.0], "max_delta"),
    ("max_delta", [0.05, 0.05, 0.05], "max_delta"),  # neither 1 nor 12 values
    ("min_delta", [0.1], "min_delta"),  # min >= max
    ("min_delta", [0.0628], "min_delta"),  # min == max
    ("min_delta", [-0.1] * 5, "min_delta"),  # wrong length
    ("method", "magic", "method"),
    ("dt", 0.0, "dt"),
    ("dt", -0.02, "dt"),
    ("smooth_weight", -1.0, "smooth_weight"),
    ("backend", "gpu", "backend"),
    ("constrained_joints", ["left_waist", "no_such_joint"], "constrained_joints"),
    ("joint_names", ["a", "a"], "joint_names"),
    ("max_chunk_age", 0.0, "max_chunk_age"),
    ("queue_depth", 5, "read-only"),
]


def test_invalid_values_are_refused_and_change_nothing(node):
    rng = np.random.default_rng(7)
    a = random_chunk(rng)
    anchor = set_executed(node, rng, a[0])
    prev = full_prev(a[0], anchor)
    expected = qp_reference(a, spec_for(), prev)
    names = sorted({n for n, _, _ in INVALID})
    before = node.get_params(*names)
    for name, value, word in INVALID:
        (result,) = node.set_params(**{name: value})
        assert not result.successful, f"{name}={value!r} was accepted"
        assert word in result.reason, (
            f"{name}={value!r}: reason {result.reason!r} does not say {word!r}"
        )
    assert node.get_params(*names) == before
    # A refused atomic request changes none of its parameters, not even the valid ones.
    result = node.set_atomically(smooth_weight=0.0, max_delta=[-1.0])
    assert not result.successful and "max_delta" in result.reason
    assert node.get_params("smooth_weight", "max_delta") == {
        "smooth_weight": before["smooth_weight"],
        "max_delta": before["max_delta"],
    }
    np.testing.assert_allclose(roundtrip(node, a), expected, atol=1e-9, rtol=0)


def test_diffog_and_leto_refuse_unusable_checkpoints_and_keep_the_old_method(node, tmp_path):
    good_meta = {"kind": "diffog", "action_names": NAMES, "horizon": T, "action_dim": D}
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text("{not json")
    (corrupt / "model.safetensors").write_bytes(b"\0" * 16)
    wrong_names = tmp_path / "wrong_names"
    wrong_names.mkdir()
    (wrong_names / "config.json").write_text(json.dumps({**good_meta, "action_names": NAMES[::-1]}))
    (wrong_names / "model.safetensors").write_bytes(b"\0" * 16)
    cases = [
        ("diffog", "", "model_path"),
        ("diffog", str(tmp_path / "missing"), "not found"),
        ("diffog", str(corrupt), "not valid JSON"),
        ("leto", str(wrong_names), "diffog"),  # a diffog checkpoint for leto
        ("diffog", str(wrong_names), "joint_names"),  # names in another order
    ]
    for method, path, word in cases:
        result = node.set_atomically(model_path=path, method=method)
        assert not result.successful, f"{method} with {path!r} was accepted"
        assert word in result.reason, result.reason
        assert node.get_params("method", "model_path") == {"method": "static", "model_path": ""}
    rng = np.random.default_rng(8)
    a = random_chunk(rng)
    anchor = set_executed(node, rng, a[0])
    np.testing.assert_allclose(
        roundtrip(node, a), qp_reference(a, spec_for(), full_prev(a[0], anchor)), atol=1e-9, rtol=0
    )


def test_missed_deadline_falls_back_to_clipping(node):
    rng = np.random.default_rng(9)
    spec = spec_for()
    a = random_chunk(rng)
    anchor = set_executed(node, rng, a[0])
    prev = full_prev(a[0], anchor)
    node.set_ok(solve_deadline=1e-4)  # 0.1 ms: far below any QP solve
    before = node.counters()
    y = roundtrip(node, a)
    after = node.counters()
    np.testing.assert_array_equal(y, clip_chunk(a[None], spec, prev[None])[0])
    late = ("fallback.deadline", "fallback.solver_busy")
    assert sum(after[k] - before[k] for k in late) == 1
    assert violation(y, spec, prev) <= TOL


def test_stale_executed_action_is_not_used(node):
    rng = np.random.default_rng(10)
    a = random_chunk(rng)
    set_executed(node, rng, a[0])
    node.set_ok(max_prev_age=0.05)
    time.sleep(0.3)
    before = node.counters()
    y = roundtrip(node, a)
    assert (
        node.counters()["continuity_skipped.stale_prev"]
        == before["continuity_skipped.stale_prev"] + 1
    )
    np.testing.assert_allclose(y, qp_reference(a, spec_for(), None), atol=1e-9, rtol=0)


# ----------------------------------------------------------------------------- rejects and fuzz
def _malformed(kind: str, rng: np.random.Generator, stamp: int):
    """One chunk with exactly one defect of ``kind`` (the expected reject reason)."""
    a = random_chunk(rng, horizon=int(rng.integers(2, 20)))
    names = list(NAMES)
    times = None
    if kind == "empty":
        a = np.zeros((0, D))
    elif kind == "too_long":
        a = random_chunk(rng, horizon=NODE_OVERRIDES["max_horizon"] + int(rng.integers(1, 10)))
    elif kind == "duplicate_names":
        i, j = rng.choice(D, 2, replace=False)
        names[i] = names[j]
    elif kind == "wrong_names":
        variant = rng.integers(3)
        if variant == 0:  # order swapped
            i, j = rng.choice(D, 2, replace=False)
            names[i], names[j] = names[j], names[i]
        elif variant == 1:  # a joint missing
            k = int(rng.integers(D))
            names.pop(k)
            a = np.delete(a, k, axis=1)
        else:  # an unknown joint
            names[int(rng.integers(D))] = "elbow_of_someone_else"
    elif kind == "non_finite":
        a[rng.integers(a.shape[0]), rng.integers(D)] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind == "time_not_increasing":
        times = [k * DT for k in range(a.shape[0])]
        k = int(rng.integers(1, a.shape[0]))
        times[k] = times[k - 1] - DT * rng.integers(0, 2)
    elif kind == "time_step_mismatch":
        times = [k * DT * 1.5 for k in range(a.shape[0])]
    elif kind == "stale":
        stamp = stamp - int(60e9) if rng.random() < 0.5 else 0
    elif kind == "future_stamp":
        stamp = stamp + int(60e9)
    msg = chunk_msg(a, names, stamp, DT, times)
    if kind == "ragged":
        row = list(msg.points[int(rng.integers(len(msg.points)))].positions)
        msg.points[int(rng.integers(len(msg.points)))].positions = (
            row[:-1] if rng.random() < 0.5 else [*row, 0.0]
        )
    return msg


REJECT_KINDS = (
    "empty",
    "too_long",
    "duplicate_names",
    "wrong_names",
    "ragged",
    "non_finite",
    "time_not_increasing",
    "time_step_mismatch",
    "stale",
    "future_stamp",
)


def _garbage(rng: np.random.Generator, stamp: int):
    """Random structure: names, lengths, values, times and stamps drawn independently."""
    pool = [*NAMES, "", "x", "left_waist"]
    n_names = int(rng.integers(0, 17))
    names = list(rng.choice(pool, n_names)) if rng.random() < 0.5 else list(NAMES)
    n_pts = int(rng.integers(0, 20))
    width = len(names) if rng.random() < 0.7 else int(rng.integers(0, 20))
    special = [np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, 1e-320]
    rows = []
    for _ in range(n_pts):
        w = width if rng.random() < 0.9 else int(rng.integers(0, 20))
        row = rng.normal(0, rng.choice([0.01, 1.0, 1e3]), w)
        if rng.random() < 0.1 and w:
            row[rng.integers(w)] = rng.choice(special)
        rows.append(row)
    times = (
        [k * DT for k in range(n_pts)] if rng.random() < 0.7 else list(rng.uniform(-1, 1, n_pts))
    )
    stamp = stamp if rng.random() < 0.8 else int(rng.integers(0, 2**62))
    msg = chunk_msg([[float(v) for v in r] for r in rows], names, 0, DT, [abs(t) for t in times])
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
    msg.header.stamp.sec = min(msg.header.stamp.sec, 2**31 - 1)
    return msg


def test_each_malformed_chunk_is_rejected_by_reason_and_nothing_is_published(node):
    rng = np.random.default_rng(11)
    before = node.counters()
    sent = node.output_count
    for kind in REJECT_KINDS:
        node.send_chunk(_malformed(kind, rng, node.fresh_stamp()))
    after = node.wait_received(before["chunks_received"] + len(REJECT_KINDS))
    for kind in REJECT_KINDS:
        assert after[f"reject.{kind}"] == before[f"reject.{kind}"] + 1, kind
    assert after["chunks_published"] == before["chunks_published"]
    assert node.output_count == sent


@pytest.mark.timeout(240)
def test_fuzz_node_survives_and_counts_every_message(node):
    rng = np.random.default_rng(12)
    spec = spec_for()
    anchor_rng = np.random.default_rng(13)
    anchor = anchor_rng.uniform(-1, 1, len(DIMS))
    node.send_executed_and_wait(CONSTRAINED, anchor)
    prev_c = anchor
    before = node.counters()
    outputs_before = set(node.outputs)
    expected = dict.fromkeys(REJECT_KINDS, 0)
    n_valid = n_garbage = n_bad_executed = 0
    total, window = 5000, 150
    for start in range(0, total, window):
        if start == window * (total // window // 2):
            # Second half: passthrough, so only the final bound check stands between raw
            # (often bound-breaking) chunks and the output.
            node.set_ok(method="passthrough")
        node.send_executed(CONSTRAINED, anchor)  # keep the anchor fresh (same values)
        for i in range(start, min(start + window, total)):
            stamp = node.fresh_stamp()
            r = rng.random()
            if r < 0.1:  # valid chunks, some with huge jumps
                a = random_chunk(
                    rng, int(rng.integers(1, 24)), scale=float(rng.choice([0.01, 0.1, 2.0]))
                )
                node.send_chunk(chunk_msg(a, NAMES, stamp, DT))
                n_valid += 1
            elif r < 0.55:
                kind = REJECT_KINDS[i % len(REJECT_KINDS)]
                node.send_chunk(_malformed(kind, rng, stamp))
                expected[kind] += 1
            else:
                node.send_chunk(_garbage(rng, stamp))
                n_garbage += 1
            if i % 50 == 0:  # malformed executed actions must not replace the anchor
                bad = list(anchor)
                bad[int(rng.integers(len(bad)))] = math.nan
                node.send_executed(CONSTRAINED, bad)
                n_bad_executed += 1
        node.wait_received(before["chunks_received"] + min(start + window, total), timeout=60)
    assert node.proc.poll() is None, "trajopt_node died during the fuzz"
    after = node.wait_received(before["chunks_received"] + total)
    delta = {k: after[k] - before[k] for k in after}
    # Every message accounted for exactly once.
    assert delta["chunks_received"] == total
    assert delta["chunks_published"] + delta["rejects_total"] == total
    # Single-defect messages land on their reason (garbage may add to any reason).
    for kind, count in expected.items():
        assert delta[f"reject.{kind}"] >= count, (kind, delta[f"reject.{kind}"], count)
    assert delta["chunks_published"] >= n_valid
    assert delta["chunks_published"] <= n_valid + n_garbage
    assert sum(delta[f"reject.{k}"] for k in REJECT_KINDS) >= sum(expected.values())
    assert delta["executed_reject.non_finite"] >= n_bad_executed
    assert delta["reject.internal_error"] == 0 and delta["executed_reject.internal_error"] == 0
    # Nothing published breaks a bound (continuity to the one valid anchor included) or is non-finite.
    node.wait_for(
        lambda: len(node.outputs) >= len(outputs_before) + delta["chunks_published"], 30, "outputs"
    )
    new = [k for k in node.outputs if k not in outputs_before]
    assert len(new) == delta["chunks_published"]
    for key in new:
        msg = node.outputs[key]
        y = np.array([p.positions for p in msg.points], dtype=np.float64)
        assert np.all(np.isfinite(y))
        assert list(msg.joint_names) == NAMES
        s = spec_for(horizon=y.shape[0])
        prev = y[0].copy()
        prev[DIMS] = prev_c
        assert violation(y, s, prev) <= TOL, key
    assert spec.n == T * D
