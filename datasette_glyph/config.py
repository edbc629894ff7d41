"""Plugin configuration and the bridge from async views to the synchronous engine."""

from __future__ import annotations

import inspect
import os
import sqlite3

import click
from datasette.utils import StartupError

PLUGIN_NAME = "datasette-glyph"

DEFAULTS = {
    "database": None,  # name of the database glyph works on; default: "glyph", else the first mutable one
    "migrate": False,  # apply pending migrations at startup (only to an empty or already managed database)
    "max_upload_bytes": 512 * 1024 * 1024,  # larger uploads are refused with 413
    "allow_import": None,  # a Datasette allow block granting glyph-import
    "allow_rollback": None,  # a Datasette allow block granting glyph-rollback
    "max_json_bytes": 32 * 1024 * 1024,  # cap on a JSON import body, which is parsed in memory
    "upload_dir": None,  # folder for upload temp files; default: datasette-glyph-uploads in the system temp dir
}


def plugin_config(datasette) -> dict:
    """The plugin's configuration with defaults filled in."""
    config = dict(DEFAULTS)
    config.update(datasette.plugin_config(PLUGIN_NAME) or {})
    return config


class DatabaseNotServed(Exception):
    """The configuration names a database the server does not serve."""


class GlyphStartupError(StartupError, click.ClickException):
    """Datasette must not start. Datasette 1.0a prints a StartupError as one line; 0.65 lets it through to
    click, which prints a ClickException as one line too (``Error: ...``) instead of a traceback."""


def remove_empty_files(datasette) -> list:
    """Remove served database files that hold nothing at all (as ``--create`` makes them); return their paths.

    Called when the server refuses to start, so that a mistyped command leaves no empty database behind.
    """
    removed = []
    for db in datasette.databases.values():
        path = getattr(db, "path", None)
        if not path or db.is_memory or not db.is_mutable or not os.path.isfile(path):
            continue
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                empty = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
            finally:
                conn.close()
        except sqlite3.Error:
            continue
        if empty and os.path.getsize(path) <= 4096 and not os.path.exists(path + "-wal"):
            os.remove(path)
            removed.append(path)
    return removed


def glyph_database(datasette):
    """The Datasette database object glyph reads and writes.

    The one named by the ``database`` setting; without it, the database called ``glyph``, else the first
    mutable database file served (so ``datasette listings.db`` works with the demo metadata). Raises
    ``DatabaseNotServed`` when the setting names a database that is not being served.
    """
    name = plugin_config(datasette)["database"]
    if name:
        if name not in datasette.databases:
            served = ", ".join(n for n in datasette.databases if n != "_internal") or "none"
            raise DatabaseNotServed(
                f"datasette-glyph is configured to use the database {name!r}, which is not being served "
                f"(serving: {served}); serve {name}.db or change plugins: datasette-glyph: database"
            )
        return datasette.get_database(name)
    if "glyph" in datasette.databases:
        return datasette.get_database("glyph")
    for db in datasette.databases.values():
        if db.is_mutable and not db.is_memory:
            return db
    return datasette.get_database()


async def run_write(db, fn):
    """Run ``fn(conn)`` on the database's write thread, letting ``fn`` manage its own transaction.

    Datasette 1.0a wraps write functions in BEGIN IMMEDIATE unless told not to; 0.65 never does. The
    engine opens its own transaction (or a savepoint inside one), so the result is the same on both.
    """
    if "transaction" in inspect.signature(db.execute_write_fn).parameters:
        return await db.execute_write_fn(fn, block=True, transaction=False)
    return await db.execute_write_fn(fn, block=True)
