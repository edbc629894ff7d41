"""Connections: the one place a database file is opened, whether it can be written, one transaction shape, and
storage errors named for a person."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Iterator, Optional, Union

# How long a writer waits for another writer before giving up (milliseconds). Imports of a million
# rows take tens of seconds, so a second importer or a migration run has to be patient.
BUSY_TIMEOUT_MS = 300_000


def connect(path: Union[str, Path], *, wal: bool = True) -> sqlite3.Connection:
    """Open a database file for the engine: autocommit mode, a generous busy timeout and (unless ``wal`` is False)
    WAL. The one place the package opens a connection by path; ``open_read_only`` is the other way in."""
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if wal:
        enable_wal(conn)
    return conn


def file_uri(path: Union[str, Path], **params: str) -> str:
    """A ``file:`` URI naming ``path`` exactly (``?``, ``#`` and ``%`` in a name are quoted), with query params."""
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"file:{urllib.parse.quote(os.path.abspath(os.fspath(path)))}" + (f"?{query}" if query else "")


def open_read_only(
    path: Union[str, Path], *, immutable: bool = False, busy_timeout_ms: Optional[int] = None
) -> sqlite3.Connection:
    """A read-only connection that can never create or change the file. ``immutable``: the file cannot change while
    it is open (a read-only filesystem, where SQLite cannot make its lock files; an immutable database)."""
    uri = file_uri(path, mode="ro", immutable="1") if immutable else file_uri(path, mode="ro")
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    if busy_timeout_ms is not None:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return conn


def unwritable(path: Union[str, Path]) -> Optional[str]:
    """Why the database file (or its folder, where SQLite keeps its journal) cannot be written, or None."""
    for checked in (os.fspath(path), os.path.dirname(os.path.abspath(path))):
        if os.path.exists(checked) and not os.access(checked, os.W_OK):
            return f"{checked} is not writable"
    return None


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


class StorageError(sqlite3.OperationalError):
    """The database could not keep a change: locked by another process, disk full, read-only, I/O error.

    An ``sqlite3.OperationalError``, so that code catching SQLite's errors still catches it.

    Nothing of the change was written. ``kind`` is ``busy``, ``full``, ``readonly``, ``io``, ``changed`` (the
    file being imported is not the one received) or ``reading`` (the process reading a large file for the import
    stopped: ``reading.Reader``); ``status`` is
    the HTTP status a server answers with (507 for a full disk, 503 otherwise: try again later).
    """

    MESSAGES = {
        "busy": "The database is locked by another process; {action} was not saved (nothing was written). Try again.",
        "full": "The database's disk is full; {action} was not saved (nothing was written).",
        "readonly": "The database is read-only; {action} was not saved (nothing was written).",
        "io": "The database could not be written (a disk I/O error); {action} was not saved (nothing was written).",
        "changed": (
            "The file read for {action} is not the file received (its SHA-256 differs): it was changed on disk "
            "meanwhile; {action} was not saved (nothing was written)."
        ),
        "reading": (
            "The process reading the file for {action} stopped before the file's end; {action} was not saved "
            "(nothing was written). Try again."
        ),
    }
    STATUS = {"busy": 503, "full": 507, "readonly": 503, "io": 503, "changed": 503, "reading": 503}

    def __init__(self, kind: str, action: str = "the change", detail: str = ""):
        super().__init__(self.MESSAGES[kind].format(action=action))
        self.kind = kind
        self.status = self.STATUS[kind]
        self.detail = detail  # SQLite's own words


# SQLite's primary result codes (the low byte of the extended code) that mean "could not write".
_STORAGE_CODES = {5: "busy", 6: "busy", 13: "full", 8: "readonly", 10: "io"}


def storage_kind(error: BaseException) -> Optional[str]:
    """``busy``, ``full``, ``readonly`` or ``io`` when ``error`` is SQLite failing to write; else None."""
    if not isinstance(error, sqlite3.Error):
        return None
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return _STORAGE_CODES.get(code & 0xFF)
    text = str(error)
    for needle, kind in (("locked", "busy"), ("full", "full"), ("readonly", "readonly"), ("I/O", "io")):
        if needle in text:
            return kind
    return None


def _rollback(conn: sqlite3.Connection, statement: str = "ROLLBACK") -> None:
    # SQLite rolls back by itself after some failures (a full disk, an I/O error), and not after others
    # (a COMMIT refused as busy leaves the transaction open); never leave one open behind.
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute(statement)


_opened_for_one_write = threading.local()


@contextlib.contextmanager
def opened_for_one_write(conn: sqlite3.Connection) -> Iterator[None]:
    """Around a call made just after ``BEGIN``: the first ``transaction()`` it opens on ``conn`` runs in that
    transaction itself instead of a SAVEPOINT. The caller must roll the whole transaction back if the call fails.
    """
    _opened_for_one_write.conn = conn
    try:
        yield
    finally:
        _opened_for_one_write.conn = None


@contextlib.contextmanager
def transaction(
    conn: sqlite3.Connection, name: str = "glyph", action: str = "the change"
) -> Iterator[sqlite3.Connection]:
    """All or nothing: BEGIN IMMEDIATE ... COMMIT, or a SAVEPOINT when a transaction is already open.

    Datasette 1.0a wraps write functions in its own BEGIN; 0.65 and the command line do not. When the
    COMMIT itself fails (another process still reading a rollback-journal database, a full disk), the
    transaction is rolled back and StorageError raised: the connection is never left inside a transaction
    that a later write would only add a savepoint to. A write SQLite refuses for lack of room, a lock or
    permission raises StorageError too (``action`` names the change in its message).
    """
    try:
        if conn.in_transaction and getattr(_opened_for_one_write, "conn", None) is conn:
            # The caller opened this transaction for this one change and rolls it back whole if the change fails
            # (web/bridge.py, run_guarded_write): a SAVEPOINT would only add work. Inside one, SQLite copies each
            # page that existed when it began to a sub-journal before changing it the first time; a million-row
            # import into a 5,000,000-row table spent 10 s more writing its rows and building its indexes that way.
            _opened_for_one_write.conn = None
            yield conn
        elif conn.in_transaction:
            conn.execute(f"SAVEPOINT {name}")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute(f"ROLLBACK TO {name}")
                        conn.execute(f"RELEASE {name}")
                raise
            conn.execute(f"RELEASE {name}")
        else:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
    except StorageError:
        raise
    except sqlite3.Error as e:
        kind = storage_kind(e)
        if kind is None:
            raise
        raise StorageError(kind, action, str(e)) from e
