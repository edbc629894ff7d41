"""What every view answers with, and the URLs of the plugin's pages.

The JSON style every ``/api/*`` view answers in, the small helpers the views share, and the guards around every
view (``json_api``, ``html_page``) that turn "the database cannot serve this now" into a 503.

Success: ``{"ok": true, ...}``. Failure: ``{"ok": false, "errors": [{"message": ...}, ...], "more": N}``, where
each error is an object with at least ``message`` (plus ``line``, ``column``, ``value`` or ``parameter`` where
known) and ``more`` counts the errors left out (0 unless a long list was cut). Timestamps the project records are
ISO 8601 UTC with ``Z``. ``GET /api/listings`` alone answers a bare array, for the old store's clients.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import traceback
from typing import Iterable, Optional, Union
from urllib.parse import quote, unquote, urlencode

from datasette.utils.asgi import Response
from datasette.views.base import DatasetteError

from ..engine.listings import InvalidParameter
from ..formats import diff_path, with_utc_z
from .bridge import RETRY_AFTER_SECONDS, Unavailable, check_schema
from .settings import glyph_database, plugin_config, read_only


def error(message: str, **fields) -> dict:
    """One error object: ``message`` first, then whatever else is known (``line``, ``column``, ``value``, ...)."""
    return {"message": message, **fields}


def _error_object(item: Union[str, dict]) -> dict:
    if isinstance(item, dict):
        return item if "message" in item else {"message": str(item), **item}
    return {"message": str(item)}


def errors_response(
    status: int, errors: Iterable[Union[str, dict]], *, more: int = 0, headers: Optional[dict] = None, **extra
) -> Response:
    """A refusal: ``{"ok": false, "errors": [...], "more": N, **extra}``. Strings become ``{"message": ...}``."""
    body = {"ok": False, "errors": [_error_object(e) for e in errors], "more": more, **extra}
    return Response.json(body, status=status, headers=headers)


def ok_response(body: dict, status: int = 200, headers: Optional[dict] = None) -> Response:
    """A success: ``{"ok": true, **body}`` with the project's timestamps in ISO 8601 UTC ``Z`` form."""
    return json_text_response(ok_text(body), status=status, headers=headers)


def ok_text(body: dict) -> str:
    """The text of ``ok_response(body)``'s body: what an Idempotency-Key keeps, to send again as it was."""
    return json.dumps({"ok": True, **with_utc_z(body)})


def json_text_response(text: str, status: int = 200, headers: Optional[dict] = None) -> Response:
    """A JSON answer whose body is ``text`` exactly, with the headers ``Response.json`` gives."""
    return Response(text, status=status, headers=headers, content_type="application/json; charset=utf-8")


def method_not_allowed(request, allowed: str) -> Response:
    """405 naming the methods the URL takes, in the body and in ``Allow``."""
    return errors_response(405, [f"{request.method} is not allowed here; use {allowed}"], headers={"Allow": allowed})


def actor_id(actor) -> Optional[str]:
    """The id of the request's actor, or None for an anonymous request."""
    return actor.get("id") if actor else None


def who(actor) -> str:
    """How an actor is named in a refusal: ``Actor 'alice'`` or ``An anonymous request``."""
    return f"Actor {actor_id(actor)!r}" if actor else "An anonymous request"


def url_id(request, name: str) -> str:
    """An import id from the URL, percent-decoded: Datasette routes on the raw path, so ``nightly%202024%2F05%2F01``
    arrives as written (the id ``nightly 2024/05/01``)."""
    return unquote(request.url_vars[name])


def read_only_message(datasette) -> str:
    """Why a write is refused on a read-only server, naming the primary when one is configured."""
    primary = plugin_config(datasette)["primary_url"]
    if primary:
        return f"This server is read-only; send imports and rollbacks to {primary}"
    return "This server is read-only (a replica or an immutable database); send imports and rollbacks to the primary"


def refuse_if_read_only(datasette) -> Optional[Response]:
    """503 for a writing request on a read-only server (nothing is attempted), else None."""
    if not read_only(datasette):
        return None
    return errors_response(503, [read_only_message(datasette)], primary_url=plugin_config(datasette)["primary_url"])


def unavailable_response(e: Unavailable) -> Response:
    """503 for an Unavailable: its message, ``Retry-After`` when waiting may help, and its extra keys."""
    headers = {"Retry-After": str(e.retry_after)} if e.retry_after else None
    return errors_response(503, [e.message], headers=headers, **e.extra)


def _storage_problem(e: Optional[BaseException]) -> Optional[str]:
    """The 503 message for a database that cannot be used just now (locked, full, read-only), else None.

    The cause may sit further down the chain: SQLite rolls the whole transaction back on a full disk, and undoing
    a savepoint afterwards fails with "no such savepoint" while handling it.
    """
    while e is not None:
        if isinstance(e, sqlite3.OperationalError):
            text = str(e)
            if "locked" in text or "busy" in text:
                return f"The database is busy ({text}); try again"
            if "full" in text or "readonly" in text or "disk I/O" in text:
                return f"The database cannot be written ({text}); nothing was written"
        e = e.__cause__ or e.__context__
    return None


def json_api(view):
    """Wrap an ``/api/*`` view: 503 JSON when the database is at the wrong schema version, busy or too slow;
    a JSON 500 (with the traceback in the server's log) instead of an HTML page for anything unforeseen."""

    async def guarded(request, datasette):
        response = await answer(request, datasette)
        return with_detail(response) if getattr(view, "legacy_detail", False) else response

    async def answer(request, datasette):
        try:
            await check_schema(glyph_database(datasette))
            return await view(request=request, datasette=datasette)
        except Unavailable as e:
            return unavailable_response(e)
        except Exception as e:
            problem = _storage_problem(e)
            if problem:
                return errors_response(503, [problem], headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
            traceback.print_exc(file=sys.stderr)
            return errors_response(500, [f"The server failed to answer: {type(e).__name__}; see the server's log"])

    guarded.__name__ = guarded.__qualname__ = view.__name__
    guarded.__doc__ = view.__doc__
    return guarded


def html_page(view):
    """Wrap a ``/-/glyph/*`` page: Datasette's error page with status 503 and the same message as the API's when
    the database is at the wrong schema version, busy, or a read was too slow."""

    async def guarded(request, datasette):
        try:
            await check_schema(glyph_database(datasette))
            return await view(request=request, datasette=datasette)
        except Unavailable as e:
            raise DatasetteError(e.message, title="Service unavailable", status=503) from None
        except sqlite3.OperationalError as e:
            problem = _storage_problem(e)
            if problem:
                raise DatasetteError(problem, title="Service unavailable", status=503) from None
            raise

    guarded.__name__ = guarded.__qualname__ = view.__name__
    guarded.__doc__ = view.__doc__
    return guarded


RECORD_RE = re.compile(r"^Record (\d+)(?:, column [^:]+)?:")


def _loc(item: dict) -> list:
    # The old store's FastAPI location of a bad value: the body, the record (0-based), the field. A JSON import's
    # errors name the record (1-based) at the start of the message, and the field as ``column``.
    match = RECORD_RE.match(item.get("message", ""))
    if not match:
        return ["body"]
    return ["body", int(match.group(1)) - 1] + ([item["column"]] if item.get("column") else [])


def with_detail(response: Response) -> Response:
    """An error answer with the old store's ``detail`` added beside ``errors``: for a 422, a list of
    ``{"loc", "msg"}`` objects; otherwise the message, a string. Successes are returned as they are."""
    if response.status < 400:
        return response
    body = json.loads(response.body)
    messages = [e["message"] for e in body.get("errors", [])]
    if response.status == 422:
        body["detail"] = [{"loc": _loc(e), "msg": e["message"], "type": "value_error"} for e in body["errors"]]
    else:
        body["detail"] = "; ".join(messages)
    return Response.json(body, status=response.status, headers=response.headers)


def url_with_query(datasette, path: str, **params) -> str:
    query = {k: v for k, v in params.items() if v is not None}
    return datasette.urls.path(path) + ("?" + urlencode(query) if query else "")


def import_url(datasette, import_id: str) -> str:
    """Path of a batch's page."""
    return datasette.urls.path(f"/-/glyph/imports/{quote(import_id, safe='')}")


def file_url(datasette, import_id: str) -> str:
    """Where a batch's kept original file is downloaded."""
    return datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}/file")


def diff_url(datasette, a: str, b: str) -> str:
    """Path of the page comparing import ``a`` (before) with import ``b`` (after)."""
    return datasette.urls.path(diff_path("/-/glyph", a, b))


def history_url(datasette, source_url: str) -> str:
    """Path of a listing's price history page."""
    return datasette.urls.path("/-/glyph/history") + "?" + urlencode({"source_url": source_url})


def rows_url(datasette, database: str, import_id: str, **filters) -> str:
    """The table view of one batch's rows in file order, without the costly suggested facets."""
    query = {"import_id": import_id, **filters, "_sort": "import_index", "_nosuggest": 1}
    return datasette.urls.table(database, "scored_listings") + "?" + urlencode(query)


def parameter_error(e: InvalidParameter) -> dict:
    return error(str(e), parameter=e.parameter, value=e.value)
