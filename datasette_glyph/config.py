"""Plugin configuration and the bridge from async views to the synchronous engine."""

from __future__ import annotations

import inspect

PLUGIN_NAME = "datasette-glyph"

DEFAULTS = {
    "database": None,  # name of the database glyph works on; default: "glyph", else the first mutable one
    "migrate": False,  # apply pending migrations at startup (only to an empty or already managed database)
    "max_upload_bytes": 512 * 1024 * 1024,  # larger uploads are refused with 413
    "allow_import": None,  # a Datasette allow block granting glyph-import
    "allow_rollback": None,  # a Datasette allow block granting glyph-rollback
    "max_json_bytes": 32 * 1024 * 1024,  # cap on a JSON import body (streamed to a temp file, read record by record)
    "upload_dir": None,  # folder for upload temp files, private (0700); default: datasette-glyph-uploads-<uid> in the temp dir
}


def plugin_config(datasette) -> dict:
    """The plugin's configuration with defaults filled in."""
    config = dict(DEFAULTS)
    config.update(datasette.plugin_config(PLUGIN_NAME) or {})
    return config


def glyph_database(datasette):
    """The Datasette database object glyph reads and writes."""
    name = plugin_config(datasette)["database"]
    if name:
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
