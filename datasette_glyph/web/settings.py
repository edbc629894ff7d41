"""The plugin's settings and the database it serves: configuration with defaults, which database is glyph's,
and whether this server may write."""

from __future__ import annotations

import os
import sqlite3
from typing import Optional

import click
from datasette.utils import StartupError

from ..engine.sqlite import open_read_only
from ..engine.sqlite import unwritable as file_unwritable

PLUGIN_NAME = "datasette-glyph"


DEFAULTS = {
    "database": None,  # name of the database glyph works on; default: "glyph", else the first mutable one
    "migrate": False,  # apply pending migrations at startup (only to an empty or already managed database)
    "max_upload_bytes": 512 * 1024 * 1024,  # larger uploads are refused with 413
    "allow_import": None,  # a Datasette allow block granting glyph-import
    "allow_rollback": None,  # a Datasette allow block granting glyph-rollback
    "max_json_bytes": 32 * 1024 * 1024,  # cap on a JSON import body (streamed to a temp file, read record by record)
    # folder for upload temp files, private (0700); default: datasette-glyph-uploads-<uid> in the temp dir
    "upload_dir": None,
    "read_only": False,  # a replica: refuse every write with 503, hide the upload page, never migrate
    "primary_url": None,  # where writes go when this server is read-only, named in the 503
    "write_wait_ms": 30_000,  # how long an import or rollback waits for another process's write lock before a 503
    "read_time_limit_ms": 30_000,  # how long a diff or listing history may take before it is stopped with a 503
    "read_threads": 1,  # threads (and connections) for diffs and history, apart from Datasette's own readers
    "keep_files": True,  # keep each import's original file (compressed) for download and re-import
    # the SQLite database of kept originals (recorded by the store on first use); default: <database>-files.db
    "files_db": None,
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
            conn = open_read_only(path)
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


# Database files found unwritable at startup (a read-only file or filesystem): served read-only.
_unwritable: set = set()


def read_only(datasette) -> bool:
    """True when this server must not write: configured ``read_only`` (a replica), an immutable database, or a
    file that startup found it cannot write."""
    db = glyph_database(datasette)
    return bool(plugin_config(datasette)["read_only"]) or not db.is_mutable or db.path in _unwritable


def unwritable(db) -> Optional[str]:
    """Why the database file (or its folder, where SQLite keeps its journal) cannot be written, or None."""
    if not db.path or db.is_memory:
        return None
    return file_unwritable(db.path)


def mark_unwritable(db) -> None:
    _unwritable.add(db.path)
