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
    "max_json_bytes": 32 * 1024 * 1024,  # cap on a JSON import body, which is parsed in memory
    "upload_dir": None,  # folder for upload temp files; default: datasette-glyph-uploads in the system temp dir
    "read_only": False,  # a replica: refuse every write with 503, hide the upload page, never migrate
    "primary_url": None,  # where writes go when this server is read-only, named in the 503
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


def read_only(datasette) -> bool:
    """True when this server must not write: configured ``read_only`` (a replica) or an immutable database."""
    return bool(plugin_config(datasette)["read_only"]) or not glyph_database(datasette).is_mutable


async def run_write(db, fn):
    """Run ``fn(conn)`` on the database's write thread, letting ``fn`` manage its own transaction.

    Datasette 1.0a wraps write functions in BEGIN IMMEDIATE unless told not to; 0.65 never does. The
    engine opens its own transaction (or a savepoint inside one), so the result is the same on both.
    """
    if "transaction" in inspect.signature(db.execute_write_fn).parameters:
        return await db.execute_write_fn(fn, block=True, transaction=False)
    return await db.execute_write_fn(fn, block=True)
