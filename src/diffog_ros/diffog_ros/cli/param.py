"""``diffog-ros param list|get|set NODE [NAME [VALUE]]`` - like ``ros2 param``, without ros2cli.

Talks to the node's standard parameter services through rclpy's AsyncParameterClient.

* ``list NODE``            - the declared parameter names, one per line.
* ``get NODE NAME``        - the value as YAML (``[0.05, 0.05]``, ``static``, ``true``).
* ``set NODE NAME VALUE``  - VALUE is parsed as YAML (like ``ros2 param set``) and converted to the
  declared type when nothing is lost (``1`` -> ``1.0`` for a double, ``0.05`` -> ``[0.05]`` for a
  double array, ``[]`` -> an empty array). Several ``NAME VALUE`` pairs are set in one atomic
  request: all are applied or none (e.g. ``constrained_joints`` together with ``max_delta``).

Exit codes: 0 success; 1 refused by the node (the reason is printed) or parameter not declared;
2 usage error; 3 node not found or no answer within ``--timeout``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class _Usage(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # no sys.exit inside main()
        raise _Usage(f"{self.format_usage()}{self.prog}: error: {message}")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="diffog-ros param", description=__doc__.split("\n\n")[0])
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the node [5]")
    sub = p.add_subparsers(dest="verb", required=True)
    s = sub.add_parser("list", help="list parameter names")
    s.add_argument("node")
    s = sub.add_parser("get", help="print a parameter's value")
    s.add_argument("node")
    s.add_argument("name")
    s = sub.add_parser("set", help="set parameters (VALUE is YAML; several pairs: all or none)")
    s.add_argument("node")
    s.add_argument("pairs", nargs="+", metavar="NAME VALUE", help="NAME VALUE [NAME VALUE ...]")
    return p


def _format(value: Any) -> str:
    import yaml

    if isinstance(value, str):
        return value
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("\n...").strip()


class _Timeout(Exception):
    pass


def _call(node, future, timeout: float):
    import rclpy

    rclpy.spin_until_future_complete(node, future, timeout_sec=timeout)
    if not future.done():
        raise _Timeout()
    return future.result()


def _run(args: argparse.Namespace) -> int:
    import rclpy
    from rcl_interfaces.msg import ParameterType
    from rclpy.parameter import Parameter, get_parameter_value, parameter_value_to_python
    from rclpy.parameter_client import AsyncParameterClient

    from diffog_ros.nodes.params import coerce_parameter

    node = rclpy.create_node(f"diffog_ros_param_{os.getpid()}")
    try:
        client = AsyncParameterClient(node, args.node)
        if not client.wait_for_services(timeout_sec=args.timeout):
            print(f"node {args.node!r} not found (no parameter services)", file=sys.stderr)
            return EXIT_UNREACHABLE
        if args.verb == "list":
            result = _call(node, client.list_parameters(), args.timeout)
            for name in sorted(result.result.names):
                print(name)
            return EXIT_OK
        if args.verb == "get":
            result = _call(node, client.get_parameters([args.name]), args.timeout)
            value = result.values[0] if result.values else None
            if value is None or value.type == ParameterType.PARAMETER_NOT_SET:
                print(f"parameter {args.name!r} is not declared on {args.node!r}", file=sys.stderr)
                return EXIT_REFUSED
            print(_format(parameter_value_to_python(value)))
            return EXIT_OK
        # set: convert each YAML value to the declared type where that loses nothing
        names, texts = args.pairs[0::2], args.pairs[1::2]
        params = []
        for name, text in zip(names, texts, strict=True):
            msg_value = get_parameter_value(text)
            value = parameter_value_to_python(msg_value)
            params.append(Parameter(name, Parameter.Type(msg_value.type), value))
        types = _call(node, client.get_parameter_types(names), args.timeout).types
        params = [
            coerce_parameter(p, Parameter.Type(t)) if t != ParameterType.PARAMETER_NOT_SET else p
            for p, t in zip(params, types, strict=False)
        ]
        if len(params) == 1:
            result = _call(node, client.set_parameters(params), args.timeout).results[0]
        else:  # several parameters: one atomic request, all or nothing
            result = _call(node, client.set_parameters_atomically(params), args.timeout).result
        if not result.successful:
            print(f"refused: {result.reason}", file=sys.stderr)
            return EXIT_REFUSED
        for p in params:
            print(f"set {p.name} = {_format(p.value)}")
        return EXIT_OK
    except _Timeout:
        print(f"node {args.node!r} did not answer within {args.timeout} s", file=sys.stderr)
        return EXIT_UNREACHABLE
    finally:
        node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except _Usage as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return EXIT_OK if exc.code in (0, None) else EXIT_USAGE
    if args.verb == "set" and len(args.pairs) % 2:
        print("diffog-ros param set: expected NODE NAME VALUE [NAME VALUE ...]", file=sys.stderr)
        return EXIT_USAGE
    if args.timeout <= 0:
        print("diffog-ros param: --timeout must be > 0", file=sys.stderr)
        return EXIT_USAGE
    import rclpy

    rclpy.init(args=None)
    try:
        return _run(args)
    except KeyboardInterrupt:
        return EXIT_UNREACHABLE
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
