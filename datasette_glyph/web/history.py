"""A listing's history as a resource: ``GET /api/listings/history`` and its page."""

from __future__ import annotations

from urllib.parse import quote

from datasette.utils.asgi import Forbidden, Response

from ..engine import lineage
from ..engine.listings import InvalidParameter, parse_int
from ..formats import diff_path, short_score, usd
from .bridge import run_expensive_read
from .charts import history_chart
from .http import error, errors_response, method_not_allowed, ok_response, url_with_query
from .permissions import cannot_view
from .settings import glyph_database

HISTORY_PAGE_SIZE = 100


MAX_HISTORY_PAGE_SIZE = 1000


HISTORY_PAGE_POINTS = 1000


async def history_view(request, datasette):
    """``GET /api/listings/history?source_url=...``: the listing's price and score in every import that has it,
    oldest first."""
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    hidden = await cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
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
        path = url_with_query(
            datasette, "/api/listings/history", source_url=source_url, limit=limit, offset=offset + limit
        )
        next_url = datasette.absolute_url(request, path)
    return ok_response(
        {"source_url": source_url, "history": history, "limit": limit, "offset": offset, "next": next_url}
    )


async def history_page(request, datasette):
    """``/-/glyph/history?source_url=...``: the listing's price and score across imports, as inline SVG charts
    and a table. Without ``source_url``, a form asking for one."""
    db = glyph_database(datasette)
    hidden = await cannot_view(datasette, request.actor, db.name, ("import_batches", "scored_listings"))
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
        "score_chart": history_chart([p["score"] for p in history], [p["imported_at"] for p in history], short_score),
        "json_url": url_with_query(datasette, "/api/listings/history", source_url=source_url) if source_url else None,
        "form_action": datasette.urls.path("/-/glyph/history"),
    }
    return Response.html(await datasette.render_template("glyph_history.html", context, request=request))
