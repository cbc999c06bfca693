"""The robustness suite's summary line: how many bad inputs, fault injections and concurrent requests were tried.

Tests count a case (`counters.tried`) only after asserting that it was handled: rejected with a clear error
naming the input, or processed correctly. A failing test fails the run, so "all handled" is true when it prints
after a green run.
"""

from tests.robustness.counters import TRIED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not TRIED:
        return
    failed = len(terminalreporter.stats.get("failed", [])) + len(terminalreporter.stats.get("error", []))
    verdict = "all handled" if failed == 0 else f"{failed} test(s) FAILED"
    terminalreporter.write_line(
        f"robustness: {TRIED['bad inputs']} bad inputs, {TRIED['fault injections']} fault injections, "
        f"{TRIED['concurrent requests']} concurrent requests tried, {verdict}"
    )
