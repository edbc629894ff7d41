"""Hostile import bodies against a real server: each refused, nothing written, and memory back where it was.

The full-size run (30 MB bodies) is ``python benchmarks/bench_hostile.py``; CI runs the same ten bodies smaller.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_hostile import BODIES, run  # noqa: E402


def test_ten_hostile_bodies_are_refused_and_leave_memory_flat():
    lines = []
    passed = run(size_mb=2, max_growth_mb=50, out=lines.append)
    assert (passed, len(lines)) == (True, 2 + len(BODIES) + 1), "\n".join(lines)
