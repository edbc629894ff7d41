"""Connection helpers shared by the engine modules: opening a file, and one transaction shape."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path
from typing import Iterator, Union

# How long a writer waits for another writer before giving up (milliseconds). Imports of a million
# rows take tens of seconds, so a second importer or a migration run has to be patient.
BUSY_TIMEOUT_MS = 300_000


def connect(path: Union[str, Path]) -> sqlite3.Connection:
    """Open a database file for the engine: autocommit mode, WAL, a generous busy timeout."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    enable_wal(conn)
    return conn


def enable_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL so that readers keep answering during a long write.

    Only possible outside a transaction and for a file database; otherwise it is left as it is.
    """
    if conn.in_transaction:
        return
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if mode in ("wal", "memory"):
        return
    # Changing the journal mode needs the file to itself, and SQLite answers "locked" at once rather than
    # waiting through busy_timeout when another connection is using it (two commands started together).
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = wal")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, name: str = "glyph") -> Iterator[sqlite3.Connection]:
    """All or nothing: BEGIN IMMEDIATE ... COMMIT, or a SAVEPOINT when a transaction is already open.

    Datasette 1.0a wraps write functions in its own BEGIN; 0.65 and the command line do not.
    """
    if conn.in_transaction:
        conn.execute(f"SAVEPOINT {name}")
        try:
            yield conn
        except BaseException:
            conn.execute(f"ROLLBACK TO {name}")
            conn.execute(f"RELEASE {name}")
            raise
        conn.execute(f"RELEASE {name}")
    else:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
