"""Diffs as a resource: ``GET /api/imports/<a>/diff/<b>``, the diff page and the page that picks two imports."""

from __future__ import annotations

from urllib.parse import quote

from datasette.utils.asgi import BadRequest, Forbidden, NotFound, Response

from ..engine import lineage
from ..engine.listings import InvalidParameter, parse_int
from ..formats import diff_body, diff_next_path, diff_path
from .bridge import run_expensive_read
from .http import diff_url, error, errors_response, method_not_allowed, url_id, url_with_query
from .permissions import cannot_view, ensure_can_view
from .settings import glyph_database

DIFF_PAGE_SIZE = lineage.DIFF_PAGE_SIZE


MAX_DIFF_PAGE_SIZE = 1000


def _diff_params(args) -> tuple:
    """(kind, limit, offset) from the query string; InvalidParameter for a bad value."""
    kind = args.get("kind") or None
    if kind is not None and kind not in lineage.CHANGE_KINDS:
        raise InvalidParameter("kind", kind, f"must be one of {', '.join(lineage.CHANGE_KINDS)}")
    limit = parse_int(args, "limit", DIFF_PAGE_SIZE, 1, MAX_DIFF_PAGE_SIZE)
    offset = parse_int(args, "offset", 0, 0)
    return kind, limit, offset


async def diff_view(request, datasette):
    """``GET /api/imports/<a>/diff/<b>``: what changed from import A to import B, per model and per listing.

    Listing changes are paginated with ``limit`` (1..1000, default 100) and ``offset``, and filtered with
    ``kind`` (changed, added or removed); ``next`` is the URL of the next page.
    """
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    hidden = await cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
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
    hidden = await cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
    if hidden:
        raise Forbidden(f"You may not view {db.name}/{hidden}")
    a, b = url_id(request, "a"), url_id(request, "b")
    try:
        kind, limit, offset = _diff_params(request.args)
        sort, model = arrange_params(request.args)
    except InvalidParameter as e:
        raise BadRequest(str(e)) from None
    try:
        # Filtering, ordering and the page's dicts are made on the read pool, under the time limit: a diff of
        # 250,000 changes holds only the page, never every change, and the event loop gets the page alone.
        data = await run_expensive_read(
            datasette,
            db,
            lambda conn: lineage.diff_imports(
                conn, a, b, kind=kind, limit=limit, offset=offset, model=model, order=sort
            ).to_dict(),
            "diff",
        )
    except lineage.UnknownImport as e:
        raise NotFound(str(e)) from None
    next_offset = data["next_offset"]
    page_path = diff_path("/-/glyph", a, b)
    sort_arg = None if sort == "file" else sort
    for change in data["changes"]:
        change["history_url"] = url_with_query(datasette, "/-/glyph/history", source_url=change["source_url"])
    size = None if limit == DIFF_PAGE_SIZE else limit
    counts = data["listings"]
    counts_by_kind = {
        None: sum(counts[k] for k in lineage.CHANGE_KINDS),
        **{k: counts[k] for k in lineage.CHANGE_KINDS},
    }
    context = {
        "glyph_database": db.name,
        "diff": data,
        "a": _import_context(datasette, data["a"]),
        "b": _import_context(datasette, data["b"]),
        "kinds": [
            {
                "kind": k,
                "count": counts_by_kind[k],
                "label": k or "all changes",
                "url": url_with_query(datasette, page_path, kind=k, limit=size, sort=sort_arg, model=model),
                "current": k == kind,
            }
            for k in (None,) + lineage.CHANGE_KINDS
        ],
        "previous_url": (
            url_with_query(
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
            url_with_query(datasette, page_path, kind=kind, limit=size, sort=sort_arg, model=model, offset=next_offset)
            if next_offset is not None
            else None
        ),
        "first_shown": offset + 1,
        "last_shown": offset + len(data["changes"]),
        "json_url": url_with_query(datasette, diff_path("/api", a, b), kind=kind, limit=size, offset=offset or None),
        "swap_url": url_with_query(datasette, diff_path("/-/glyph", b, a)),
        "sort": sort,
        "sorts": DIFF_SORTS,
        "model": model,
    }
    return Response.html(await datasette.render_template("glyph_diff.html", context, request=request))


def _import_context(datasette, batch: dict) -> dict:
    return dict(
        batch,
        page_url=datasette.urls.path(f"/-/glyph/imports/{quote(batch['import_id'], safe='')}"),
        name=batch["filename"] or batch["description"] or batch["import_id"],
    )


# How many other imports the "compare with" list on an import page offers, newest first.
COMPARE_CHOICES = 500


async def compare_page(datasette, request):
    """``/-/glyph/compare?a=<import_id>&b=<import_id>``: the "compare with" form's target; redirects to the diff."""
    db = glyph_database(datasette)
    await ensure_can_view(datasette, request.actor, db.name)
    a, b = request.args.get("a"), request.args.get("b")
    if not a or not b:
        raise BadRequest("Choose two imports to compare: a (before) and b (after)")
    return Response.redirect(diff_url(datasette, a, b))


# How the diff page can order listing changes (lineage.CHANGE_ORDERS): the engine's order (by kind, then file
# order), or largest price change first.
DIFF_SORTS = {"file": "kind, then file order", "change": "largest price change first"}


def arrange_params(args) -> tuple:
    """(sort, model) from a diff page's query string; InvalidParameter for an unknown sort."""
    sort = args.get("sort") or "file"
    if sort not in DIFF_SORTS:
        raise InvalidParameter("sort", sort, f"must be one of {', '.join(DIFF_SORTS)}")
    return sort, args.get("model") or None
