"""The plugin's one ordered route table, as Datasette's own ``app._routes``: the first pattern that matches wins, so
a more specific path comes before the one it would otherwise fall under (a diff before an import's detail).

Every view is guarded: the JSON API answers 503 JSON, the pages Datasette's 503 page, when the database cannot
serve them.
"""

from __future__ import annotations

from . import diff, files, history, imports, listings, models
from .http import html_page, json_api

ROUTES = [
    # The JSON API
    (r"^/api/import$", imports.import_view),
    (r"^/api/persist/listings$", imports.persist_view),  # the old store's JSON import URL
    (r"^/api/imports$", imports.imports_view),
    (r"^/api/imports/(?P<a>[^/]+)/diff/(?P<b>[^/]+)$", diff.diff_view),
    (r"^/api/imports/(?P<import_id>[^/]+)/file$", files.file_view),
    (r"^/api/imports/(?P<import_id>[^/]+)/reimport$", files.reimport_view),
    (r"^/api/imports/(?P<import_id>[^/]+)$", imports.import_detail_view),
    (r"^/api/listings$", listings.listings_view),
    (r"^/api/listings/history$", history.history_view),
    (r"^/api/models$", models.models_view),
    # The pages
    (r"^/-/glyph/import$", imports.import_page),
    (r"^/-/glyph/imports$", imports.imports_page),
    (r"^/-/glyph/imports/(?P<a>[^/]+)/diff/(?P<b>[^/]+)$", diff.diff_page),
    (r"^/-/glyph/imports/(?P<import_id>[^/]+)$", imports.import_detail_page),
    (r"^/-/glyph/compare$", diff.compare_page),
    (r"^/-/glyph/history$", history.history_page),
]


def register_routes() -> list:
    """The route table with each view wrapped in its guard: JSON errors for ``/api/``, Datasette's pages elsewhere."""
    return [(pattern, json_api(view) if pattern.startswith("^/api/") else html_page(view)) for pattern, view in ROUTES]
