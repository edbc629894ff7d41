"""``GET /api/models``: the known models, and what a typed model text resolves to and why.

The same rule as ``/api/listings?model=`` (``listings.resolve_model``), so a client can see why a text finds the
listings it finds, or none.
"""

from __future__ import annotations

from datasette.utils.asgi import Response

from .config import glyph_database
from .listings import FUZZY_THRESHOLD, InvalidParameter, known_models, model_text, resolve_model
from .permissions import can_view_table


def _errors(status: int, errors, headers=None) -> Response:
    return Response.json({"ok": False, "errors": list(errors)}, status=status, headers=headers)


async def models_view(request, datasette):
    """``GET /api/models``: ``{"ok": true, "models": [...]}``, every model name; with ``?q=text``, what the text
    resolves to: the step that matched (``exact``, ``contains``, ``fuzzy`` or ``none``), the models, a reason and
    the nearest spellings with their scores."""
    if request.method != "GET":
        return _errors(405, [f"{request.method} is not allowed here; use GET"], headers={"Allow": "GET"})
    db = glyph_database(datasette)
    if not await can_view_table(datasette, request.actor, db.name, "models"):
        return _errors(403, ["You may not view models"])
    try:
        text = model_text(request.args, "q")
    except InvalidParameter as e:
        return _errors(422, [str(e)])
    if text is None:
        names = await db.execute_fn(lambda conn: list(known_models(conn).names))
        return Response.json({"ok": True, "models": names, "threshold": FUZZY_THRESHOLD})
    match = await db.execute_fn(lambda conn: resolve_model(conn, text))
    return Response.json({"ok": True, **match.to_dict()})


ROUTES = [(r"^/api/models$", models_view)]
