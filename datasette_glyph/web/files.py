"""Views over kept originals: download a batch's original file, import it again.

``GET /api/imports/<import_id>/file`` streams the original, decompressing it piece by piece on a worker thread;
``POST /api/imports/<import_id>/reimport`` makes a new batch from it. The store itself is ``files``.
"""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from ..engine import files
from ..engine.errors import ImportFailed
from ..engine.sqlite import StorageError
from . import uploads
from .bridge import run_guarded_write
from .http import actor_id, errors_response, method_not_allowed, ok_response, refuse_if_read_only, url_id, who
from .permissions import can_import, can_view_table
from .settings import glyph_database, plugin_config

DOWNLOAD_CHUNK_BYTES = 256 * 1024


def store_dir(datasette, create: bool = True) -> Optional[Path]:
    """The kept files folder of the glyph database (created private unless only read from), or None for a
    database with no file."""
    db = glyph_database(datasette)
    if not db.path or db.is_memory:
        return None
    configured = plugin_config(datasette)["files_dir"]
    if not create:  # a download on a read-only server must not try to make the folder
        return Path(configured) if configured else files.default_files_dir(db.path)
    return files.files_dir(db.path, configured)


def new_original(datasette, media_type: str, source_path=None) -> Optional[files.Original]:
    """Where an import's original goes, or None when files are not kept (``keep_files: false``).

    Raises uploads.UnsafeUploadDir (503) when the folder is not private to the server's user.
    """
    if not plugin_config(datasette)["keep_files"]:
        return None
    directory = store_dir(datasette)
    return files.Original(directory, media_type, source_path=source_path) if directory is not None else None


class _FileDownload:
    """An ASGI response that sends a kept original as it is decompressed, never holding it whole."""

    def __init__(self, stream, first: bytes, headers: dict):
        self.stream = stream
        self.first = first
        self.headers = headers

    async def asgi_send(self, send):
        loop = asyncio.get_running_loop()
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [[k.encode("latin-1"), v.encode("latin-1")] for k, v in self.headers.items()],
                }
            )
            chunk = self.first
            while chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                chunk = await loop.run_in_executor(None, self.stream.read, DOWNLOAD_CHUNK_BYTES)
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.stream.close()


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def file_view(request, datasette):
    """``GET /api/imports/<import_id>/file``: the batch's original file as it was imported; 404 when not kept."""
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "import_batches"):
        return errors_response(403, ["You may not view import_batches"])
    import_id = url_id(request, "import_id")

    def read(conn):
        exists = conn.execute("SELECT 1 FROM import_batches WHERE import_id = ?", [import_id]).fetchone()
        return exists is not None, files.file_row(conn, import_id)

    exists, row = await db.execute_fn(read)
    if not exists:
        return errors_response(404, [f"No import with import_id {import_id!r}"])
    directory = store_dir(datasette, create=False)
    try:
        if directory is None:
            raise files.FileStoreError(f"The original file of import {import_id} was not kept")
        stream = await asyncio.get_running_loop().run_in_executor(None, files.open_kept, directory, row, import_id)
    except files.FileStoreError as e:
        return errors_response(e.status, [e.message])
    try:
        # The first piece is read before answering, so that a file that is not gzip at all gets a JSON answer.
        first = await asyncio.get_running_loop().run_in_executor(None, stream.read, DOWNLOAD_CHUNK_BYTES)
    except (OSError, EOFError, zlib.error):
        stream.close()
        message = (
            f"The kept file of import {import_id} is damaged and cannot be sent; datasette glyph-files --verify "
            "reports every damaged file"
        )
        return errors_response(503, [message])
    media_type = row["media_type"]
    headers = {
        "content-type": f"{media_type}; charset=utf-8" if media_type == files.CSV_TYPE else media_type,
        "content-length": str(row["bytes"]),
        "content-disposition": _disposition(files.download_name(row)),
        "x-content-sha256": row["sha256"],
    }
    return _FileDownload(stream, first, headers)


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
    try:
        directory = store_dir(datasette)
    except uploads.UnsafeUploadDir as e:
        return errors_response(e.status, [e.message])
    if directory is None:
        return errors_response(404, [f"The original file of import {import_id} was not kept"])
    try:
        result = await run_guarded_write(
            datasette, db, lambda conn: files.reimport(conn, directory, import_id, actor=actor_id(actor))
        )
    except files.NotReimportable as e:
        return errors_response(e.status, [str(e)])
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
