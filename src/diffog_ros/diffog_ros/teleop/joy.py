"""Joy button handling shared by the teleop and recorder nodes (no rclpy)."""

from __future__ import annotations

from collections.abc import Sequence


class ButtonEdges:
    """Turns successive button arrays into presses (0 -> 1 transitions).

    The first array only sets the reference state, so a button held down while a node starts
    does not count as a press.
    """

    def __init__(self) -> None:
        self._last: tuple[int, ...] | None = None

    def update(self, buttons: Sequence[int]) -> set[int]:
        now = tuple(1 if int(b) else 0 for b in buttons)
        last = self._last
        self._last = now
        if last is None:
            return set()
        return {i for i, b in enumerate(now) if b and (i >= len(last) or not last[i])}


def check_button_index(value: int, name: str, max_index: int = 63) -> str | None:
    """Reason a button parameter is invalid (-1 disables a button), or ``None``."""
    if not isinstance(value, int) or isinstance(value, bool) or not -1 <= value <= max_index:
        return f"{name} must be an integer in [-1, {max_index}] (-1 disables it), got {value!r}"
    return None
