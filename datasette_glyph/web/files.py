"""Views over kept originals: download a batch's original file, import it again.

``GET /api/imports/<import_id>/file`` checks the original against its SHA-256, then streams it, decompressing it
piece by piece on a worker thread; ``POST /api/imports/<import_id>/reimport`` makes a new batch from it. The files
database itself is ``engine/files``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Optional
from urllib.parse import quote

from ..engine import files
from ..engine.errors import ImportFailed
from ..engine.sqlite import StorageError
from .bridge import run_guarded_write
from .http import actor_id, errors_response, method_not_allowed, ok_response, refuse_if_read_only, url_id, who
from .permissions import can_import, can_rollback, can_view_table
from .settings import glyph_database, plugin_config


def files_store(datasette, conn, create: bool = True) -> Optional[files.FileStore]:
    """The glyph database's files database (its own, checked; created on first use unless only read from), or
    None for a database with no file or no files database yet. Runs on a connection to the glyph database;
    raises files.AnotherStore when the files database belongs to another store."""
    db = glyph_database(datasette)
    if not db.path or db.is_memory:
        return None
    return files.open_store(conn, db.path, plugin_config(datasette)["files_db"], create=create)


def new_original(datasette, conn, media_type: str, source_path=None) -> Optional[files.Original]:
    """Where an import's original goes, or None when files are not kept (``keep_files: false``).

    Runs on the import's connection, before its transaction; raises files.AnotherStore (503) when the files
    database belongs to another store.
    """
    if not plugin_config(datasette)["keep_files"]:
        return None
    store = files_store(datasette, conn)
    return files.Original(store, media_type, source_path=source_path) if store is not None else None


class _FileDownload:
    """An ASGI response that sends a kept original piece by piece, never holding it whole. Every piece was
    checked before the first was sent; they are read again from the same snapshot, checked again, and the last
    piece goes only once the whole file has its SHA-256 again."""

    def __init__(self, reader: files.KeptReader, import_id: str, headers: dict):
        self.reader = reader
        self.import_id = import_id
        self.headers = headers

    async def asgi_send(self, send):
        loop = asyncio.get_running_loop()
        pieces = self.reader.pieces()
        done = object()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [[k.encode("latin-1"), v.encode("latin-1")] for k, v in self.headers.items()],
                }
            )
            held = await loop.run_in_executor(None, next, pieces, done)
            while held is not done:
                following = await loop.run_in_executor(None, next, pieces, done)
                await send({"type": "http.response.body", "body": held, "more_body": following is not done})
                held = following
            if not self.reader.size:
                await send({"type": "http.response.body", "body": b""})
        except files.Damaged:
            # Changed between the check and the sending (never seen): the answer stops short of its length, so
            # no client takes it for the file.
            print(f"datasette-glyph: {files.damaged_message(self.import_id)}", file=sys.stderr)
        finally:
            await loop.run_in_executor(None, self.reader.close)


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def file_view(request, datasette):
    """``GET /api/imports/<import_id>/file``: the batch's original file as it was imported; 404 when not kept.

    Needs what reading the batch's rows needs (``scored_listings`` and ``import_batches``); a rolled-back batch's
    file needs glyph-rollback too. The whole file is checked against its SHA-256 before the first byte is sent:
    a damaged one is a 503.
    """
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    for table in ("import_batches", "scored_listings"):
        if not await can_view_table(datasette, request.actor, db.name, table):
            return errors_response(403, [f"You may not view {table}"])
    import_id = url_id(request, "import_id")

    def read(conn):
        exists = conn.execute("SELECT 1 FROM import_batches WHERE import_id = ?", [import_id]).fetchone()
        return exists is not None, files.file_row(conn, import_id)

    exists, row = await db.execute_fn(read)
    if not exists:
        return errors_response(404, [f"No import with import_id {import_id!r}"])
    if row is not None and row["status"] == "rolled_back" and not await can_rollback(datasette, request.actor):
        return errors_response(
            403,
            [
                f"Import {import_id} was rolled back: its original file is kept for re-import, and downloading it "
                f"needs the glyph-rollback permission ({who(request.actor)} has not got it)"
            ],
        )

    try:
        # Which files database, and that it is this store's (on Datasette's read connection); then the file, every
        # piece read and checked before anything is sent (on a worker thread).
        store = await db.execute_fn(lambda conn: files_store(datasette, conn, create=False))
        reader = await asyncio.get_running_loop().run_in_executor(None, files.open_verified, store, row, import_id)
    except files.FileStoreError as e:
        return errors_response(e.status, [e.message])
    media_type = row["media_type"]
    headers = {
        "content-type": f"{media_type}; charset=utf-8" if media_type == files.CSV_TYPE else media_type,
        "content-length": str(row["bytes"]),
        "content-disposition": _disposition(files.download_name(row)),
        "x-content-sha256": row["sha256"],
    }
    return _FileDownload(reader, import_id, headers)


async def reimport_view(request, datasette):
    """``POST /api/imports/<import_id>/reimport``: import the batch's kept original again as a new batch.

    Needs glyph-import. Answers as ``POST /api/import`` does, with ``reimport_of``; 404 for an unknown batch or
    one whose file was not kept.
    """
    if request.method != "POST":
        return method_not_allowed(request, "POST")
    refused = refuse_if_read_only(datasette)
    if refused:
        return refused
    actor = request.actor
    if not await can_import(datasette, actor):
        return errors_response(403, [f"{who(actor)} may not import: the glyph-import permission is required"])
    import_id = url_id(request, "import_id")
    db = glyph_database(datasette)

    def write(conn):
        return files.reimport(conn, files_store(datasette, conn, create=False), import_id, actor=actor_id(actor))

    try:
        result = await run_guarded_write(datasette, db, write)
    except files.NotReimportable as e:
        return errors_response(e.status, [str(e)])
    except files.AnotherStore as e:
        return errors_response(e.status, [e.message])
    except ImportFailed as e:
        return errors_response(422, e.errors, more=e.more)
    except StorageError as e:
        if e.kind == "changed":
            message = (
                f"The kept file of import {import_id} is damaged (its SHA-256 is not the batch's); nothing was "
                "imported. datasette glyph-files --verify reports every damaged file"
            )
            return errors_response(503, [message])
        return errors_response(e.status, [str(e)])
    body = result.to_dict()
    body["reimport_of"] = import_id
    body["links"] = {
        "import": datasette.urls.path(f"/api/imports/{quote(result.import_id, safe='')}"),
        "page": datasette.urls.path(f"/-/glyph/imports/{quote(result.import_id, safe='')}"),
    }
    return ok_response(body)
