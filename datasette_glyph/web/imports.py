"""Imports as a resource: ``POST /api/import`` and ``/api/persist/listings``, the list and detail of imports,
rollback, and their pages (upload, list, detail)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sqlite3
from typing import Optional
from urllib.parse import quote, urlencode

from datasette.utils.asgi import BadRequest, Forbidden, NotFound, Response
from datasette.views.base import DatasetteError

from ..engine import files, idempotency, lineage
from ..engine.columns import LINEAGE_COLUMNS
from ..engine.errors import ImportFailed
from ..engine.importer import import_csv, import_json, import_records
from ..engine.json_source import InvalidJson, scan_json
from ..engine.listings import InvalidParameter, parse_int
from ..engine.sqlite import StorageError
from ..formats import import_label, utc_z
from . import files as file_views
from . import uploads
from .bridge import run_guarded_write
from .charts import price_chart
from .csrf import csrf_ok
from .diff import COMPARE_CHOICES
from .http import (
    actor_id,
    diff_url,
    error,
    errors_response,
    file_url,
    import_url,
    json_text_response,
    method_not_allowed,
    ok_response,
    ok_text,
    parameter_error,
    read_only_message,
    refuse_if_read_only,
    rows_url,
    url_id,
    who,
)
from .permissions import can_import, can_rollback, can_view_table, ensure_can_view, offers_import
from .settings import glyph_database, plugin_config, read_only

MAX_ERRORS = 50  # errors listed in a 422, as the importer lists them


IMPORTS_PAGE_SIZE = 50


MAX_IMPORTS_PAGE_SIZE = 500


def _import_links(datasette, db_name: str, import_id: str) -> dict:
    query = "?" + urlencode({"import_id": import_id})
    return {
        "rows": datasette.urls.table(db_name, "scored_listings") + query,
        "json": datasette.urls.table(db_name, "scored_listings", format="json") + query,
        "api": datasette.urls.path("/api/listings") + query,
    }


async def _records_from_json(path):
    # Read through once on a worker thread, not the event loop; the import reads it again on the write thread.
    try:
        return await asyncio.get_running_loop().run_in_executor(None, scan_json, path)
    except InvalidJson as e:
        message = str(e)
    raise uploads.UploadError(400, message)  # outside the except: the parser's frames are not kept with it


async def import_view(request, datasette):
    """``POST /api/import``: a CSV file as the multipart field ``file`` (optional fields ``source`` and
    ``description``), or a JSON array of listing objects. Answers with the import result."""
    refused = await _import_refused(request, datasette)
    if refused:
        return refused
    config = plugin_config(datasette)
    db = glyph_database(datasette)
    importer_id = actor_id(request.actor)
    media, _ = uploads.content_type(request.headers)
    try:
        key = idempotency.key_from(request.headers)
    except idempotency.KeyRefused as e:
        return errors_response(e.status, [e.message])
    try:
        if media == "multipart/form-data":
            max_bytes = config["max_upload_bytes"]
            uploads.check_content_length(request.headers, max_bytes)
            directory = uploads.upload_dir(config["upload_dir"])
            async with uploads.multipart_upload(request.receive, request.headers, directory, max_bytes) as upload:
                fields = upload.fields
                source, description = fields.get("source") or None, fields.get("description") or None
                once = _Once(key, importer_id, upload.sha256, source, description, _answer(datasette, db.name))

                def write(conn):
                    first = once.first_answer(conn)
                    if first is not None:
                        return first
                    original = file_views.new_original(datasette, conn, files.CSV_TYPE)
                    # A file object, not the path: with no file name from the client, the engine would
                    # record the temp file's path as the name.
                    with open(upload.path, "rb") as f:
                        return import_csv(
                            conn,
                            f,
                            expected_sha256=upload.sha256,
                            filename=upload.filename,
                            source_name=source,
                            description=description,
                            actor=importer_id,
                            original=original,
                            before_commit=once.remember,
                        )

                return await _run_import(datasette, db, write, once)
        elif media == "application/json":
            return await _import_json(request, datasette, config, db, importer_id, key=key)
        else:
            got = f"Content-Type {media!r}" if media else "no Content-Type"
            return errors_response(
                400,
                [f"Send multipart/form-data with the CSV file as the field 'file', or application/json; got {got}"],
            )
    except uploads.UploadError as e:
        return errors_response(e.status, [e.message])


async def _import_refused(request, datasette) -> Optional[Response]:
    """The refusal of an import request before its body is read (method, read-only server, permission, CSRF)."""
    if request.method != "POST":
        return method_not_allowed(request, "POST")
    refused = refuse_if_read_only(datasette)
    if refused:
        return refused
    actor = request.actor
    if not await can_import(datasette, actor):
        return errors_response(403, [f"{who(actor)} may not import: the glyph-import permission is required"])
    if not csrf_ok(request):
        return errors_response(
            403,
            ["CSRF check failed: send the ds_csrftoken cookie's value in an X-CSRFToken header"],
        )
    return None


class _Once:
    """A request's Idempotency-Key (or None), and what identifies the request it came with (see idempotency).

    ``answer(result)`` is the text of the answer to an import; the key keeps exactly that text, and the view sends
    the same (``text``), so that a replay is the first answer byte for byte.
    """

    def __init__(self, key: Optional[str], actor: Optional[str], sha256: str, source, description, answer):
        self.key, self.actor, self.answer = key, actor, answer
        self.request_sha256 = idempotency.fingerprint(sha256, source, description)
        self.text: Optional[str] = None

    def first_answer(self, conn) -> Optional["_Replayed"]:
        if self.key is None:
            return None
        first = idempotency.first_answer(conn, self.key, self.actor, self.request_sha256)
        return _Replayed(first, self.answer) if first is not None else None

    def remember(self, conn, result) -> None:
        if self.key is not None:
            self.text = self.answer(result)
            idempotency.remember(conn, self.key, self.actor, self.request_sha256, result.import_id, self.text)


class _Replayed:
    """The first answer to a request sent again with its Idempotency-Key: its text, as it was sent."""

    def __init__(self, stored: str, answer):
        kept = json.loads(stored)
        # Keys kept before answers were kept whole hold the import result alone: answered as it was answered then.
        self.text = stored if "ok" in kept else answer(_Result(kept))


class _Result:
    """An import result read back from a key kept before answers were kept whole."""

    def __init__(self, body: dict):
        self.body = body
        self.import_id = body["import_id"]

    def to_dict(self) -> dict:
        return dict(self.body)


def _answer(datasette, db_name: str):
    """``answer(result)``: the text of the answer to an import that made ``result``."""

    def answer(result) -> str:
        body = result.to_dict()
        body["links"] = _import_links(datasette, db_name, body["import_id"])
        return ok_text(body)

    return answer


async def _import_json(request, datasette, config, db, importer_id, prepare=None, key=None) -> Response:
    """Import the JSON array in the request body; ``prepare(records)`` may check or reshape the records first.

    The body is streamed to a temp file and checked there on a worker thread (syntax, nesting, keys). Without
    ``prepare`` the import then reads it record by record; with it the records are loaded as a list first.
    """
    max_bytes = min(config["max_json_bytes"], config["max_upload_bytes"])
    uploads.check_content_length(request.headers, max_bytes)
    source = request.args.get("source") or None
    description = request.args.get("description") or None
    empty = "The request body is empty; send a JSON array of listing objects"
    directory = uploads.upload_dir(config["upload_dir"])
    async with uploads.body_upload(request.receive, directory, max_bytes, empty) as upload:
        once = _Once(key, importer_id, upload.sha256, source, description, _answer(datasette, db.name))
        body = await _records_from_json(upload.path)
        if prepare:
            try:
                records = await asyncio.get_running_loop().run_in_executor(None, _load_json, upload.path, upload.sha256)
            except StorageError as e:
                return errors_response(e.status, [str(e)])
            try:
                records = prepare(records)
            except ImportFailed as e:
                return errors_response(422, e.errors, more=e.more)

            def write(conn):
                # The body as received is the original: it is compressed from its temp file when the batch is kept.
                return once.first_answer(conn) or import_records(
                    conn,
                    records,
                    received=(upload.sha256, upload.size),  # the body, as kept
                    source_name=source,
                    description=description,
                    actor=importer_id,
                    original=file_views.new_original(datasette, conn, files.JSON_TYPE, source_path=upload.path),
                    before_commit=once.remember,
                )

        else:

            def write(conn):
                return once.first_answer(conn) or import_json(
                    conn,
                    body,
                    expected_sha256=upload.sha256,
                    source_name=source,
                    description=description,
                    actor=importer_id,
                    original=file_views.new_original(datasette, conn, files.JSON_TYPE),
                    before_commit=once.remember,
                )

        return await _run_import(datasette, db, write, once)


def _load_json(path, sha256: str) -> list:
    # Only after scan_json accepted the body: valid JSON, an array, nested at most MAX_JSON_DEPTH levels.
    with open(path, "rb") as f:
        body = f.read()
    if hashlib.sha256(body).hexdigest() != sha256:  # the records are recorded as the body received
        raise StorageError("changed", "the import")
    return json.loads(body)


LINEAGE_KEYS = LINEAGE_COLUMNS


def _without_lineage(records: list) -> list:
    """The records without ``import_id`` / ``import_index``, which the server assigns. Old clients send them as
    null; a value is refused (422) rather than silently replaced, since the client meant something by it."""
    errors = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            continue  # the importer names a record that is not an object
        for key in LINEAGE_KEYS:
            if record.get(key) is not None:
                value = json.dumps(record[key])
                errors.append(
                    error(
                        f"Record {number}, column {key}: lineage is assigned by the server; send null, not {value}",
                        line=None,
                        column=key,
                        value=value,
                    )
                )
    if errors:
        raise ImportFailed(errors[:MAX_ERRORS], max(0, len(errors) - MAX_ERRORS))
    return [{k: v for k, v in r.items() if k not in LINEAGE_KEYS} if isinstance(r, dict) else r for r in records]


async def persist_view(request, datasette):
    """``POST /api/persist/listings``: the old store's JSON import, a JSON array of listing DTOs with ``import_id``
    and ``import_index`` null. Answers as ``POST /api/import`` does; errors also carry the old ``detail`` key."""
    refused = await _import_refused(request, datasette)
    if refused:
        return refused
    media, _ = uploads.content_type(request.headers)
    if media != "application/json":
        got = f"Content-Type {media!r}" if media else "no Content-Type"
        return errors_response(400, [f"Send a JSON array of listing objects as application/json; got {got}"])
    config = plugin_config(datasette)
    try:
        key = idempotency.key_from(request.headers)
        return await _import_json(
            request, datasette, config, glyph_database(datasette), actor_id(request.actor), _without_lineage, key=key
        )
    except idempotency.KeyRefused as e:
        return errors_response(e.status, [e.message])
    except uploads.UploadError as e:
        return errors_response(e.status, [e.message])


# Marks the view whose errors also carry the old store's ``detail`` (see http.with_detail).
persist_view.legacy_detail = True


async def _run_import(datasette, db, write, once: _Once) -> Response:
    try:
        result = await run_guarded_write(datasette, db, write)
    except ImportFailed as e:
        return errors_response(422, e.errors, more=e.more)
    except StorageError as e:
        return errors_response(e.status, [str(e)])
    except (idempotency.KeyRefused, files.FileStoreError) as e:
        return errors_response(e.status, [e.message])
    if isinstance(result, _Replayed):
        return json_text_response(result.text, headers={idempotency.REPLAYED_HEADER: "true"})
    # The text the key kept, if there is one: the same bytes as any replay of it.
    return json_text_response(once.text if once.text is not None else once.answer(result))


async def imports_view(request, datasette):
    """``GET /api/imports``: batch records, newest first, ``{"imports": [...], "total": N, "next": url}``."""
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "import_batches"):
        return errors_response(403, ["You may not view import_batches"])
    try:
        limit = parse_int(request.args, "limit", IMPORTS_PAGE_SIZE, 1, MAX_IMPORTS_PAGE_SIZE)
        offset = parse_int(request.args, "offset", 0, 0)
    except InvalidParameter as e:
        return errors_response(422, [parameter_error(e)])

    def read(conn):
        imports = lineage.list_imports(conn, limit=limit, offset=offset)
        return files.with_kept_files(conn, imports), lineage.count_imports(conn)

    imports, total = await db.execute_fn(read)
    next_url = None
    if offset + limit < total:
        path = datasette.urls.path("/api/imports") + "?" + urlencode({"limit": limit, "offset": offset + limit})
        next_url = datasette.absolute_url(request, path)
    return ok_response({"imports": imports, "total": total, "next": next_url})


async def import_detail_view(request, datasette):
    """``GET /api/imports/<import_id>``: the batch record plus per-model counts and prices. ``DELETE`` rolls
    the batch back."""
    if request.method == "DELETE":
        return await rollback_view(request, datasette)
    if request.method != "GET":
        return method_not_allowed(request, "GET, DELETE")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "import_batches"):
        return errors_response(403, ["You may not view import_batches"])
    import_id = url_id(request, "import_id")

    def read(conn):
        batch = lineage.get_import(conn, import_id)
        return files.with_kept_files(conn, [batch])[0] if batch is not None else None

    batch = await db.execute_fn(read)
    if batch is None:
        return errors_response(404, [f"No import with import_id {import_id!r}"])
    return ok_response(batch)


async def rollback_view(request, datasette):
    """``DELETE /api/imports/<import_id>``: remove every row of the batch, keep its record as ``rolled_back``.

    Needs the glyph-rollback permission. 404 for an unknown import, 409 for one already rolled back.
    """
    refused = refuse_if_read_only(datasette)
    if refused:
        return refused
    actor = request.actor
    if not await can_rollback(datasette, actor):
        return errors_response(
            403, [f"{who(actor)} may not roll back imports: the glyph-rollback permission is required"]
        )
    import_id = url_id(request, "import_id")
    db = glyph_database(datasette)
    try:
        result = await run_guarded_write(
            datasette, db, lambda conn: lineage.rollback_import(conn, import_id, actor=actor_id(actor))
        )
    except lineage.UnknownImport as e:
        return errors_response(404, [str(e)])
    except lineage.AlreadyRolledBack as e:
        by = f" by {e.rolled_back_by}" if e.rolled_back_by else ""
        return errors_response(409, [f"Import {import_id} was already rolled back at {utc_z(e.rolled_back_at)}{by}"])
    except sqlite3.Error as e:
        return errors_response(500, [f"Rollback of {import_id} failed: {e}. Nothing was changed."])
    return ok_response(
        {
            "import_id": result.import_id,
            "status": "rolled_back",
            "rolled_back_at": result.rolled_back_at,
            "rolled_back_by": result.rolled_back_by,
            "removed": {
                "scored_listings": result.scored_listings,
                "listings": result.listings,
                "quantized_listings": result.quantized_listings,
                "models": result.models,
            },
        }
    )


IMPORTS_PER_PAGE = 50


# Record fields shown on a batch page, in order, with their labels.
BATCH_FIELDS = (
    ("import_id", "Import id"),
    ("filename", "File"),
    ("source", "Source"),
    ("description", "Description"),
    ("status", "Status"),
    ("record_count", "Rows"),
    ("imported_at", "Imported at"),
    ("started_at", "Started at"),
    ("finished_at", "Finished at"),
    ("actor", "Actor"),
    ("bytes", "Bytes"),
    ("sha256", "SHA-256"),
    ("rolled_back_at", "Rolled back at"),
    ("rolled_back_by", "Rolled back by"),
)


# Beyond this the page's offset would not fit SQLite's 64-bit integers; no database holds that many batches.
MAX_PAGE = (2**63 - 1) // IMPORTS_PER_PAGE


async def import_page(datasette, request):
    """``/-/glyph/import``: pick or drop a CSV file and upload it to the import API, with progress."""
    if read_only(datasette):
        raise DatasetteError(read_only_message(datasette), title="Read-only server", status=503)
    if not await can_import(datasette, request.actor):
        raise Forbidden("You do not have permission to import listings (glyph-import)")
    db = glyph_database(datasette)
    context = {
        "glyph_database": db.name,
        "api_url": datasette.urls.path("/api/import"),
        "imports_url": datasette.urls.path("/-/glyph/imports"),
        "rows_url": datasette.urls.table(db.name, "scored_listings"),
        "max_upload_bytes": plugin_config(datasette)["max_upload_bytes"],
    }
    return Response.html(await datasette.render_template("glyph_import.html", context, request=request))


async def imports_page(datasette, request):
    """``/-/glyph/imports``: every batch, newest first, linking to its page and to its rows."""
    db = glyph_database(datasette)
    await ensure_can_view(datasette, request.actor, db.name)
    page = _page_number(request.args.get("page"))
    offset = (page - 1) * IMPORTS_PER_PAGE

    def read(conn):
        batches = lineage.list_imports(conn, limit=IMPORTS_PER_PAGE, offset=offset)
        return lineage.count_imports(conn), files.with_kept_files(conn, batches)

    total, batches = await db.execute_fn(read)
    pages = max(1, math.ceil(total / IMPORTS_PER_PAGE))
    if page > pages:
        raise NotFound(f"There is no page {page} of imports; there are {pages}")
    for batch in batches:
        batch["page_url"] = import_url(datasette, batch["import_id"])
        batch["rows_url"] = rows_url(datasette, db.name, batch["import_id"])
        batch["file_url"] = file_url(datasette, batch["import_id"]) if batch["file_kept"] else None
    context = {
        "glyph_database": db.name,
        "batches": batches,
        "total": total,
        "page": page,
        "pages": pages,
        "previous_url": _imports_page_url(datasette, page - 1) if page > 1 else None,
        "next_url": _imports_page_url(datasette, page + 1) if page < pages else None,
        "imports_table_url": datasette.urls.table(db.name, "import_batches"),
        "history_url": datasette.urls.path("/-/glyph/history"),
        "import_url": (
            datasette.urls.path("/-/glyph/import") if await offers_import(datasette, request.actor) else None
        ),
    }
    return Response.html(await datasette.render_template("glyph_imports.html", context, request=request))


async def import_detail_page(datasette, request):
    """``/-/glyph/imports/<import_id>``: the batch record, a per-model price summary and its chart, and what can
    be done with the batch: browse its rows, compare it with another import, roll it back."""
    db = glyph_database(datasette)
    await ensure_can_view(datasette, request.actor, db.name)
    import_id = url_id(request, "import_id")

    def read(conn):
        batch = lineage.get_import(conn, import_id)
        if batch is None:
            return None, None, []
        batch.update(files.kept_files(conn, [import_id])[import_id])
        previous = lineage.previous_import(conn, import_id)
        others = [b for b in lineage.list_imports(conn, limit=COMPARE_CHOICES + 1) if b["import_id"] != import_id]
        return batch, previous, others[:COMPARE_CHOICES]

    batch, previous, others = await db.execute_fn(read)
    if batch is None:
        raise NotFound(f"No import with id {import_id}")
    previous_id = previous.get("import_id") if isinstance(previous, dict) else previous
    models = batch.pop("models")
    for model in models:
        model["rows_url"] = rows_url(datasette, db.name, import_id, canonical_model=model["canonical_model"])
    rolled_back = batch.get("status") == "rolled_back"
    kept = batch.pop("file_kept")
    file_bytes, reimport_of = batch.pop("file_bytes"), batch.pop("reimport_of")
    batch.pop("file_stored_bytes")
    context = {
        "file_url": file_url(datasette, import_id) if kept else None,
        "file_bytes": file_bytes,
        "reimport_of_url": import_url(datasette, reimport_of) if reimport_of else None,
        "reimport_of": reimport_of,
        "reimport_url": (
            datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}/reimport")
            if kept and not read_only(datasette) and await can_import(datasette, request.actor)
            else None
        ),
        "glyph_database": db.name,
        "batch": batch,
        "rolled_back": rolled_back,
        "fields": [(key, label, batch.get(key)) for key, label in BATCH_FIELDS if batch.get(key) not in (None, "")],
        # The moment the batch committed, in the form `litestream restore -timestamp` takes (docs/deploy.md)
        "restore_timestamp": utc_z(batch.get("imported_at")) if batch.get("imported_at") else None,
        "title": batch.get("filename") or batch.get("description") or import_id,
        "models": models,
        "chart": price_chart(models),
        "rows_url": rows_url(datasette, db.name, import_id),
        "imports_url": datasette.urls.path("/-/glyph/imports"),
        "json_url": datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}"),
        "import_row_url": datasette.urls.table(db.name, "import_batches")
        + "?"
        + urlencode({"import_id": import_id, "_nosuggest": 1}),
        "diff_url": diff_url(datasette, previous_id, import_id) if previous_id else None,
        "compare_url": datasette.urls.path("/-/glyph/compare"),
        "compare_choices": [
            {"import_id": b["import_id"], "label": import_label(b), "selected": b["import_id"] == previous_id}
            for b in others
        ],
        "rollback_url": (
            datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}")
            if not rolled_back and not read_only(datasette) and await can_rollback(datasette, request.actor)
            else None
        ),
    }
    return Response.html(await datasette.render_template("glyph_import_detail.html", context, request=request))


def _page_number(value) -> int:
    """``?page=`` as a number from 1 to MAX_PAGE: ASCII digits only (``str.isdigit`` also takes ``²``)."""
    if value is None:
        return 1
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise BadRequest(f"page must be a whole number from 1 up, not {value!r}")
    if int(value) > MAX_PAGE:
        raise NotFound(f"There is no page {value} of imports")
    return int(value)


def _imports_page_url(datasette, page: int) -> str:
    path = datasette.urls.path("/-/glyph/imports")
    return path if page == 1 else f"{path}?page={page}"
