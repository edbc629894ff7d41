"""``GET /api/models``: the known models, and what a typed model text resolves to and why.

The same rule as ``/api/listings?model=`` (``listings.resolve_model``), so a client can see why a text finds the
listings it finds, or none.
"""

from __future__ import annotations

from ..engine.listings import FUZZY_THRESHOLD, InvalidParameter, known_models, model_text, resolve_model
from .bridge import run_expensive_read
from .http import error, errors_response, method_not_allowed, ok_response
from .permissions import can_view_table
from .settings import glyph_database


async def models_view(request, datasette):
    """``GET /api/models``: ``{"ok": true, "models": [...]}``, every model name; with ``?q=text``, what the text
    resolves to: the step that matched (``exact``, ``contains``, ``fuzzy`` or ``none``), the models, a reason and
    the nearest spellings with their scores."""
    if request.method != "GET":
        return method_not_allowed(request, "GET")
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "models"):
        return errors_response(403, ["You may not view models"])
    try:
        text = model_text(request.args, "q")
    except InvalidParameter as e:
        return errors_response(422, [error(str(e), parameter=e.parameter, value=e.value)])
    if text is None:
        names = await db.execute_fn(lambda conn: list(known_models(conn).names))
        return ok_response({"models": names, "threshold": FUZZY_THRESHOLD})
    # CPU work (RapidFuzz), so on the plugin's read pool under the read time limit; a text too long to match any
    # model is answered there at once, unscored.
    body = await run_expensive_read(datasette, db, lambda conn: resolve_model(conn, text).to_dict(), "model match")
    return ok_response(body)
