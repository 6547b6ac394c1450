"""Declare ROS parameters with descriptors and apply validated changes atomically (rclpy helper).

Usage in a node::

    DECLS = (
        ParamDecl("dt", Parameter.Type.DOUBLE, "control period [s]", default=0.02, range=(1e-4, 10.0)),
        ParamDecl("joint_names", Parameter.Type.STRING_ARRAY, "action names, in order"),
    )
    self._params = ValidatedParameters(self, DECLS, build=MyConfig.from_values)
    cfg = self._params.current      # an immutable object: read it once per work cycle

The three stages of a parameter change (as in ros2/demos):

1. pre-set - compatible types are coerced so ``param set dt 1`` or ``param set max_delta 0.05`` work:
   int -> double, scalar -> one-element array, int array -> double array, empty list -> empty array.
2. on-set (validate) - ``build(values)`` is called on the current values with the changed ones
   applied; a ``ValueError`` refuses the whole change with its message as the reason and nothing
   changes. Parameters this helper does not own are ignored (another callback may own them).
3. post-set (apply) - the object built in stage 2 replaces :attr:`ValidatedParameters.current` in
   one reference assignment, so a work cycle sees either the old or the new object, never a mix;
   the change is logged with old and new values.

``build`` may be slow (e.g. load a checkpoint): it runs on the executor thread serving the
parameter services, never on the work callbacks' thread.
"""

from __future__ import annotations

import array
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from rclpy.parameter import Parameter

__all__ = ["ParamDecl", "ValidatedParameters", "coerce_parameter", "plain_value"]

T = TypeVar("T")

_ARRAY_OF = {
    Parameter.Type.DOUBLE_ARRAY: float,
    Parameter.Type.INTEGER_ARRAY: int,
    Parameter.Type.STRING_ARRAY: str,
    Parameter.Type.BOOL_ARRAY: bool,
}
_ARRAY_TYPES = (*_ARRAY_OF, Parameter.Type.BYTE_ARRAY)


@dataclass(frozen=True)
class ParamDecl:
    """One parameter: name, static type, description and (optional) default, range and notes.

    ``default=None`` declares the parameter without a value: it must come from a params file or
    ``-p`` override (``build`` sees None and decides whether that is acceptable). An empty list
    declares a typed, empty array (rclpy cannot infer a type from ``[]``). ``range`` is
    inclusive and becomes a FloatingPointRange / IntegerRange, enforced by rclpy itself.
    """

    name: str
    type: Parameter.Type
    description: str
    default: Any = None
    range: tuple[float, float] | None = None
    constraints: str = ""
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        d = ParameterDescriptor(
            name=self.name,
            type=self.type.value,
            description=self.description,
            additional_constraints=self.constraints,
            read_only=self.read_only,
        )
        if self.range is not None:
            lo, hi = self.range
            if self.type == Parameter.Type.DOUBLE:
                d.floating_point_range = [
                    FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)
                ]
            elif self.type == Parameter.Type.INTEGER:
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            else:
                raise ValueError(f"parameter {self.name}: a range needs a double or integer type")
        return d


#: The /diagnostics period every node declares the same way.
DIAGNOSTICS_PERIOD = ParamDecl(
    "diagnostics_period",
    Parameter.Type.DOUBLE,
    "diagnostics publishing period [s]",
    1.0,
    (0.1, 60.0),
)


def plain_value(value: Any) -> Any:
    """A parameter value as plain Python (arrays as lists)."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy arrays from some rclpy versions
        return value.tolist()
    return value


def coerce_parameter(param: Parameter, want: Parameter.Type) -> Parameter:
    """``param`` converted to type ``want`` when that loses nothing; otherwise unchanged."""
    have, value = param.type_, plain_value(param.value)
    if have == want or have == Parameter.Type.NOT_SET:
        return param
    try:
        if want == Parameter.Type.DOUBLE and have == Parameter.Type.INTEGER:
            return Parameter(param.name, want, float(value))
        if want in _ARRAY_OF:
            cast = _ARRAY_OF[want]
            if have in _ARRAY_TYPES and not value:
                return Parameter(param.name, want, [])
            if have not in _ARRAY_TYPES:
                value = [value]
            if want == Parameter.Type.DOUBLE_ARRAY and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
            ):
                return Parameter(param.name, want, [float(v) for v in value])
            if all(type(v) is cast for v in value):
                return Parameter(param.name, want, list(value))
    except (TypeError, ValueError):
        pass
    return param


class ValidatedParameters(Generic[T]):
    """Owns a set of declared parameters and the validated object built from their values."""

    def __init__(
        self,
        node: Node,
        decls: Sequence[ParamDecl],
        build: Callable[[Mapping[str, Any]], T],
        describe: Callable[[T, T], str] | None = None,
    ) -> None:
        """Declare ``decls`` on ``node`` and build the initial object.

        Args:
            node: the node owning the parameters.
            decls: the parameters to declare.
            build: values by name -> validated immutable object; raises ValueError to refuse.
            describe: optional ``(old, new) -> str`` summary logged after a change is applied.

        Raises:
            ValueError: the initial values (defaults and overrides) do not validate.
        """
        self._node = node
        self._decls = {d.name: d for d in decls}
        self._build = build
        self._describe = describe
        self._lock = threading.Lock()
        self._pending: tuple[dict[str, Any], T] | None = None
        for d in decls:
            empty = isinstance(d.default, (list, tuple)) and not d.default
            default = d.type if d.default is None or empty else d.default
            try:
                node.declare_parameter(d.name, default, d.descriptor())
                if empty and node.get_parameter_or(d.name).type_ == Parameter.Type.NOT_SET:
                    node.set_parameters([Parameter(d.name, d.type, [])])  # a typed empty array
            except ParameterException as exc:  # e.g. an override of the wrong type or range
                raise ValueError(f"parameter {d.name} ({d.type.name.lower()}): {exc}") from exc
        self._values = {n: plain_value(node.get_parameter_or(n).value) for n in self._decls}
        self._current: T = build(dict(self._values))
        node.add_pre_set_parameters_callback(self._pre_set)
        node.add_on_set_parameters_callback(self._on_set)
        node.add_post_set_parameters_callback(self._post_set)

    @property
    def current(self) -> T:
        """The object in force (read once per work cycle; it never changes under you)."""
        return self._current

    def values(self) -> dict[str, Any]:
        """The owned parameters' values in force, by name."""
        with self._lock:
            return dict(self._values)

    # ------------------------------------------------------------------ the three stages
    def _pre_set(self, params: list[Parameter]) -> list[Parameter]:
        return [
            coerce_parameter(p, self._decls[p.name].type) if p.name in self._decls else p
            for p in params
        ]

    def _on_set(self, params: list[Parameter]) -> SetParametersResult:
        owned = {p.name: plain_value(p.value) for p in params if p.name in self._decls}
        if not owned:
            return SetParametersResult(successful=True)
        with self._lock:
            candidate = {**self._values, **owned}
            try:
                built = self._build(dict(candidate))
            except ValueError as exc:
                self._pending = None
                changes = ", ".join(
                    f"{n}: {self._values.get(n)!r} -> {v!r}" for n, v in owned.items()
                )
                self._node.get_logger().warning(f"refused parameter change ({changes}): {exc}")
                return SetParametersResult(successful=False, reason=str(exc))
            self._pending = (candidate, built)
        return SetParametersResult(successful=True)

    def _post_set(self, params: list[Parameter]) -> None:
        names = [p.name for p in params if p.name in self._decls]
        if not names:
            return
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:  # not validated by us (should not happen): rebuild from the node
                values = {n: plain_value(self._node.get_parameter_or(n).value) for n in self._decls}
                pending = (values, self._build(dict(values)))
            old_values, old = self._values, self._current
            self._values, self._current = pending  # the atomic swap
        changes = ", ".join(f"{n}: {old_values.get(n)!r} -> {self._values.get(n)!r}" for n in names)
        summary = self._describe(old, self._current) if self._describe else ""
        self._node.get_logger().info(
            f"parameters changed ({changes})" + (f"; {summary}" if summary else "")
        )
