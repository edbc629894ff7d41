"""``GET /api/listings``: the old store's listing query, with its JSON contract."""

from __future__ import annotations

from datasette.utils.asgi import Response

from ..engine.listings import ConflictingParameters, InvalidParameter, ListingQuery, find_listings, matching_models
from .bridge import run_expensive_read
from .http import errors_response, method_not_allowed, parameter_error
from .permissions import can_view_table
from .settings import glyph_database


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
        return errors_response(422, [parameter_error(e)])
    except ConflictingParameters as e:
        return errors_response(400, [str(e)])
    models = None
    if query.model is not None:
        # Matching a typed model is CPU work: it runs on the plugin's read pool, under the read time limit.
        models = await run_expensive_read(datasette, db, lambda conn: matching_models(conn, query.model), "model match")
        if not models:
            return Response.json([])
    return Response.json(await db.execute_fn(lambda conn: find_listings(conn, query, models)))
