"""Chunk validation and the latency-compensated queue."""

from __future__ import annotations

import numpy as np
import pytest

from diffog_ros.robots.scheduler import ChunkError, ChunkScheduler, make_chunk

NAMES = ["a", "b", "c"]
DT = 0.02


def chunk(stamp, n=10, dt=DT):
    pos = [[k, 10 + k, 20 + k] for k in range(n)]
    return make_chunk(NAMES, NAMES, stamp, [k * dt for k in range(n)], pos)


def test_names_are_mapped_to_robot_order():
    c = make_chunk(["c", "a", "b"], NAMES, 1.0, [0.0], [[3.0, 1.0, 2.0]])
    np.testing.assert_array_equal(c.actions[0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("names", "offsets", "positions", "reason"),
    [
        (["a", "b"], [0.0], [[1, 2]], "names"),
        (["a", "b", "b"], [0.0], [[1, 2, 3]], "names"),
        (["a", "b", "x"], [0.0], [[1, 2, 3]], "names"),
        (NAMES, [], [], "shape"),
        (NAMES, [0.0, 0.02], [[1, 2, 3], [1, 2]], "shape"),
        (NAMES, [0.0], [[1, np.nan, 3]], "non_finite"),
        (NAMES, [0.0], [[1, 2, np.inf]], "non_finite"),
        (NAMES, [0.0, 0.0], [[1, 2, 3], [1, 2, 3]], "timing"),
        (NAMES, [0.04, 0.02], [[1, 2, 3], [1, 2, 3]], "timing"),
    ],
)
def test_malformed_chunks_are_refused_with_a_reason(names, offsets, positions, reason):
    with pytest.raises(ChunkError) as err:
        make_chunk(names, NAMES, 0.0, offsets, positions)
    assert err.value.reason == reason


def test_steps_execute_at_their_scheduled_ticks():
    s = ChunkScheduler()
    s.load(chunk(stamp=1.0), n_steps=5)
    out = []
    for tick in range(-3, 10):
        now = 1.0 + tick * DT
        a, skipped = s.pop(now, DT)
        assert skipped == 0
        out.append(None if a is None else int(a[0]))
    # nothing before the stamp; steps 0..4 exactly at ticks 0..4; then the queue is dry
    assert out == [None, None, None, 0, 1, 2, 3, 4, None, None, None, None, None]


def test_a_late_chunk_skips_the_steps_whose_time_has_passed():
    s = ChunkScheduler()
    s.load(chunk(stamp=1.0), n_steps=8)
    now = 1.0 + 3 * DT + 0.004  # the chunk arrives three periods late
    a, skipped = s.pop(now, DT)
    assert skipped == 3 and int(a[0]) == 3
    a, skipped = s.pop(now + DT, DT)
    assert skipped == 0 and int(a[0]) == 4


def test_a_chunk_entirely_in_the_past_is_skipped_completely():
    s = ChunkScheduler()
    s.load(chunk(stamp=0.0), n_steps=8)
    a, skipped = s.pop(10.0, DT)
    assert a is None and skipped == 8 and len(s) == 0


def test_a_new_chunk_replaces_the_queue_and_only_n_steps_are_kept():
    s = ChunkScheduler()
    assert s.load(chunk(stamp=0.0), n_steps=4) == 0
    assert len(s) == 4
    s.pop(0.0, DT)
    assert s.load(chunk(stamp=0.02), n_steps=3) == 3
    assert len(s) == 3
    assert s.clear() == 3 and len(s) == 0


def test_a_chunk_arriving_late_executes_n_steps_from_its_first_step_not_yet_past():
    """Latency compensation: a policy slower than n_action_steps ticks still moves the robot."""
    s = ChunkScheduler()
    now = 1.0 + 10 * DT + 0.004  # the chunk arrives ten periods after its observation
    s.load(chunk(stamp=1.0, n=16), n_steps=4, now=now, dt=DT)
    out, skipped_total = [], 0
    for tick in range(8):
        a, skipped = s.pop(now + tick * DT, DT)
        skipped_total += skipped
        out.append(None if a is None else int(a[0]))
    assert skipped_total == 10  # steps 0..9 were past: skipped and counted
    assert out == [10, 11, 12, 13, None, None, None, None]


def test_a_late_load_is_bounded_by_the_chunk_length():
    s = ChunkScheduler()
    now = 1.0 + 14 * DT  # only steps 14 and 15 of the 16 are not yet past
    s.load(chunk(stamp=1.0, n=16), n_steps=8, now=now, dt=DT)
    got = [s.pop(now + k * DT, DT)[0] for k in range(4)]
    assert [None if a is None else int(a[0]) for a in got] == [14, 15, None, None]
