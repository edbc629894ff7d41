"""JSON API views: import, listings and import batches.

Each view checks permissions, parses the request, and calls the engine: writes through ``run_guarded_write`` on the
database's write thread, reads through ``db.execute_fn``. Answers follow ``responses``: ``{"ok": true, ...}``, or
``{"ok": false, "errors": [{"message": ...}], "more": N}``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import sys
from typing import Optional
from urllib.parse import urlencode

from datasette.utils.asgi import Response

from . import files, idempotency, lineage, routes_files, uploads
from .config import glyph_database, plugin_config, run_guarded_write
from .db import StorageError
from .formats import utc_z
from .importer import ImportFailed, InvalidJson, import_csv, import_json, import_records, scan_json
from .listings import ConflictingParameters, InvalidParameter, ListingQuery, find_listings, parse_int
from .permissions import can_import, can_rollback, can_view_table
from .responses import (
    actor_id,
    error,
    errors_response,
    method_not_allowed,
    ok_response,
    refuse_if_read_only,
    url_id,
    who,
)

IMPORT_PATH = "/api/import"
PERSIST_PATH = "/api/persist/listings"  # the old store's JSON import URL
MAX_ERRORS = 50  # errors listed in a 422, as the importer lists them
IMPORTS_PAGE_SIZE = 50
MAX_IMPORTS_PAGE_SIZE = 500

# Set on the ASGI scope by ``skip_csrf`` when Datasette 0.65's token check is left to ``import_view``.
CSRF_DEFERRED = "datasette_glyph.csrf_deferred"


# Import ------------------------------------------------------------------------------------------------------


def skip_csrf(datasette, scope) -> bool:
    """Datasette 0.65: take over the CSRF check for ``POST /api/import``.

    asgi-csrf looks for a token inside a cookie-authenticated multipart body, and with current python-multipart
    releases that parse crashes (a 500). ``import_view`` applies the same rule itself, before reading the body:
    a request carrying cookies must send the ``ds_csrftoken`` cookie's value as ``X-CSRFToken`` (asgi-csrf has
    already let through requests with a matching header or no cookies; it only asks this hook about the rest)
    or authenticate with ``Authorization: Bearer``. Datasette 1.0a checks Origin / Sec-Fetch-Site instead and
    never calls this hook.
    """
    if scope.get("method") == "POST" and scope.get("path") in (
        datasette.urls.path(IMPORT_PATH),
        datasette.urls.path(PERSIST_PATH),
    ):
        scope[CSRF_DEFERRED] = True
        return True
    return False


def _csrf_ok(request) -> bool:
    if not request.scope.get(CSRF_DEFERRED):
        return True
    if request.headers.get("authorization", "").startswith("Bearer "):
        return True
    token = request.scope["csrftoken"]()
    # as bytes: compare_digest refuses str with non-ASCII characters, which a header may carry
    return secrets.compare_digest(request.headers.get("x-csrftoken", "").encode(), token.encode())


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
                original = routes_files.new_original(datasette, files.CSV_TYPE)

                source, description = fields.get("source") or None, fields.get("description") or None
                once = _Once(key, importer_id, upload.sha256, source, description)

                def write(conn):
                    first = once.first_answer(conn)
                    if first is not None:
                        return first
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

                return await _run_import(datasette, db, write)
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
    if not _csrf_ok(request):
        return errors_response(
            403,
            ["CSRF check failed: send the ds_csrftoken cookie's value in an X-CSRFToken header"],
        )
    return None


class _Once:
    """A request's Idempotency-Key (or None), and what identifies the request it came with (see idempotency)."""

    def __init__(self, key: Optional[str], actor: Optional[str], sha256: str, source, description):
        self.key, self.actor = key, actor
        self.request_sha256 = idempotency.fingerprint(sha256, source, description)

    def first_answer(self, conn) -> Optional["_Replayed"]:
        if self.key is None:
            return None
        first = idempotency.first_answer(conn, self.key, self.actor, self.request_sha256)
        return _Replayed(first) if first is not None else None

    def remember(self, conn, result) -> None:
        if self.key is not None:
            idempotency.remember(conn, self.key, self.actor, self.request_sha256, result.to_dict())


class _Replayed:
    """The first answer to a request sent again with its Idempotency-Key."""

    def __init__(self, body: dict):
        self.body = body

    def to_dict(self) -> dict:
        return dict(self.body)


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
        once = _Once(key, importer_id, upload.sha256, source, description)
        body = await _records_from_json(upload.path)
        if prepare:
            records = await asyncio.get_running_loop().run_in_executor(None, _load_json, upload.path)
            try:
                records = prepare(records)
            except ImportFailed as e:
                return errors_response(422, e.errors, more=e.more)

            # The body as received is the original: it is compressed from its temp file when the batch is kept.
            original = routes_files.new_original(datasette, files.JSON_TYPE, source_path=upload.path)

            def write(conn):
                return once.first_answer(conn) or import_records(
                    conn,
                    records,
                    source_name=source,
                    description=description,
                    actor=importer_id,
                    original=original,
                    before_commit=once.remember,
                )

        else:
            original = routes_files.new_original(datasette, files.JSON_TYPE)

            def write(conn):
                return once.first_answer(conn) or import_json(
                    conn,
                    body,
                    expected_sha256=upload.sha256,
                    source_name=source,
                    description=description,
                    actor=importer_id,
                    original=original,
                    before_commit=once.remember,
                )

        return await _run_import(datasette, db, write)


def _load_json(path) -> list:
    # Only after scan_json accepted the body: valid JSON, an array, nested at most MAX_JSON_DEPTH levels.
    with open(path, "rb") as f:
        return json.load(f)


# The old store's import URL ------------------------------------------------------------------------------------

LINEAGE_KEYS = ("import_id", "import_index")


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


# Marks the view whose errors also carry the old store's ``detail`` (see responses.with_detail).
persist_view.legacy_detail = True


async def _run_import(datasette, db, write) -> Response:
    try:
        result = await run_guarded_write(datasette, db, write)
    except ImportFailed as e:
        return errors_response(422, e.errors, more=e.more)
    except StorageError as e:
        return errors_response(e.status, [str(e)])
    except idempotency.KeyRefused as e:
        return errors_response(e.status, [e.message])
    body = result.to_dict()
    body["links"] = _import_links(datasette, db.name, body["import_id"])
    replayed = {idempotency.REPLAYED_HEADER: "true"} if isinstance(result, _Replayed) else None
    return ok_response(body, headers=replayed)


# Listings ----------------------------------------------------------------------------------------------------


async def listings_view(request, datasette):
    """``GET /api/listings``: scored listings filtered by ``model``, ``min_price``, ``max_price``, ``import_id``;
    paginated by ``limit`` and ``offset``. A bare JSON array."""
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "scored_listings"):
        return errors_response(403, ["You may not view scored_listings"])
    try:
        query = ListingQuery.from_params(request.args)
    except InvalidParameter as e:
        return errors_response(422, [_parameter_error(e)])
    except ConflictingParameters as e:
        return errors_response(400, [str(e)])
    return Response.json(await db.execute_fn(lambda conn: find_listings(conn, query)))


# Import batches ----------------------------------------------------------------------------------------------


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
        return errors_response(422, [_parameter_error(e)])

    def read(conn):
        imports = lineage.list_imports(conn, limit=limit, offset=offset)
        return _with_file(conn, imports), lineage.count_imports(conn)

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
        return _with_file(conn, [batch])[0] if batch is not None else None

    batch = await db.execute_fn(read)
    if batch is None:
        return errors_response(404, [f"No import with import_id {import_id!r}"])
    return ok_response(batch)


def _with_file(conn, batches: list) -> list:
    """The batches with whether their original file is kept (``file_kept``), its size and ``reimport_of``."""
    kept = files.kept_files(conn, [b["import_id"] for b in batches])
    return [{**b, **kept[b["import_id"]]} for b in batches]


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


def _parameter_error(e: InvalidParameter) -> dict:
    return error(str(e), parameter=e.parameter, value=e.value)


def on_startup(datasette) -> None:
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


ROUTES = [
    (r"^/api/import$", import_view),
    (r"^/api/persist/listings$", persist_view),
    (r"^/api/listings$", listings_view),
    (r"^/api/imports$", imports_view),
    (r"^/api/imports/(?P<import_id>[^/]+)$", import_detail_view),
]
