"""The bridge from async views to the synchronous engine.

Writes from the web (imports, rollbacks) go through ``run_guarded_write``: one transaction on the database's write
thread that waits a bounded time for SQLite's write lock and checks the schema version inside the transaction, so
that an import never lands between the steps of a running ``glyph-migrate``. Expensive reads (diffs, history) go
through ``run_expensive_read``: their own small pool of threads and read-only connections, and a time limit."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from ..engine import migrator
from ..engine.sqlite import open_read_only, opened_for_one_write
from .settings import plugin_config

# Seconds a client is told to wait (Retry-After) when the writer is busy or an expensive read was stopped.
RETRY_AFTER_SECONDS = 5


async def run_write(db, fn, block: bool = True):
    """Run ``fn(conn)`` on the database's write thread, letting ``fn`` manage its own transaction; with
    ``block=False``, queue it there and return at once.

    Datasette 1.0a wraps write functions in BEGIN IMMEDIATE unless told not to; 0.65 never does. The
    engine opens its own transaction (or a savepoint inside one), so the result is the same on both.
    """
    if "transaction" in inspect.signature(db.execute_write_fn).parameters:
        return await db.execute_write_fn(fn, block=block, transaction=False)
    return await db.execute_write_fn(fn, block=block)


class Unavailable(Exception):
    """The request cannot be served now (503); ``message`` says why and what to do, ``extra`` goes in the JSON."""

    def __init__(self, message: str, retry_after: Optional[int] = None, **extra):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.extra = extra


# The schema this package needs: the newest migration it ships.
@functools.lru_cache(maxsize=None)
def needed_version() -> Optional[str]:
    migrations = migrator.load_migrations()
    return migrations[-1].id if migrations else None


_versions: dict = {}  # (file, PRAGMA schema_version) -> glyph schema version; any schema change bumps the cookie


_versions_lock = threading.Lock()


def schema_version(conn: sqlite3.Connection, key: str) -> Optional[str]:
    """The glyph schema version of the database (None: no migration applied), cached per SQLite schema cookie."""
    cookie = conn.execute("PRAGMA schema_version").fetchone()[0]
    with _versions_lock:
        if (key, cookie) in _versions:
            return _versions[(key, cookie)]
    try:
        version = migrator.current_version(conn)
    except sqlite3.DatabaseError:
        version = None
    with _versions_lock:
        _versions[(key, cookie)] = version
    return version


def require_schema(conn: sqlite3.Connection, db) -> None:
    """Raise Unavailable unless the database is at exactly the schema version this package needs."""
    found, needed = schema_version(conn, db.path or db.name), needed_version()
    if found == needed:
        return
    command = f"datasette glyph-migrate {db.path or db.name}"
    if found is not None and needed is not None and found > needed:
        message = (
            f"The database {db.name} is at schema version {found}, newer than the {needed} this datasette-glyph "
            f"needs: upgrade datasette-glyph, or take the database back with {command} --to {needed}"
        )
    elif found is None and migrator.not_glyph(conn):
        # No migration would help: glyph-migrate refuses a database that holds other tables.
        held = migrator.not_glyph(conn)
        message = f"The database {db.name} is not a glyph database: {held}. {migrator.NOT_GLYPH_ADVICE}"
        raise Unavailable(message, schema_version=None, needed_version=needed, command=None)
    else:
        message = (
            f"The database {db.name} is at schema version {migrator.describe_version(found)}; this datasette-glyph "
            f"needs {needed}. Run {command} (if it is running, wait for it to finish)"
        )
    raise Unavailable(
        message, retry_after=RETRY_AFTER_SECONDS, schema_version=found, needed_version=needed, command=command
    )


async def check_schema(db) -> None:
    """``require_schema`` on one of Datasette's read connections."""
    await db.execute_fn(lambda conn: require_schema(conn, db))


def _locked(e: sqlite3.Error) -> bool:
    return "locked" in str(e) or "busy" in str(e)


async def run_guarded_write(datasette, db, fn):
    """Run ``fn(conn)`` on the write thread inside one transaction, for an import or a rollback.

    Waits up to ``write_wait_ms`` for SQLite's write lock (another process importing or migrating) and then raises
    Unavailable; checks the schema version inside the transaction; rolls everything back if ``fn`` or the COMMIT
    fails, so nothing is acknowledged that was not committed. ``fn`` may open its own transaction: it becomes a
    savepoint.
    """
    wait_ms = int(plugin_config(datasette)["write_wait_ms"])

    def guarded(conn):
        conn.execute(f"PRAGMA busy_timeout = {wait_ms}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if _locked(e):
                raise Unavailable(
                    f"The database {db.name} is busy: another process held its write lock for more than "
                    f"{wait_ms} ms (write_wait_ms). Nothing was written; try again.",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from None
            raise
        try:
            require_schema(conn, db)
            with opened_for_one_write(conn):  # rolled back whole below if fn fails
                result = fn(conn)
            _commit_without_checkpoint(conn)
        except BaseException as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError) and _locked(e):
                raise Unavailable(
                    f"The database {db.name} is busy (another process holds it) and the write could not be "
                    f"committed within {wait_ms} ms. Nothing was written; try again.",
                    retry_after=RETRY_AFTER_SECONDS,
                ) from None
            raise
        return result

    result = await run_write(db, guarded)
    await checkpoint_soon(db)
    return result


def _commit_without_checkpoint(conn: sqlite3.Connection) -> None:
    """COMMIT, leaving the WAL checkpoint to ``checkpoint_soon``.

    The COMMIT makes the transaction durable in the WAL (synchronous FULL, SQLite's default: the log is synced
    before COMMIT returns). The checkpoint that SQLite would then run on the same call copies the log into the
    database file; after a million-row import that took 2.4 s, and the answer need not wait for it.
    """
    autocheckpoint = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    try:
        conn.execute("COMMIT")
    finally:
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")


def _checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE, as SQLite's own automatic checkpoint: it never waits for readers, and copies what they allow.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


async def checkpoint_soon(db) -> None:
    """Queue a WAL checkpoint on the database's write thread, behind the write just made, without waiting."""
    await run_write(db, _checkpoint, block=False)


_executors: dict = {}


_executors_lock = threading.Lock()


_local = threading.local()


class ReadTimeLimit(Unavailable):
    """An expensive read ran past ``read_time_limit_ms`` and was stopped."""


def _executor(threads: int) -> ThreadPoolExecutor:
    with _executors_lock:
        if threads not in _executors:
            _executors[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="glyph-read")
        return _executors[threads]


def _read_connection(db) -> sqlite3.Connection:
    """This thread's read-only connection to the database file (one per thread and file, kept open)."""
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    key = (db.path, db.is_mutable)
    if key not in connections:
        connections[key] = open_read_only(db.path, immutable=not db.is_mutable, busy_timeout_ms=5000)
    return connections[key]


def _time_limited(fn, conn: sqlite3.Connection, deadline: float, limit_ms: int, what: str):
    if time.monotonic() >= deadline:
        raise ReadTimeLimit(_too_slow(what, limit_ms, queued=True), retry_after=RETRY_AFTER_SECONDS)
    conn.set_progress_handler(lambda: 1 if time.monotonic() >= deadline else 0, 10_000)
    try:
        return fn(conn)
    except sqlite3.OperationalError as e:
        if "interrupted" in str(e):
            raise ReadTimeLimit(_too_slow(what, limit_ms), retry_after=RETRY_AFTER_SECONDS) from None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def _too_slow(what: str, limit_ms: int, queued: bool = False) -> str:
    waited = " waiting for its turn" if queued else ""
    return (
        f"The {what} took longer than the server's limit of {limit_ms} ms{waited} (read_time_limit_ms) and was "
        "stopped; try again later, or ask for less"
    )


async def run_expensive_read(datasette, db, fn, what: str = "request"):
    """Run ``fn(conn)`` away from Datasette's own readers, stopped after ``read_time_limit_ms`` (ReadTimeLimit).

    File databases get a separate pool of ``read_threads`` threads, each with its own read-only connection, so
    that diffs and histories never occupy the threads that serve Datasette's pages. The limit counts from the
    request's arrival, waiting for a thread included. In-memory databases run on Datasette's readers, limited
    the same way.
    """
    config = plugin_config(datasette)
    limit_ms = int(config["read_time_limit_ms"])
    deadline = time.monotonic() + limit_ms / 1000
    if not db.path or db.is_memory:
        return await db.execute_fn(lambda conn: _time_limited(fn, conn, deadline, limit_ms, what))

    def work():
        return _time_limited(fn, _read_connection(db), deadline, limit_ms, what)

    return await asyncio.get_running_loop().run_in_executor(_executor(max(1, int(config["read_threads"]))), work)
