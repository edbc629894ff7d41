"""HTML pages under /-/glyph/: upload, batch list, batch detail; and the menu and table links to them.

Views check permissions, read through ``db.execute_fn`` with the engine's ``lineage`` functions, and render
``glyph_*.html`` templates that extend Datasette's ``base.html``. The upload page posts to the JSON API
(``/api/import``) from the browser; it writes nothing itself.
"""

from __future__ import annotations

import math
from urllib.parse import quote, urlencode

from datasette.utils.asgi import BadRequest, Forbidden, NotFound, Response
from datasette.views.base import DatasetteError
from markupsafe import Markup, escape

from . import lineage
from .config import glyph_database, plugin_config, read_only
from .formats import usd
from .permissions import can_import, can_view_table
from .responses import diff_path, read_only_message, url_id

IMPORTS_PER_PAGE = 50

# Record fields shown on a batch page, in order, with their labels.
BATCH_FIELDS = (
    ("import_id", "Import id"),
    ("filename", "File"),
    ("source", "Source"),
    ("description", "Description"),
    ("status", "Status"),
    ("record_count", "Rows"),
    ("imported_at", "Imported at"),
    ("started_at", "Started at"),
    ("finished_at", "Finished at"),
    ("actor", "Actor"),
    ("bytes", "Bytes"),
    ("sha256", "SHA-256"),
    ("rolled_back_at", "Rolled back at"),
    ("rolled_back_by", "Rolled back by"),
)

# Geometry of the price chart on a batch page, in SVG user units (pixels at 100%).
CHART_WIDTH = 900
CHART_ROW_HEIGHT = 28
CHART_TOP = 10
CHART_AXIS_HEIGHT = 40
CHART_RIGHT = 70  # room for the row count after each bar
CHART_CHAR_WIDTH = 7.2  # average width of one character of a 12px label, to size the label column


async def import_page(datasette, request):
    """``/-/glyph/import``: pick or drop a CSV file and upload it to the import API, with progress."""
    if read_only(datasette):
        raise DatasetteError(read_only_message(datasette), title="Read-only server", status=503)
    if not await can_import(datasette, request.actor):
        raise Forbidden("You do not have permission to import listings (glyph-import)")
    db = glyph_database(datasette)
    context = {
        "glyph_database": db.name,
        "api_url": datasette.urls.path("/api/import"),
        "imports_url": datasette.urls.path("/-/glyph/imports"),
        "rows_url": datasette.urls.table(db.name, "scored_listings"),
        "max_upload_bytes": plugin_config(datasette)["max_upload_bytes"],
    }
    return Response.html(await datasette.render_template("glyph_import.html", context, request=request))


async def imports_page(datasette, request):
    """``/-/glyph/imports``: every batch, newest first, linking to its page and to its rows."""
    db = glyph_database(datasette)
    await _ensure_can_view(datasette, request.actor, db.name)
    page = _page_number(request.args.get("page"))
    offset = (page - 1) * IMPORTS_PER_PAGE

    def read(conn):
        return lineage.count_imports(conn), lineage.list_imports(conn, limit=IMPORTS_PER_PAGE, offset=offset)

    total, batches = await db.execute_fn(read)
    pages = max(1, math.ceil(total / IMPORTS_PER_PAGE))
    if page > pages:
        raise NotFound(f"There is no page {page} of imports; there are {pages}")
    for batch in batches:
        batch["page_url"] = batch_url(datasette, batch["import_id"])
        batch["rows_url"] = rows_url(datasette, db.name, batch["import_id"])
    context = {
        "glyph_database": db.name,
        "batches": batches,
        "total": total,
        "page": page,
        "pages": pages,
        "previous_url": _imports_page_url(datasette, page - 1) if page > 1 else None,
        "next_url": _imports_page_url(datasette, page + 1) if page < pages else None,
        "batches_table_url": datasette.urls.table(db.name, "import_batches"),
        "import_url": (
            datasette.urls.path("/-/glyph/import") if await _offers_import(datasette, request.actor) else None
        ),
    }
    return Response.html(await datasette.render_template("glyph_imports.html", context, request=request))


async def import_detail_page(datasette, request):
    """``/-/glyph/imports/<import_id>``: the batch record, a per-model price summary and its chart."""
    db = glyph_database(datasette)
    await _ensure_can_view(datasette, request.actor, db.name)
    import_id = url_id(request, "import_id")
    previous_import = getattr(lineage, "previous_import", None)

    def read(conn):
        batch = lineage.get_import(conn, import_id)
        previous = previous_import(conn, import_id) if batch and previous_import else None
        return batch, previous

    batch, previous = await db.execute_fn(read)
    if batch is None:
        raise NotFound(f"No import with id {import_id}")
    if isinstance(previous, dict):
        previous = previous.get("import_id")
    models = batch.pop("models")
    for model in models:
        model["rows_url"] = rows_url(datasette, db.name, import_id, canonical_model=model["canonical_model"])
    context = {
        "glyph_database": db.name,
        "batch": batch,
        "fields": [(key, label, batch.get(key)) for key, label in BATCH_FIELDS if batch.get(key) not in (None, "")],
        "title": batch.get("filename") or batch.get("description") or import_id,
        "models": models,
        "chart": price_chart(models),
        "rows_url": rows_url(datasette, db.name, import_id),
        "imports_url": datasette.urls.path("/-/glyph/imports"),
        "json_url": datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}"),
        "batch_row_url": datasette.urls.table(db.name, "import_batches")
        + "?"
        + urlencode({"import_id": import_id, "_nosuggest": 1}),
        "diff_url": (datasette.urls.path(diff_path("/-/glyph", previous, import_id)) if previous else None),
    }
    return Response.html(await datasette.render_template("glyph_import_detail.html", context, request=request))


async def menu_links(datasette, actor):
    """The navigation menu: "Import listings" for actors allowed to import, on a server that takes imports."""
    if await _offers_import(datasette, actor):
        return [{"href": datasette.urls.path("/-/glyph/import"), "label": "Import listings"}]
    return []


async def table_actions(datasette, actor, database, table):
    """Table actions: on scored_listings, "Import listings" (if allowed); on both, the list of imports."""
    db = glyph_database(datasette)
    if database != db.name or table not in ("scored_listings", "import_batches"):
        return []
    links = []
    if table == "scored_listings" and await _offers_import(datasette, actor):
        links.append({"href": datasette.urls.path("/-/glyph/import"), "label": "Import listings"})
    links.append({"href": datasette.urls.path("/-/glyph/imports"), "label": "Browse import batches"})
    return links


# Tables whose import_id references import_batches(import_id), and whose canonical_model references models(model).
IMPORT_ID_TABLES = ("scored_listings", "listings", "models", "quantized_listings", "import_batches")
MODEL_TABLES = ("scored_listings", "listings")


def render_cell(value, column, table, database, datasette):
    """Cells of the two foreign keys that do not point at a primary key, linked where they lead somewhere.

    Datasette links a foreign key to ``/<db>/<other table>/<value>``, a row page addressed by primary key. But
    ``import_id`` references ``import_batches.import_id`` and ``canonical_model`` references ``models.model``,
    neither a primary key, so those links would answer 404. An import id links to its batch page instead
    (keeping Datasette's label), a model to the ``models`` table filtered to it.
    """
    if not (
        (column == "import_id" and table in IMPORT_ID_TABLES) or (column == "canonical_model" and table in MODEL_TABLES)
    ):
        return None
    if database != glyph_database(datasette).name:
        return None
    if isinstance(value, dict):  # a foreign key Datasette expanded: {"value": ..., "label": ...}
        key, label = value.get("value"), value.get("label")
    else:
        key = label = value
    if not isinstance(key, str):
        return None
    if column == "canonical_model":
        href = datasette.urls.table(database, "models") + "?" + urlencode({"model": key})
        return Markup(f'<a href="{escape(href)}">{escape(key)}</a>')
    link = Markup(f'<a href="{escape(batch_url(datasette, key))}">{escape(label or key)}</a>')
    if label and label != key:
        link += Markup(f"&nbsp;<em>{escape(key)}</em>")
    return link


def batch_url(datasette, import_id: str) -> str:
    """Path of a batch's page."""
    return datasette.urls.path(f"/-/glyph/imports/{quote(import_id, safe='')}")


def rows_url(datasette, database: str, import_id: str, **filters) -> str:
    """The table view of one batch's rows in file order, without the costly suggested facets."""
    query = {"import_id": import_id, **filters, "_sort": "import_index", "_nosuggest": 1}
    return datasette.urls.table(database, "scored_listings") + "?" + urlencode(query)


def price_chart(models: list) -> dict:
    """Geometry of a horizontal range chart: per model a bar from min to max price with a median mark.

    Returns plain numbers and strings for the template to draw as inline SVG; an empty ``rows`` list
    when there is nothing to draw.
    """
    if not models:
        return {"rows": [], "ticks": [], "width": CHART_WIDTH, "height": 0}
    label_width = min(220, 16 + CHART_CHAR_WIDTH * max(len(m["canonical_model"]) for m in models))
    plot_left = label_width
    plot_width = CHART_WIDTH - plot_left - CHART_RIGHT
    ticks = nice_ticks(max(m["max_price"] for m in models))
    top_value = ticks[-1]

    def x(value):
        return round(plot_left + plot_width * (value / top_value if top_value else 0), 1)

    rows = []
    for i, m in enumerate(models):
        y = CHART_TOP + i * CHART_ROW_HEIGHT + CHART_ROW_HEIGHT / 2
        rows.append(
            {
                "model": m["canonical_model"],
                "y": y,
                "x_min": x(m["min_price"]),
                "x_median": x(m["median_price"]),
                "x_max": x(m["max_price"]),
                "count": m["row_count"],
                "title": (
                    f"{m['canonical_model']}: {m['row_count']} rows, min {usd(m['min_price'])}, "
                    f"median {usd(m['median_price'])}, max {usd(m['max_price'])}"
                ),
            }
        )
    plot_bottom = CHART_TOP + len(models) * CHART_ROW_HEIGHT
    return {
        "rows": rows,
        "ticks": [{"x": x(t), "label": usd(t, cents=False)} for t in ticks],
        "width": CHART_WIDTH,
        "height": plot_bottom + CHART_AXIS_HEIGHT,
        "plot_left": plot_left,
        "plot_right": plot_left + plot_width,
        "plot_top": CHART_TOP,
        "plot_bottom": plot_bottom,
    }


def nice_ticks(maximum: float, count: int = 5) -> list:
    """Round axis values from 0 up to at least ``maximum``, about ``count`` steps of 1, 2 or 5 x 10^n."""
    if maximum <= 0:
        return [0, 1]
    raw_step = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw_step)
    steps = math.ceil(maximum / step - 1e-9)
    return [round(i * step, 10) for i in range(steps + 1)]


# Beyond this the page's offset would not fit SQLite's 64-bit integers; no database holds that many batches.
MAX_PAGE = (2**63 - 1) // IMPORTS_PER_PAGE


def _page_number(value) -> int:
    """``?page=`` as a number from 1 to MAX_PAGE: ASCII digits only (``str.isdigit`` also takes ``²``)."""
    if value is None:
        return 1
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise BadRequest(f"page must be a whole number from 1 up, not {value!r}")
    if int(value) > MAX_PAGE:
        raise NotFound(f"There is no page {value} of imports")
    return int(value)


def _imports_page_url(datasette, page: int) -> str:
    path = datasette.urls.path("/-/glyph/imports")
    return path if page == 1 else f"{path}?page={page}"


async def _offers_import(datasette, actor) -> bool:
    """Link to the upload page? Only for actors allowed to import, and never on a read-only server."""
    return not read_only(datasette) and await can_import(datasette, actor)


async def _ensure_can_view(datasette, actor, database: str) -> None:
    """Batch pages show what the import_batches and scored_listings tables show: require viewing both."""
    for table in ("import_batches", "scored_listings"):
        if not await can_view_table(datasette, actor, database, table):
            raise Forbidden(f"You do not have permission to view {database}/{table}")


ROUTES = [
    (r"^/-/glyph/import$", import_page),
    (r"^/-/glyph/imports$", imports_page),
    (r"^/-/glyph/imports/(?P<import_id>[^/]+)$", import_detail_page),
]
