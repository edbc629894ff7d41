"""Locks held by a real second process, and a way to see that a process is waiting for one.

SQLite's busy handler (``PRAGMA busy_timeout``) waits for a lock by sleeping and trying again, so a process that
is waiting for a lock shows, in /proc, a thread asleep in ``nanosleep``. A test holds a lock in another process,
starts the waiter, waits until the waiter is seen asleep (the state, not a time), and only then lets the lock go:
the waiter must have met the lock.
"""

from __future__ import annotations

import contextlib
import glob
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Iterator

# A second process that takes a lock on the database, says so on stdout, and keeps it until stdin closes; then
# runs what it was given on stdin as Python with ``conn`` (still in its transaction), and commits.
HOLDER = textwrap.dedent("""
    import sqlite3, sys
    conn = sqlite3.connect(sys.argv[1], isolation_level=None)
    if sys.argv[2] == "read":
        conn.execute("BEGIN")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    else:
        conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    then = sys.stdin.read()
    if then:
        sys.path[:0] = sys.argv[3:]
        exec(then)
        conn.execute("COMMIT")
    else:
        conn.execute("ROLLBACK")
    print("released", flush=True)
    """)


@contextlib.contextmanager
def lock_held_elsewhere(path, kind: str = "write", then: str = "") -> Iterator[subprocess.Popen]:
    """Another process holds a read ("read": a SHARED lock) or write ("write": RESERVED) lock on ``path`` until
    the block ends; then it runs ``then`` (Python source, with ``conn`` in the lock's transaction) and commits,
    or, with no ``then``, rolls back. The block ends only once the lock is gone."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), kind, *sys.path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline() == "locked\n", process.stderr.read()
        yield process
    finally:
        process.stdin.write(then)
        process.stdin.close()
        released = process.stdout.readline()
        error = process.stderr.read()
        process.wait(60)
    assert (released, error, process.returncode) == ("released\n", "", 0)


# The system calls a sleeping thread is in: nanosleep and clock_nanosleep
_SLEEP_CALLS = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}.get(platform.machine(), set())


def asleep(pid: int) -> bool:
    """Whether a thread of process ``pid`` is asleep in nanosleep (as SQLite's busy handler sleeps)."""
    for task in glob.glob(f"/proc/{pid}/task/*"):
        with contextlib.suppress(OSError, IndexError):
            if "nanosleep" in Path(task, "wchan").read_text():
                return True
            if Path(task, "syscall").read_text().split()[0] in _SLEEP_CALLS:
                return True
    return False


def wait_until_waiting_for_a_lock(process: subprocess.Popen, timeout: float = 120) -> None:
    """Return once ``process`` is seen asleep in its busy handler; fail if it ends first or never does."""
    deadline = time.monotonic() + timeout
    while not asleep(process.pid):
        assert process.poll() is None, f"the process ended (status {process.returncode}) instead of waiting"
        assert time.monotonic() < deadline, "the process was never seen waiting for the lock"
        time.sleep(0.005)


def running(pid: int) -> bool:
    """Whether a thread of process ``pid`` is on a CPU or ready for one (state R): it is computing."""
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if Path(stat).read_text().rsplit(")", 1)[1].split()[0] == "R":
                return True
    return False
