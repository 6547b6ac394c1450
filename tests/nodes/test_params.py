"""ValidatedParameters: descriptors, atomic validation, coercion, apply-after-set, foreign parameters.

In-process (one rclpy node, no other process): the helper is plain parameter plumbing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter

from diffog_ros.nodes.params import ParamDecl, ValidatedParameters, coerce_parameter

pytestmark = pytest.mark.ros
_T = Parameter.Type


@dataclass(frozen=True)
class Cfg:
    gain: float
    names: tuple[str, ...]
    limits: tuple[float, ...]

    @classmethod
    def build(cls, v):
        if not v["names"]:
            raise ValueError("names must not be empty")
        limits = tuple(v["limits"] or ())
        if len(limits) not in (0, len(v["names"])):
            raise ValueError(f"limits must have one value per name, got {len(limits)}")
        return cls(v["gain"], tuple(v["names"]), limits)


DECLS = (
    ParamDecl("gain", _T.DOUBLE, "a gain [1]", 1.0, (0.0, 10.0)),
    ParamDecl("names", _T.STRING_ARRAY, "names (required)"),
    ParamDecl("limits", _T.DOUBLE_ARRAY, "per-name limits", [], constraints="one per name"),
    ParamDecl("depth", _T.INTEGER, "queue depth", 5, (1, 100), read_only=True),
)


@pytest.fixture
def node():
    rclpy.init()
    n = Node("params_test", parameter_overrides=[Parameter("names", _T.STRING_ARRAY, ["a", "b"])])
    try:
        yield n
    finally:
        n.destroy_node()
        rclpy.try_shutdown()


def test_declares_with_descriptors_and_builds(node):
    p = ValidatedParameters(node, DECLS, Cfg.build)
    assert p.current == Cfg(1.0, ("a", "b"), ())
    d = node.describe_parameter("gain")
    assert d.description == "a gain [1]" and d.floating_point_range[0].to_value == 10.0
    assert node.describe_parameter("depth").read_only
    assert node.get_parameter("limits").type_ == _T.DOUBLE_ARRAY  # typed although empty


def test_invalid_initial_values_raise(node):
    bad = (
        *DECLS[:1],
        ParamDecl("names", _T.STRING_ARRAY, "x", ["x"]),
        ParamDecl("limits", _T.DOUBLE_ARRAY, "y", [1.0, 2.0, 3.0]),
    )
    with pytest.raises(ValueError, match="limits"):
        ValidatedParameters(node, bad, Cfg.build)


def test_refused_change_keeps_everything(node):
    p = ValidatedParameters(node, DECLS, Cfg.build)
    old = p.current
    r = node.set_parameters_atomically(
        [Parameter("gain", _T.DOUBLE, 2.0), Parameter("limits", _T.DOUBLE_ARRAY, [1.0])]
    )
    assert not r.successful and "one value per name" in r.reason
    assert p.current is old and node.get_parameter("gain").value == 1.0
    r = node.set_parameters([Parameter("gain", _T.DOUBLE, 11.0)])[0]  # rclpy enforces the range
    assert not r.successful and p.current is old
    r = node.set_parameters([Parameter("depth", _T.INTEGER, 7)])[0]
    assert not r.successful and "read-only" in r.reason


def test_accepted_change_swaps_a_new_object(node):
    p = ValidatedParameters(node, DECLS, Cfg.build, describe=lambda a, b: "described")
    old = p.current
    r = node.set_parameters_atomically(
        [
            Parameter("names", _T.STRING_ARRAY, ["x", "y", "z"]),
            Parameter("limits", _T.DOUBLE_ARRAY, [1.0, 2.0, 3.0]),
        ]
    )
    assert r.successful
    assert p.current == Cfg(1.0, ("x", "y", "z"), (1.0, 2.0, 3.0)) and old == Cfg(
        1.0, ("a", "b"), ()
    )
    assert p.values()["limits"] == [1.0, 2.0, 3.0]


def test_compatible_types_are_coerced(node):
    p = ValidatedParameters(node, DECLS, Cfg.build)
    assert node.set_parameters([Parameter("gain", _T.INTEGER, 3)])[0].successful
    assert p.current.gain == 3.0 and isinstance(p.current.gain, float)
    assert node.set_parameters([Parameter("limits", _T.INTEGER_ARRAY, [1, 2])])[0].successful
    assert p.current.limits == (1.0, 2.0)
    assert node.set_parameters([Parameter("limits", _T.BYTE_ARRAY, [])])[0].successful
    assert p.current.limits == ()
    r = node.set_parameters([Parameter("gain", _T.STRING, "high")])[0]
    assert not r.successful and p.current.gain == 3.0


def test_coerce_parameter_only_when_lossless():
    assert coerce_parameter(Parameter("x", _T.DOUBLE, 0.5), _T.DOUBLE_ARRAY).value == [0.5]
    assert coerce_parameter(Parameter("x", _T.STRING, "a"), _T.STRING_ARRAY).value == ["a"]
    kept = Parameter("x", _T.DOUBLE, 0.5)
    assert coerce_parameter(kept, _T.INTEGER) is kept
    kept = Parameter("x", _T.STRING_ARRAY, ["a"])
    assert coerce_parameter(kept, _T.DOUBLE_ARRAY) is kept


def test_foreign_parameters_are_ignored(node):
    p = ValidatedParameters(node, DECLS, Cfg.build)
    node.declare_parameter("other", 1)
    seen = []

    def other_cb(params):
        seen.extend(x.name for x in params)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(other_cb)
    old = p.current
    assert node.set_parameters([Parameter("other", _T.INTEGER, 5)])[0].successful
    assert p.current is old and seen == ["other"]
