"""What the robustness suite tried; `conftest.py` prints the totals at the end of the run."""

from collections import Counter

TRIED: Counter = Counter()


def tried(kind: str, n: int = 1) -> None:
    """Count `n` handled cases of `kind`: "bad inputs", "fault injections" or "concurrent requests"."""
    TRIED[kind] += n
