"""Views that put lineage to use: diffs between imports and listing history.

JSON under ``/api/...`` (in the style of ``responses``), pages under ``/-/glyph/...`` rendering ``glyph_diff.html``
and ``glyph_history.html``. Reads go through ``run_expensive_read``; the work is done by ``lineage``. (Rollback, a
``DELETE`` on a batch's URL, lives with the batch views in ``routes``.)
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import quote, urlencode

from datasette.utils.asgi import BadRequest, Forbidden, NotFound, Response

from . import lineage
from .config import glyph_database, run_expensive_read
from .formats import usd
from .listings import InvalidParameter, parse_int
from .pages import DIFF_SORTS, arrange_changes, arrange_params, history_chart
from .permissions import can_view_table
from .responses import (
    diff_body,
    diff_next_path,
    diff_path,
    error,
    errors_response,
    method_not_allowed,
    ok_response,
    url_id,
)

DIFF_PAGE_SIZE = 100
MAX_DIFF_PAGE_SIZE = 1000
HISTORY_PAGE_SIZE = 100
MAX_HISTORY_PAGE_SIZE = 1000
HISTORY_PAGE_POINTS = 1000


async def _cannot_view(datasette, actor, database: str, tables) -> Optional[str]:
    """The first of ``tables`` the actor may not see, or None: lineage shows no more than the tables would."""
    for table in tables:
        if not await can_view_table(datasette, actor, database, table):
            return table
    return None


def _path(datasette, path: str, **params) -> str:
    query = {k: v for k, v in params.items() if v is not None}
    return datasette.urls.path(path) + ("?" + urlencode(query) if query else "")


def _diff_params(args) -> tuple:
    """(kind, limit, offset) from the query string; InvalidParameter for a bad value."""
    kind = args.get("kind") or None
    if kind is not None and kind not in lineage.CHANGE_KINDS:
        raise InvalidParameter("kind", kind, f"must be one of {', '.join(lineage.CHANGE_KINDS)}")
    limit = parse_int(args, "limit", DIFF_PAGE_SIZE, 1, MAX_DIFF_PAGE_SIZE)
    offset = parse_int(args, "offset", 0, 0)
    return kind, limit, offset


# Diff ----------------------------------------------------------------------------------------------------------


async def diff_view(request, datasette):
    """``GET /api/imports/<a>/diff/<b>``: what changed from import A to import B, per model and per listing.

    Listing changes are paginated with ``limit`` (1..1000, default 100) and ``offset``, and filtered with
    ``kind`` (changed, added or removed); ``next`` is the URL of the next page.
    """
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    hidden = await _cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
    if hidden:
        return errors_response(403, [f"You may not view {hidden}"])
    a, b = url_id(request, "a"), url_id(request, "b")
    try:
        kind, limit, offset = _diff_params(request.args)
    except InvalidParameter as e:
        return errors_response(422, [error(str(e), parameter=e.parameter, value=e.value)])
    try:
        diff = await run_expensive_read(
            datasette, db, lambda conn: lineage.diff_imports(conn, a, b, kind=kind, limit=limit, offset=offset), "diff"
        )
    except lineage.UnknownImport as e:
        return errors_response(404, [str(e)])
    next_path = diff_next_path(diff, a, b)
    next_url = datasette.absolute_url(request, datasette.urls.path(next_path)) if next_path else None
    return Response.json(diff_body(diff, next_url))


async def diff_page(request, datasette):
    """``/-/glyph/imports/<a>/diff/<b>``: the diff as a page, listing changes a page at a time."""
    db = glyph_database(datasette)
    hidden = await _cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
    if hidden:
        raise Forbidden(f"You may not view {db.name}/{hidden}")
    a, b = url_id(request, "a"), url_id(request, "b")
    try:
        kind, limit, offset = _diff_params(request.args)
        sort, model = arrange_params(request.args)
    except InvalidParameter as e:
        raise BadRequest(str(e))
    arranged = sort != "file" or model is not None
    try:
        diff = await run_expensive_read(
            datasette,
            db,
            lambda conn: lineage.diff_imports(
                conn, a, b, kind=kind, limit=None if arranged else limit, offset=0 if arranged else offset
            ),
            "diff",
        )
    except lineage.UnknownImport as e:
        raise NotFound(str(e))
    data = diff.to_dict()
    next_offset = diff.next_offset
    if arranged:  # the page's own order or model filter, over every change of the kind
        data["changes"], data["total"], next_offset = arrange_changes(data["changes"], sort, model, limit, offset)
    page_path = diff_path("/-/glyph", a, b)
    sort_arg = None if sort == "file" else sort
    for change in data["changes"]:
        change["history_url"] = _path(datasette, "/-/glyph/history", source_url=change["source_url"])
    size = None if limit == DIFF_PAGE_SIZE else limit
    counts = data["listings"]
    counts_by_kind = {
        None: sum(counts[k] for k in lineage.CHANGE_KINDS),
        **{k: counts[k] for k in lineage.CHANGE_KINDS},
    }
    context = {
        "glyph_database": db.name,
        "diff": data,
        "a": _batch_context(datasette, data["a"]),
        "b": _batch_context(datasette, data["b"]),
        "kinds": [
            {
                "kind": k,
                "count": counts_by_kind[k],
                "label": k or "all changes",
                "url": _path(datasette, page_path, kind=k, limit=size, sort=sort_arg, model=model),
                "current": k == kind,
            }
            for k in (None,) + lineage.CHANGE_KINDS
        ],
        "previous_url": (
            _path(
                datasette,
                page_path,
                kind=kind,
                limit=size,
                sort=sort_arg,
                model=model,
                offset=max(0, offset - limit) or None,
            )
            if offset > 0
            else None
        ),
        "next_url": (
            _path(datasette, page_path, kind=kind, limit=size, sort=sort_arg, model=model, offset=next_offset)
            if next_offset is not None
            else None
        ),
        "first_shown": offset + 1,
        "last_shown": offset + len(data["changes"]),
        "json_url": _path(datasette, diff_path("/api", a, b), kind=kind, limit=size, offset=offset or None),
        "swap_url": _path(datasette, diff_path("/-/glyph", b, a)),
        "sort": sort,
        "sorts": DIFF_SORTS,
        "model": model,
    }
    return Response.html(await datasette.render_template("glyph_diff.html", context, request=request))


def _batch_context(datasette, batch: dict) -> dict:
    return dict(
        batch,
        page_url=datasette.urls.path(f"/-/glyph/imports/{quote(batch['import_id'], safe='')}"),
        name=batch["filename"] or batch["description"] or batch["import_id"],
    )


# Listing history ---------------------------------------------------------------------------------------------


async def history_view(request, datasette):
    """``GET /api/listings/history?source_url=...``: the listing's price and score in every import that has it,
    oldest first."""
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    hidden = await _cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
    if hidden:
        return errors_response(403, [f"You may not view {hidden}"])
    source_url = request.args.get("source_url")
    if not source_url:
        return errors_response(400, ["source_url is required, e.g. /api/listings/history?source_url=https://..."])
    try:
        limit = parse_int(request.args, "limit", HISTORY_PAGE_SIZE, 1, MAX_HISTORY_PAGE_SIZE)
        offset = parse_int(request.args, "offset", 0, 0)
    except InvalidParameter as e:
        return errors_response(422, [error(str(e), parameter=e.parameter, value=e.value)])
    # one point more than asked for says whether there is a next page
    history = await run_expensive_read(
        datasette,
        db,
        lambda conn: lineage.listing_history(conn, source_url, limit=limit + 1, offset=offset),
        "listing history",
    )
    next_url = None
    if len(history) > limit:
        history = history[:limit]
        path = _path(datasette, "/api/listings/history", source_url=source_url, limit=limit, offset=offset + limit)
        next_url = datasette.absolute_url(request, path)
    return ok_response(
        {"source_url": source_url, "history": history, "limit": limit, "offset": offset, "next": next_url}
    )


async def history_page(request, datasette):
    """``/-/glyph/history?source_url=...``: the listing's price and score across imports, as inline SVG charts
    and a table. Without ``source_url``, a form asking for one."""
    db = glyph_database(datasette)
    hidden = await _cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
    if hidden:
        raise Forbidden(f"You may not view {db.name}/{hidden}")
    source_url = request.args.get("source_url") or ""
    # The newest HISTORY_PAGE_POINTS imports at most: charts of more would be unreadable and the page heavy.
    history = (
        await run_expensive_read(
            datasette,
            db,
            lambda conn: lineage.listing_history(conn, source_url)[-HISTORY_PAGE_POINTS:],
            "listing history",
        )
        if source_url
        else []
    )
    previous = None
    for point in history:
        point["page_url"] = datasette.urls.path(f"/-/glyph/imports/{quote(point['import_id'], safe='')}")
        point["diff_url"] = (
            datasette.urls.path(diff_path("/-/glyph", previous, point["import_id"])) if previous else None
        )
        previous = point["import_id"]
    context = {
        "glyph_database": db.name,
        "source_url": source_url,
        # Linked only when it is a web address: the value comes from imported files.
        "source_link": source_url if source_url.lower().startswith(("http://", "https://")) else None,
        "history": history,
        "price_chart": history_chart([p["price"] for p in history], [p["imported_at"] for p in history], usd),
        "score_chart": history_chart([p["score"] for p in history], [p["imported_at"] for p in history], _score),
        "json_url": _path(datasette, "/api/listings/history", source_url=source_url) if source_url else None,
        "form_action": datasette.urls.path("/-/glyph/history"),
    }
    return Response.html(await datasette.render_template("glyph_history.html", context, request=request))


def _score(value) -> str:
    return "" if value is None else f"{value:.4g}"




# Exact paths: these are registered before the other route modules' (see register_routes), so each must match
# only its own URLs.
ROUTES = [
    (r"^/api/imports/(?P<a>[^/]+)/diff/(?P<b>[^/]+)$", diff_view),
    (r"^/api/listings/history$", history_view),
    (r"^/-/glyph/imports/(?P<a>[^/]+)/diff/(?P<b>[^/]+)$", diff_page),
    (r"^/-/glyph/history$", history_page),
]
