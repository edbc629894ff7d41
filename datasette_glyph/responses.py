"""The JSON style every ``/api/*`` view answers in, and the small helpers the views share.

Success: ``{"ok": true, ...}``. Failure: ``{"ok": false, "errors": [{"message": ...}, ...], "more": N}``, where
each error is an object with at least ``message`` (plus ``line``, ``column``, ``value`` or ``parameter`` where
known) and ``more`` counts the errors left out (0 unless a long list was cut). Timestamps the project records are
ISO 8601 UTC with ``Z``. ``GET /api/listings`` alone answers a bare array, for the old store's clients.
"""

from __future__ import annotations

from typing import Iterable, Optional, Union
from urllib.parse import quote, urlencode

from datasette.utils.asgi import Response

from .config import plugin_config, read_only
from .formats import with_utc_z


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
    return Response.json({"ok": True, **with_utc_z(body)}, status=status, headers=headers)


def method_not_allowed(request, allowed: str) -> Response:
    """405 naming the methods the URL takes, in the body and in ``Allow``."""
    return errors_response(405, [f"{request.method} is not allowed here; use {allowed}"], headers={"Allow": allowed})


def actor_id(actor) -> Optional[str]:
    """The id of the request's actor, or None for an anonymous request."""
    return actor.get("id") if actor else None


def who(actor) -> str:
    """How an actor is named in a refusal: ``Actor 'alice'`` or ``An anonymous request``."""
    return f"Actor {actor_id(actor)!r}" if actor else "An anonymous request"


def diff_path(prefix: str, a: str, b: str) -> str:
    """``<prefix>/imports/<a>/diff/<b>`` with each id escaped for a URL path."""
    return f"{prefix}/imports/{quote(a, safe='')}/diff/{quote(b, safe='')}"


def with_query(path: str, **params) -> str:
    """``path`` plus a query string of the params that are not None."""
    query = {k: v for k, v in params.items() if v is not None}
    return path + ("?" + urlencode(query) if query else "")


def diff_body(diff, next_url: Optional[str]) -> dict:
    """The JSON of ``GET /api/imports/<a>/diff/<b>`` (and ``glyph-diff --json``): the diff, ``ok`` and ``next``."""
    return {"ok": True, **with_utc_z(diff.to_dict()), "next": next_url}


def diff_next_path(diff, a: str, b: str) -> Optional[str]:
    """The API path of the diff's next page, or None on the last page."""
    if diff.next_offset is None:
        return None
    return with_query(diff_path("/api", a, b), kind=diff.kind, limit=diff.limit, offset=diff.next_offset)


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
    return errors_response(
        503, [read_only_message(datasette)], primary_url=plugin_config(datasette)["primary_url"]
    )
