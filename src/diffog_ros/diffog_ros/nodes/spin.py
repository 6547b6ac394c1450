"""The one ``main()`` body every node shares: init, build, spin, clean shutdown."""

from __future__ import annotations

import faulthandler
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rclpy.task import Future


def dump_stacks_on_sigusr1() -> None:
    """``kill -USR1 <pid>`` prints every thread's Python stack to stderr (diagnosing a hang)."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True)


def spin_node(
    make_node: Callable[[], Node],
    make_executor: Callable[[], Executor],
    name: str,
    args: list[str] | None = None,
    startup_errors: tuple[type[BaseException], ...] = (ValueError,),
) -> int:
    """Run one node until Ctrl-C / SIGTERM / external shutdown; 0, or 1 on a start-up error.

    ``startup_errors`` raised while building the node (invalid parameters, missing devices) are
    logged as fatal with the reason. The node's ``close()`` (if any) runs before it is destroyed.

    The executor spins in a :class:`BackgroundSpinner`; the main thread only waits for SIGINT /
    SIGTERM, whose handler sets a flag (a second one exits at once). Raising in the executor's code
    instead can leave one of its thread pool's locks held (a signal between a ``with`` block's lock
    acquisition and its ``try``), and the interpreter then hangs at exit joining the workers.
    """
    dump_stacks_on_sigusr1()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()

    def on_signal(signum: int, _frame) -> None:
        if stop.is_set():  # the second request: do not wait for a clean shutdown
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    node = None
    code = 0
    spinner = None
    try:
        node = make_node()
        executor = make_executor()
        executor.add_node(node)
        spinner = BackgroundSpinner(executor)
        while not stop.wait(0.2):
            if not spinner.is_alive() or not executor.context.ok():
                code = 0 if not executor.context.ok() else 1  # else: the spin thread died
                break
    except startup_errors as exc:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {exc}")
        code = 1
    finally:
        if spinner is not None:
            spinner.stop()
        if node is not None:
            close = getattr(node, "close", None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


class _StopSignal(Future):
    """The future :class:`BackgroundSpinner` spins until; it keeps one done-callback only.

    rclpy's ``spin_until_future_complete`` registers a fresh "wake the executor" callback on
    *every* ``spin_once`` (ros2/rclpy, Humble to Jazzy), so a plain future spun for hours would
    accumulate one callback per handled message. They are all the same wake-up: keep the newest.
    """

    def __init__(self) -> None:
        super().__init__()
        self._wake_lock = threading.Lock()
        self._wake: Callable[[Future], None] | None = None

    def add_done_callback(self, callback: Callable[[Future], None]) -> None:
        with self._wake_lock:
            self._wake = callback
        if self.done():
            callback(self)

    def stop(self) -> None:
        if not self.done():
            self.set_result(True)
        with self._wake_lock:
            wake = self._wake
        if wake is not None:
            wake(self)


class BackgroundSpinner:
    """Spin ``executor`` in a joinable thread; :meth:`stop` returns only when it has left rclpy.

    A daemon thread still blocked in the rcl wait set when the interpreter exits aborts the process
    ("terminate called without an active exception", ros2/rclpy#1484), so the thread spins until
    a future that :meth:`stop` completes, and is always joined before the node is destroyed.
    """

    def __init__(self, executor: Executor, name: str = "executor") -> None:
        self.executor = executor
        self._done = _StopSignal()  # completing it wakes the executor and ends the spin
        self._thread = threading.Thread(target=self._run, name=name, daemon=False)
        self._thread.start()

    def _run(self) -> None:
        try:  # no timeout: a timed wait builds an rcl timer on every wake-up
            self.executor.spin_until_future_complete(self._done)
        except (ExternalShutdownException, KeyboardInterrupt):
            return
        except Exception:  # noqa: BLE001 - context gone / executor shut down: stop spinning
            if self._done.done() or not self.executor.context.ok():
                return
            raise

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop spinning, wait for the callbacks in flight, shut the executor down; True if clean."""
        self._done.stop()
        self._thread.join(timeout)
        joined = not self._thread.is_alive()
        pool = getattr(self.executor, "_executor", None)  # MultiThreadedExecutor's worker pool
        if isinstance(pool, ThreadPoolExecutor):
            pool.shutdown(wait=True)
        self.executor.shutdown(timeout_sec=timeout)
        return joined


class CooperativeMultiThreadedExecutor(MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor without its busy loop on a busy machine.

    rclpy (Humble to Jazzy 7.1.x) re-yields a callback task that was handed to the worker pool but
    has not started yet, and does so without waiting (ros2/rclpy#1452, fixed upstream by #1547,
    not in the Jazzy wheels). While the spinning thread holds the GIL the workers cannot start the
    task, so the executor can lock itself into spinning a whole core. Measured here: an idle
    recorder at 12 % CPU fell into a 95 % state in about one start in eight. When the same
    not-yet-started task comes back, this executor sleeps briefly so a worker can take the GIL
    and start it.
    """

    YIELD_S = 0.0005  # first pause when a waiting task comes back [s]
    MAX_YIELD_S = 0.005  # pauses double while it keeps coming back, up to this [s]

    def __init__(self, num_threads: int | None = None, **kwargs) -> None:
        super().__init__(num_threads=num_threads, **kwargs)
        self._handed_out: weakref.WeakSet = weakref.WeakSet()
        self._pause = self.YIELD_S
        self.requeued = 0  # re-yields of a task still waiting for a worker

    def wait_for_ready_callbacks(self, *args, **kwargs):
        handler, entity, node = super().wait_for_ready_callbacks(*args, **kwargs)
        if handler in self._handed_out and not handler.executing() and not handler.done():
            # Every worker is busy (or starved of the GIL): new work could not start anyway.
            self.requeued += 1
            time.sleep(self._pause)
            self._pause = min(2.0 * self._pause, self.MAX_YIELD_S)
        else:
            self._handed_out.add(handler)
            self._pause = self.YIELD_S
        return handler, entity, node
