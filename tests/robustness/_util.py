"""Small shared tools of the robustness suite."""

from __future__ import annotations

import contextlib
import signal
import threading


@contextlib.contextmanager
def deadline(seconds: float, what: str):
    """Fail (instead of hanging the run) if the block takes longer than `seconds` (main thread, POSIX)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def _expired(signum, frame):
        raise TimeoutError(f"{what} took longer than {seconds:g} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
