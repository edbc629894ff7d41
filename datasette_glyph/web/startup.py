"""What the plugin does when Datasette starts: check the upload folder, sweep temp files and kept files that no
import names, migrate if configured."""

from __future__ import annotations

import sqlite3
import sys

from ..engine import file_upkeep, files, migrator
from . import uploads
from .bridge import run_write
from .files import files_store
from .settings import (
    DatabaseNotServed,
    GlyphStartupError,
    glyph_database,
    mark_unwritable,
    plugin_config,
    read_only,
    remove_empty_files,
    unwritable,
)


def check_upload_dir(datasette) -> None:
    """Check that the upload folder is private, and remove temp files that servers killed mid-upload left behind."""
    try:
        directory, note = uploads.check_upload_dir(plugin_config(datasette)["upload_dir"])
    except uploads.UnsafeUploadDir as e:
        # SystemExit, not StartupError: Datasette 0.65 shows a StartupError from a startup hook as a traceback.
        raise SystemExit(f"Error: datasette-glyph: {e.message}") from None
    if note:
        print(f"datasette-glyph: {note}", file=sys.stderr)
    uploads.clean_stale_uploads(directory)
    uploads.return_large_allocations()


async def sweep_at_startup(datasette, db) -> None:
    """Remove this store's kept files that no committed batch names (a server or command killed mid-import left
    them). Only ever the store's own files database: one that belongs to another store is left alone."""

    def sweep(conn):
        store = files_store(datasette, conn, create=False)
        return store, file_upkeep.sweep(conn, store)

    try:
        store, removed = await run_write(db, sweep)
    except files.AnotherStore as e:
        print(f"datasette-glyph: kept files were not swept: {e.message}", file=sys.stderr)
        return
    except (sqlite3.Error, OSError) as e:  # another process holds the database: the next start sweeps
        print(f"datasette-glyph: kept files were not swept: {e}", file=sys.stderr)
        return
    if removed:
        print(
            f"datasette-glyph: removed {len(removed)} kept file(s) that no import names from {store.path}",
            file=sys.stderr,
        )


async def startup(datasette) -> None:
    """Datasette's ``startup`` hook: refuse to start on a database that cannot be served, else sweep and migrate."""
    check_upload_dir(datasette)
    try:
        db = glyph_database(datasette)
    except DatabaseNotServed as e:
        removed = remove_empty_files(datasette)
        raise GlyphStartupError(str(e) + "".join(f"; removed the empty file {path}" for path in removed)) from None
    if not read_only(datasette) and not unwritable(db):
        await sweep_at_startup(datasette, db)
    if not plugin_config(datasette)["migrate"]:
        return
    if read_only(datasette):
        print(f"datasette-glyph: {db.name} is read-only; not migrating it", file=sys.stderr)
        return
    problem = unwritable(db)
    if problem:
        # A read-only file or filesystem: say so in one line and serve the database read-only.
        print(
            f"datasette-glyph: cannot write {db.name} ({problem}); serving it read-only, not migrating it",
            file=sys.stderr,
        )
        mark_unwritable(db)
        return
    try:
        steps = await run_write(db, migrator.migrate_if_managed)
        held = await db.execute_fn(migrator.not_glyph) if steps is None else None
    except migrator.MigrationError as e:
        raise GlyphStartupError(f"datasette-glyph could not migrate {db.name}: {e}") from None
    if steps is None:
        where = db.path or db.name
        if held:
            message = (
                f"datasette-glyph: {db.name} ({where}) is not a glyph database: {held}, so neither startup nor "
                f"glyph-migrate migrates it. {migrator.NOT_GLYPH_ADVICE}"
            )
        else:
            message = (
                f"datasette-glyph: {db.name} ({where}) was made by the old store; startup does not adopt it: "
                f"adopt it with datasette glyph-migrate {where}"
            )
        print(message, file=sys.stderr)
    for step in steps or []:
        print(f"datasette-glyph: applied {step.migration.label} ({step.direction}) to {db.name}", file=sys.stderr)
