"""What the plugin adds to Datasette's own pages: menu links, table actions, cells, the banner of a table filtered
by import, and the template filters."""

from __future__ import annotations

from urllib.parse import urlencode

from markupsafe import Markup, escape

from ..engine import lineage
from ..formats import import_label, score, short_time, signed_usd, usd, utc_time
from .http import diff_url, import_url
from .permissions import can_view_database, offers_import
from .settings import glyph_database


async def menu_links(datasette, actor):
    """The navigation menu: "Imports" for actors who may see them, "Import listings" for actors allowed to import
    on a server that takes imports."""
    db = glyph_database(datasette)
    links = []
    if await can_view_database(datasette, actor, db.name):
        links.append({"href": datasette.urls.path("/-/glyph/imports"), "label": "Imports"})
    if await offers_import(datasette, actor):
        links.append({"href": datasette.urls.path("/-/glyph/import"), "label": "Import listings"})
    return links


async def table_actions(datasette, actor, database, table):
    """Table actions: on scored_listings, "Import listings" (if allowed); on both, the list of imports."""
    db = glyph_database(datasette)
    if database != db.name or table not in ("scored_listings", "import_batches"):
        return []
    links = []
    if table == "scored_listings" and await offers_import(datasette, actor):
        links.append({"href": datasette.urls.path("/-/glyph/import"), "label": "Import listings"})
    links.append({"href": datasette.urls.path("/-/glyph/imports"), "label": "Browse import batches"})
    return links


# Tables whose import_id references import_batches(import_id), and whose canonical_model references models(model).
IMPORT_ID_TABLES = ("scored_listings", "listings", "models", "quantized_listings", "import_batches")


# Every column that names an import, by table: each links to the import's page.
IMPORT_COLUMNS = {
    **{table: ("import_id",) for table in IMPORT_ID_TABLES},
    "import_model_stats": ("import_id",),
    "import_deltas": ("import_id", "previous_import_id"),
    "import_delta_models": ("import_id", "previous_import_id"),
    "import_files": ("import_id", "reimport_of"),
}


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

    - ``import_id`` (and every column naming an import, IMPORT_COLUMNS) links to the batch's page, named by its
      label (the UUID is the link's title), on one line. Datasette would link it to
      ``/<db>/import_batches/<value>``, a row page addressed by primary key, which ``import_id`` is not (404).
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
    if column in IMPORT_COLUMNS.get(table, ()) and isinstance(key, str):
        return Markup('<a class="glyph-import-link" href="{}" title="import {}">{}</a>').format(
            import_url(datasette, key), key, label or key
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


def prepare_jinja2_environment(env) -> None:
    """Filters for the glyph templates: ``glyph_usd``, ``glyph_signed_usd``, ``glyph_time``, ``glyph_short_time``,
    ``glyph_score``."""
    env.filters.update(
        glyph_usd=lambda v, cents=True: usd(v, cents) if v is not None else "\u2013",
        glyph_signed_usd=lambda v: signed_usd(v) if v is not None else "\u2013",
        glyph_time=utc_time,
        glyph_short_time=short_time,
        glyph_score=score,
    )


async def table_template_vars(datasette, view_name, database, table, request) -> dict:
    """``glyph_import_banner`` for a table page filtered to one import (``?import_id=...``): the import's label
    and the links to its page, its diff with the previous import from its source, and the list of imports."""
    if view_name != "table" or request is None or table not in IMPORT_ID_TABLES or table == "import_batches":
        return {}
    db = glyph_database(datasette)
    if database != db.name:
        return {}
    import_id = request.args.get("import_id") or request.args.get("import_id__exact")
    if not import_id or not await can_view_database(datasette, request.actor, db.name):
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
            "label": import_label(batch),
            "status": batch["status"],
            "page_url": import_url(datasette, import_id),
            "diff_url": diff_url(datasette, previous["import_id"], import_id) if previous else None,
            "imports_url": datasette.urls.path("/-/glyph/imports"),
            "history_url": datasette.urls.path("/-/glyph/history"),
        }
    }
