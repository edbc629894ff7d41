"""HTML pages under /-/glyph/: upload, batch list, batch detail; and the menu and table links to them.

Views check permissions, read through ``db.execute_fn`` with the engine's ``lineage`` functions, and render
``glyph_*.html`` templates that extend Datasette's ``base.html``. The upload page posts to the JSON API
(``/api/import``) from the browser; it writes nothing itself.
"""

from __future__ import annotations

import math
import re
from urllib.parse import quote, urlencode

from datasette.utils.asgi import BadRequest, Forbidden, NotFound, Response
from datasette.views.base import DatasetteError
from markupsafe import Markup, escape

from . import files, lineage
from .config import glyph_database, plugin_config, read_only
from .formats import usd, utc_z
from .listings import InvalidParameter
from .permissions import can_import, can_rollback, can_view_table
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

# The price chart is drawn with HTML and CSS (positions in percent of the plot's width), so its text keeps its CSS
# size at any screen width, unlike SVG text, which shrinks with its viewBox.
# Ticks of the log price scale: 1 and 3 times each power of ten, evenly spaced on a log axis.
LOG_TICK_STEPS = (1, 3)
# A bar for a price of $0 starts at this price (the scale cannot reach 0).
LOWEST_PRICE = 1.0
# The most x-axis labels a history chart shows; every point keeps its marker and tooltip.
HISTORY_LABELS = 5
# Beyond this many points a history chart draws smaller markers, so that neighbours do not merge into a band.
DENSE_POINTS = 30

TIME = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d(?::\d\d)?)(?:\.\d+)?(Z|\+00:00)?$")


# How many other imports the "compare with" list on an import page offers, newest first.
COMPARE_CHOICES = 500


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
        batches = lineage.list_imports(conn, limit=IMPORTS_PER_PAGE, offset=offset)
        kept = files.kept_files(conn, [b["import_id"] for b in batches])
        return lineage.count_imports(conn), [{**b, **kept[b["import_id"]]} for b in batches]

    total, batches = await db.execute_fn(read)
    pages = max(1, math.ceil(total / IMPORTS_PER_PAGE))
    if page > pages:
        raise NotFound(f"There is no page {page} of imports; there are {pages}")
    for batch in batches:
        batch["page_url"] = batch_url(datasette, batch["import_id"])
        batch["rows_url"] = rows_url(datasette, db.name, batch["import_id"])
        batch["file_url"] = file_url(datasette, batch["import_id"]) if batch["file_kept"] else None
    context = {
        "glyph_database": db.name,
        "batches": batches,
        "total": total,
        "page": page,
        "pages": pages,
        "previous_url": _imports_page_url(datasette, page - 1) if page > 1 else None,
        "next_url": _imports_page_url(datasette, page + 1) if page < pages else None,
        "batches_table_url": datasette.urls.table(db.name, "import_batches"),
        "history_url": datasette.urls.path("/-/glyph/history"),
        "import_url": (
            datasette.urls.path("/-/glyph/import") if await _offers_import(datasette, request.actor) else None
        ),
    }
    return Response.html(await datasette.render_template("glyph_imports.html", context, request=request))


async def import_detail_page(datasette, request):
    """``/-/glyph/imports/<import_id>``: the batch record, a per-model price summary and its chart, and what can
    be done with the batch: browse its rows, compare it with another import, roll it back."""
    db = glyph_database(datasette)
    await _ensure_can_view(datasette, request.actor, db.name)
    import_id = url_id(request, "import_id")

    def read(conn):
        batch = lineage.get_import(conn, import_id)
        if batch is None:
            return None, None, []
        batch.update(files.kept_files(conn, [import_id])[import_id])
        previous = lineage.previous_import(conn, import_id)
        others = [b for b in lineage.list_imports(conn, limit=COMPARE_CHOICES + 1) if b["import_id"] != import_id]
        return batch, previous, others[:COMPARE_CHOICES]

    batch, previous, others = await db.execute_fn(read)
    if batch is None:
        raise NotFound(f"No import with id {import_id}")
    previous_id = previous.get("import_id") if isinstance(previous, dict) else previous
    models = batch.pop("models")
    for model in models:
        model["rows_url"] = rows_url(datasette, db.name, import_id, canonical_model=model["canonical_model"])
    rolled_back = batch.get("status") == "rolled_back"
    kept = batch.pop("file_kept")
    file_bytes, reimport_of = batch.pop("file_bytes"), batch.pop("reimport_of")
    batch.pop("file_stored_bytes")
    context = {
        "file_url": file_url(datasette, import_id) if kept else None,
        "file_bytes": file_bytes,
        "reimport_of_url": batch_url(datasette, reimport_of) if reimport_of else None,
        "reimport_of": reimport_of,
        "reimport_url": (
            datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}/reimport")
            if kept and not read_only(datasette) and await can_import(datasette, request.actor)
            else None
        ),
        "glyph_database": db.name,
        "batch": batch,
        "rolled_back": rolled_back,
        "fields": [(key, label, batch.get(key)) for key, label in BATCH_FIELDS if batch.get(key) not in (None, "")],
        # The moment the batch committed, in the form `litestream restore -timestamp` takes (docs/deploy.md)
        "restore_timestamp": utc_z(batch.get("imported_at")) if batch.get("imported_at") else None,
        "title": batch.get("filename") or batch.get("description") or import_id,
        "models": models,
        "chart": price_chart(models),
        "rows_url": rows_url(datasette, db.name, import_id),
        "imports_url": datasette.urls.path("/-/glyph/imports"),
        "json_url": datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}"),
        "batch_row_url": datasette.urls.table(db.name, "import_batches")
        + "?"
        + urlencode({"import_id": import_id, "_nosuggest": 1}),
        "diff_url": diff_url(datasette, previous_id, import_id) if previous_id else None,
        "compare_url": datasette.urls.path("/-/glyph/compare"),
        "compare_choices": [
            {"import_id": b["import_id"], "label": batch_label(b), "selected": b["import_id"] == previous_id}
            for b in others
        ],
        "rollback_url": (
            datasette.urls.path(f"/api/imports/{quote(import_id, safe='')}")
            if not rolled_back and not read_only(datasette) and await can_rollback(datasette, request.actor)
            else None
        ),
    }
    return Response.html(await datasette.render_template("glyph_import_detail.html", context, request=request))


async def compare_page(datasette, request):
    """``/-/glyph/compare?a=<import_id>&b=<import_id>``: the "compare with" form's target; redirects to the diff."""
    db = glyph_database(datasette)
    await _ensure_can_view(datasette, request.actor, db.name)
    a, b = request.args.get("a"), request.args.get("b")
    if not a or not b:
        raise BadRequest("Choose two imports to compare: a (before) and b (after)")
    return Response.redirect(diff_url(datasette, a, b))


async def menu_links(datasette, actor):
    """The navigation menu: "Imports" for actors who may see them, "Import listings" for actors allowed to import
    on a server that takes imports."""
    db = glyph_database(datasette)
    links = []
    if await _can_view(datasette, actor, db.name):
        links.append({"href": datasette.urls.path("/-/glyph/imports"), "label": "Imports"})
    if await _offers_import(datasette, actor):
        links.append({"href": datasette.urls.path("/-/glyph/import"), "label": "Import listings"})
    return links


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
# Columns shown as US dollars, and as UTC times, on Datasette's own table and row pages.
PRICE_COLUMNS = {
    "scored_listings": ("price",),
    "listings": ("price",),
    "models": ("min_price", "median_price", "max_price", "avg_price"),
    "import_model_stats": ("min_price", "median_price", "max_price"),
}
TIME_COLUMNS = ("imported_at", "started_at", "finished_at", "rolled_back_at", "created_at", "updated_at", "seen_at")
TIME_TABLES = IMPORT_ID_TABLES


def render_cell(value, column, table, database, datasette):
    """Cells of the glyph tables as a person reads them.

    - ``import_id`` links to the batch's page, named by its label (the UUID is the link's title), on one line.
      Datasette would link it to ``/<db>/import_batches/<value>``, a row page addressed by primary key, which
      ``import_id`` is not (404).
    - ``canonical_model`` links to the ``models`` table filtered to it (``model`` is not a primary key either).
    - ``source_url`` links to the listing and to its price history across imports.
    - prices in USD (``$25,512.00``), times in UTC without fractions of a second.
    """
    if database != glyph_database(datasette).name:
        return None
    if isinstance(value, dict):  # a foreign key Datasette expanded: {"value": ..., "label": ...}
        key, label = value.get("value"), value.get("label")
    else:
        key = label = value
    if column == "import_id" and table in IMPORT_ID_TABLES and isinstance(key, str):
        return Markup('<a class="glyph-import-link" href="{}" title="import {}">{}</a>').format(
            batch_url(datasette, key), key, label or key
        )
    if column == "canonical_model" and table in MODEL_TABLES and isinstance(key, str):
        href = datasette.urls.table(database, "models") + "?" + urlencode({"model": key})
        return Markup('<a href="{}">{}</a>').format(href, key)
    if column == "source_url" and table == "scored_listings" and isinstance(value, str) and value:
        history = datasette.urls.path("/-/glyph/history") + "?" + urlencode({"source_url": value})
        link = Markup('<a class="glyph-history-link" href="{}" title="price history of this listing">history</a>')
        if value.lower().startswith(("http://", "https://")):
            shown = Markup('<a href="{}" rel="nofollow noreferrer">{}</a>').format(value, value)
        else:
            shown = escape(value)
        return shown + Markup(" &middot; ") + link.format(history)
    if column in PRICE_COLUMNS.get(table, ()) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return Markup('<span class="glyph-usd">{}</span>').format(usd(value))
    if column in TIME_COLUMNS and table in TIME_TABLES and isinstance(value, str):
        shown = utc_time(value)
        if shown != value:
            return Markup('<time class="glyph-time" datetime="{}">{}</time>').format(value, shown)
    return None


def batch_url(datasette, import_id: str) -> str:
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


def batch_label(batch: dict) -> str:
    """How a page names an import among others: time, source and file (or description), e.g.
    ``2025-05-01 08:00 UTC · ebay · monday.csv``. The time comes first and holds no-break spaces, so that a
    narrow column (a facet's) never breaks it across lines."""
    name = batch.get("filename") or batch.get("description") or batch.get("import_id")
    when = short_time(batch.get("imported_at")).replace(" ", "\u00a0")
    return " · ".join(part for part in (when, batch.get("source"), name) if part)


# Price chart -------------------------------------------------------------------------------------------------


def price_chart(models: list) -> dict:
    """Geometry of a horizontal range chart: per model a bar from min to max price with a median mark.

    Models come most expensive (by median) first; the price axis is logarithmic, so a $300 model and a $40,000
    one are both readable. Positions are percentages of the plot's width, for the template to draw with CSS.
    Returns an empty ``rows`` list when there is nothing to draw.
    """
    if not models:
        return {"rows": [], "ticks": []}
    # The axis spans the finite prices; an infinite one (an adopted file can hold them) sits at an end of it
    finite = [p for m in models for p in (m["min_price"], m["max_price"]) if math.isfinite(p)] or [LOWEST_PRICE]
    low = max(LOWEST_PRICE, min(finite))
    high = max(low, max(finite))
    ticks = log_ticks(low, high)
    scale = LogScale(ticks[0], ticks[-1])
    rows = []
    # A median is NULL only where an adopted file's prices include both infinities: such a model comes last
    for m in sorted(models, key=lambda m: (m["median_price"] is None, -(m["median_price"] or 0), m["canonical_model"])):
        left, right = scale(m["min_price"]), scale(m["max_price"])
        count = m["row_count"]
        rows.append(
            {
                "model": m["canonical_model"],
                "rows_url": m.get("rows_url"),
                "left": left,
                "width": round(right - left, 2),
                "median": scale(m["median_price"]) if m["median_price"] is not None else None,
                "count": count,
                "count_label": f"{count:,} row" + ("" if count == 1 else "s"),
                "median_label": usd(m["median_price"], cents=False) if m["median_price"] is not None else "none",
                "title": (
                    f"{m['canonical_model']}: {count:,} row{'' if count == 1 else 's'}, min {usd(m['min_price'])}, "
                    f"median {usd(m['median_price']) if m['median_price'] is not None else 'none'}, "
                    f"max {usd(m['max_price'])}"
                ),
            }
        )
    return {"rows": rows, "ticks": [{"left": scale(t), "label": short_usd(t)} for t in ticks]}


class LogScale:
    """Position (percent, 0 to 100) of a price between ``low`` and ``high`` on a log axis; clamped at both ends."""

    def __init__(self, low: float, high: float):
        self.low, self.span = math.log10(low), math.log10(high) - math.log10(low)

    def __call__(self, value: float) -> float:
        if not self.span:
            return 50.0
        position = (math.log10(max(value, LOWEST_PRICE)) - self.low) / self.span
        return round(100 * min(1.0, max(0.0, position)), 2)


def log_ticks(low: float, high: float) -> list:
    """Prices 1 and 3 times a power of ten from the largest at or below ``low`` to the smallest at or above
    ``high``: 300, 1000, 3000, 10000, 30000, 100000 for prices from $300 to $40,000."""
    low, high = max(low, LOWEST_PRICE), max(high, LOWEST_PRICE)
    candidates = [step * 10**power for power in range(math.floor(math.log10(low)) - 1, 13) for step in LOG_TICK_STEPS]
    first = max(t for t in candidates if t <= low)
    last = min(t for t in candidates if t >= high)
    ticks = [t for t in candidates if first <= t <= last]
    return ticks if len(ticks) > 1 else [first, next(t for t in candidates if t > first)]


def short_usd(value: float) -> str:
    """An axis label: ``$300``, ``$3k``, ``$30k``, ``$1M``."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if value >= size:
            return f"${value / size:,.6g}{suffix}"
    return f"${value:,.6g}"


# History chart -----------------------------------------------------------------------------------------------


def history_chart(values: list, times: list, fmt) -> dict:
    """Geometry of a line chart of one listing's values across imports (oldest first), in percent of the plot.

    The value axis starts at 0 with round steps; at most ``HISTORY_LABELS`` times label the time axis
    (always the first and the last), each point keeps a tooltip with its exact time and value.
    """
    if not values:
        return {"points": [], "y_ticks": [], "x_labels": [], "polyline": "", "dense": False}
    ticks = nice_ticks(max(max(values), 0))
    top = ticks[-1] or 1
    count = len(values)

    def x(i):
        return 50.0 if count == 1 else round(100 * i / (count - 1), 2)

    points = [
        {"x": x(i), "y": round(100 - 100 * max(value, 0) / top, 2), "title": f"{short_time(t)}: {fmt(value)}"}
        for i, (value, t) in enumerate(zip(values, times))
    ]
    if count <= HISTORY_LABELS:
        labelled = list(range(count))
    else:
        labelled = sorted({round(i * (count - 1) / (HISTORY_LABELS - 1)) for i in range(HISTORY_LABELS)})
    inner = [i for i in labelled if 0 < i < count - 1]
    centre = min(inner, key=lambda i: abs(points[i]["x"] - 50)) if inner else None

    def place(i):  # which labels a narrow chart keeps: the ends, then the centre (see glyph.css)
        return "first" if i == 0 else "last" if i == count - 1 else "centre" if i == centre else "minor"

    return {
        "points": points,
        "dense": count > DENSE_POINTS,
        # The line is drawn in a 0..1000 x 0..1000 SVG box stretched over the plot, points in percent of it.
        "polyline": " ".join(f"{p['x'] * 10:g},{p['y'] * 10:g}" for p in points),
        # round values: "$5,000", not "$5,000.00"
        "y_ticks": [{"y": round(100 - 100 * t / top, 2), "label": fmt(t).removesuffix(".00")} for t in ticks],
        "x_labels": [{"x": points[i]["x"], "label": short_time(times[i]), "place": place(i)} for i in labelled],
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


# Formatting (usd lives in formats) ----------------------------------------------------------------------------


def signed_usd(value) -> str:
    """``+$12.50``, ``−$3.00`` or ``$0.00``."""
    if value is None:
        return ""
    sign = "+" if value > 0 else "\u2212" if value < 0 else ""
    return sign + usd(abs(value))


def utc_time(value) -> str:
    """A stored time as ``2025-05-01 08:00:00 UTC``: no fractions of a second, the zone named. Text that is not a
    time comes back unchanged."""
    if not isinstance(value, str):
        return "" if value is None else str(value)
    match = TIME.match(value)
    if not match:
        return value
    return f"{match.group(1)} {match.group(2)} UTC"


def short_time(value) -> str:
    """``2025-05-01 08:00 UTC``: a time to the minute, for labels."""
    full = utc_time(value)
    match = TIME.match(full[:-4]) if full.endswith(" UTC") else None
    return f"{match.group(1)} {match.group(2)[:5]} UTC" if match else full


def prepare_jinja2_environment(env) -> None:
    """Filters for the glyph templates: ``glyph_usd``, ``glyph_signed_usd``, ``glyph_time``, ``glyph_short_time``."""
    env.filters.update(
        glyph_usd=lambda v, cents=True: usd(v, cents) if v is not None else "\u2013",
        glyph_signed_usd=lambda v: signed_usd(v) if v is not None else "\u2013",
        glyph_time=utc_time,
        glyph_short_time=short_time,
    )


# Diff page: order and model filter ---------------------------------------------------------------------------

# How the diff page can order listing changes: the engine's order (by kind, then file order), or largest price
# change first.
DIFF_SORTS = {"file": "kind, then file order", "change": "largest price change first"}


def arrange_params(args) -> tuple:
    """(sort, model) from a diff page's query string; InvalidParameter for an unknown sort."""
    sort = args.get("sort") or "file"
    if sort not in DIFF_SORTS:
        raise InvalidParameter("sort", sort, f"must be one of {', '.join(DIFF_SORTS)}")
    return sort, args.get("model") or None


def arrange_changes(changes: list, sort: str, model, limit: int, offset: int) -> tuple:
    """One page of ``changes`` (dicts, in the engine's order) filtered to ``model`` and put in ``sort`` order.

    Returns (page, total after filtering, next offset or None). "change" puts the largest price change (in percent
    of the old price, either way) first; additions and removals, which have no change, follow in the engine's order.
    """
    if model is not None:
        changes = [c for c in changes if c["canonical_model"] == model]
    if sort == "change":

        def size(change):
            if change["percent"] is not None:
                return (0, -abs(change["percent"]), -abs(change["delta"]))
            if change["delta"] is not None:  # old price 0
                return (0, float("-inf"), -abs(change["delta"]))
            return (1, 0, 0)

        changes = sorted(changes, key=size)  # stable: ties keep the engine's order
    page = changes[offset : offset + limit]
    end = offset + len(page)
    return page, len(changes), end if end < len(changes) else None


# Table pages filtered to one import ----------------------------------------------------------------------------


async def table_template_vars(datasette, view_name, database, table, request) -> dict:
    """``glyph_import_banner`` for a table page filtered to one import (``?import_id=...``): the import's label
    and the links to its page, its diff with the previous import from its source, and the list of imports."""
    if view_name != "table" or request is None or table not in IMPORT_ID_TABLES or table == "import_batches":
        return {}
    db = glyph_database(datasette)
    if database != db.name:
        return {}
    import_id = request.args.get("import_id") or request.args.get("import_id__exact")
    if not import_id or not await _can_view(datasette, request.actor, db.name):
        return {}

    if not await db.table_exists("import_batches"):  # a database the plugin has not adopted
        return {}

    def read(conn):
        batch = lineage.get_import(conn, import_id)
        return batch, lineage.previous_import(conn, import_id) if batch else None

    batch, previous = await db.execute_fn(read)
    if batch is None:
        return {}
    return {
        "glyph_import_banner": {
            "label": batch_label(batch),
            "status": batch["status"],
            "page_url": batch_url(datasette, import_id),
            "diff_url": diff_url(datasette, previous["import_id"], import_id) if previous else None,
            "imports_url": datasette.urls.path("/-/glyph/imports"),
            "history_url": datasette.urls.path("/-/glyph/history"),
        }
    }


# Helpers -----------------------------------------------------------------------------------------------------


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


async def _can_view(datasette, actor, database: str) -> bool:
    """Batch pages show what the import_batches and scored_listings tables show: viewing them needs both."""
    for table in ("import_batches", "scored_listings"):
        if not await can_view_table(datasette, actor, database, table):
            return False
    return True


async def _ensure_can_view(datasette, actor, database: str) -> None:
    if not await _can_view(datasette, actor, database):
        raise Forbidden(f"You do not have permission to view the imports of {database}")


ROUTES = [
    (r"^/-/glyph/import$", import_page),
    (r"^/-/glyph/imports$", imports_page),
    (r"^/-/glyph/imports/(?P<import_id>[^/]+)$", import_detail_page),
    (r"^/-/glyph/compare$", compare_page),
]
