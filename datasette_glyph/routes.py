"""JSON API views: import, listings and import batches.

Each view checks permissions, parses the request, and calls the engine: writes through ``run_write`` on the
database's write thread, reads through ``db.execute_fn``. Errors are JSON: ``{"ok": false, "errors": [...]}``.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from urllib.parse import urlencode

from datasette.utils.asgi import Response

from . import lineage, uploads
from .config import glyph_database, plugin_config, run_write
from .db import StorageError
from .importer import ImportFailed, InvalidJson, import_csv, import_json, scan_json
from .listings import ConflictingParameters, InvalidParameter, ListingQuery, find_listings, parse_int
from .permissions import can_import, can_view_table

IMPORT_PATH = "/api/import"
IMPORTS_PAGE_SIZE = 50
MAX_IMPORTS_PAGE_SIZE = 500

# Set on the ASGI scope by ``skip_csrf`` when Datasette 0.65's token check is left to ``import_view``.
CSRF_DEFERRED = "datasette_glyph.csrf_deferred"


def _errors(status: int, errors, headers=None, **extra) -> Response:
    return Response.json({"ok": False, "errors": list(errors), **extra}, status=status, headers=headers)


def _method_not_allowed(request, allowed: str) -> Response:
    return _errors(405, [f"{request.method} is not allowed here; use {allowed}"], headers={"Allow": allowed})


def _actor_id(actor):
    return actor.get("id") if actor else None


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
    if scope.get("method") == "POST" and scope.get("path") == datasette.urls.path(IMPORT_PATH):
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
    if request.method != "POST":
        return _method_not_allowed(request, "POST")
    actor = request.actor
    if not await can_import(datasette, actor):
        who = f"Actor {_actor_id(actor)!r}" if actor else "An anonymous request"
        return _errors(403, [f"{who} may not import: the glyph-import permission is required"], more=0)
    if not _csrf_ok(request):
        return _errors(
            403,
            ["CSRF check failed: send the ds_csrftoken cookie's value in an X-CSRFToken header"],
            more=0,
        )
    config = plugin_config(datasette)
    db = glyph_database(datasette)
    actor_id = _actor_id(actor)
    media, _ = uploads.content_type(request.headers)
    try:
        if media == "multipart/form-data":
            max_bytes = config["max_upload_bytes"]
            uploads.check_content_length(request.headers, max_bytes)
            directory = uploads.upload_dir(config["upload_dir"])
            async with uploads.multipart_upload(request.receive, request.headers, directory, max_bytes) as upload:
                fields = upload.fields

                def write(conn):
                    # A file object, not the path: with no file name from the client, the engine would
                    # record the temp file's path as the name.
                    with open(upload.path, "rb") as f:
                        return import_csv(
                            conn,
                            f,
                            expected_sha256=upload.sha256,
                            filename=upload.filename,
                            source_name=fields.get("source") or None,
                            description=fields.get("description") or None,
                            actor=actor_id,
                        )

                return await _run_import(datasette, db, write)
        elif media == "application/json":
            max_bytes = min(config["max_json_bytes"], config["max_upload_bytes"])
            uploads.check_content_length(request.headers, max_bytes)
            source = request.args.get("source") or None
            description = request.args.get("description") or None
            empty = "The request body is empty; send a JSON array of listing objects"
            directory = uploads.upload_dir(config["upload_dir"])
            async with uploads.body_upload(request.receive, directory, max_bytes, empty) as upload:
                body = await _records_from_json(upload.path)

                def write(conn):
                    return import_json(
                        conn,
                        body,
                        expected_sha256=upload.sha256,
                        source_name=source,
                        description=description,
                        actor=actor_id,
                    )

                return await _run_import(datasette, db, write)
        else:
            got = f"Content-Type {media!r}" if media else "no Content-Type"
            return _errors(
                400,
                [f"Send multipart/form-data with the CSV file as the field 'file', or application/json; got {got}"],
                more=0,
            )
    except uploads.UploadError as e:
        return _errors(e.status, [e.message], more=0)


async def _run_import(datasette, db, write) -> Response:
    try:
        result = await run_write(db, write)
    except ImportFailed as e:
        return _errors(422, e.errors, more=e.more)
    except StorageError as e:
        return _errors(e.status, [str(e)], more=0)
    body = {"ok": True, **result.to_dict()}
    body["links"] = _import_links(datasette, db.name, body["import_id"])
    return Response.json(body)


# Listings ----------------------------------------------------------------------------------------------------


async def listings_view(request, datasette):
    """``GET /api/listings``: scored listings filtered by ``model``, ``min_price``, ``max_price``, ``import_id``;
    paginated by ``limit`` and ``offset``. A bare JSON array."""
    if request.method != "GET":
        return _method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "scored_listings"):
        return _errors(403, ["You may not view scored_listings"])
    try:
        query = ListingQuery.from_params(request.args)
    except InvalidParameter as e:
        return _errors(422, [str(e)])
    except ConflictingParameters as e:
        return _errors(400, [str(e)])
    return Response.json(await db.execute_fn(lambda conn: find_listings(conn, query)))


# Import batches ----------------------------------------------------------------------------------------------


async def imports_view(request, datasette):
    """``GET /api/imports``: batch records, newest first, ``{"imports": [...], "total": N, "next": url}``."""
    if request.method != "GET":
        return _method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "import_batches"):
        return _errors(403, ["You may not view import_batches"])
    try:
        limit = parse_int(request.args, "limit", IMPORTS_PAGE_SIZE, 1, MAX_IMPORTS_PAGE_SIZE)
        offset = parse_int(request.args, "offset", 0, 0)
    except InvalidParameter as e:
        return _errors(422, [str(e)])

    def read(conn):
        return lineage.list_imports(conn, limit=limit, offset=offset), lineage.count_imports(conn)

    imports, total = await db.execute_fn(read)
    next_url = None
    if offset + limit < total:
        path = datasette.urls.path("/api/imports") + "?" + urlencode({"limit": limit, "offset": offset + limit})
        next_url = datasette.absolute_url(request, path)
    return Response.json({"imports": imports, "total": total, "next": next_url})


async def import_detail_view(request, datasette):
    """``GET /api/imports/<import_id>``: the batch record plus per-model counts and prices. ``DELETE`` rolls
    the batch back."""
    if request.method == "DELETE":
        from .routes_lineage import rollback_view

        return await rollback_view(request, datasette)
    if request.method != "GET":
        return _method_not_allowed(request, "GET, DELETE")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "import_batches"):
        return _errors(403, ["You may not view import_batches"])
    import_id = request.url_vars["import_id"]
    batch = await db.execute_fn(lambda conn: lineage.get_import(conn, import_id))
    if batch is None:
        return _errors(404, [f"No import with import_id {import_id!r}"])
    return Response.json(batch)


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
    (r"^/api/listings$", listings_view),
    (r"^/api/imports$", imports_view),
    (r"^/api/imports/(?P<import_id>[^/]+)$", import_detail_view),
]
