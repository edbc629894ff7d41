"""The ``import`` facet: the imports in a table's rows, newest first, named by source, file and time.

Configured per table in metadata.yml as ``facets: [{import: import_id}]``. Datasette's column facet orders
values by row count, so imports of the same size come in no useful order, and names them by the foreign key's
label only. This facet lists the imports the filtered rows come from as the imports list does (newest first)
and names each one ``source · file · time``; beyond the facet size, Datasette's "…" link shows them all.
"""

from __future__ import annotations

from datasette.database import QueryInterrupted
from datasette.facets import Facet
from datasette.utils import escape_sqlite, path_with_added_args, path_with_removed_args

from ..formats import import_label
from .settings import glyph_database

# The filtered rows' imports with their row counts, newest import first (the order of the imports list).
FACET_SQL = """
SELECT f.value, f.count, b.source, b.filename, b.description, b.imported_at, b.import_id
FROM (
    SELECT {column} AS value, COUNT(*) AS count FROM ({sql}) WHERE {column} IS NOT NULL GROUP BY {column}
) f
LEFT JOIN import_batches b ON b.import_id = f.value
ORDER BY b.imported_at IS NULL, b.imported_at DESC, b.id DESC, f.value
LIMIT {limit}
"""


class ImportFacet(Facet):
    """Facet on a column holding an ``import_id``, in import order, labelled by source, file and time."""

    type = "import"

    async def suggest(self):
        return []

    async def facet_results(self):
        results, timed_out = [], []
        db = glyph_database(self.ds)
        if self.database != db.name or not await db.table_exists("import_batches"):
            return results, timed_out
        pairs = self.get_querystring_pairs()
        size = self.get_facet_size()
        for source_and_config in self.get_configs():
            config = source_and_config["config"]
            column = config.get("column") or config["simple"]
            sql = FACET_SQL.format(column=escape_sqlite(column), sql=self.sql, limit=size + 1)
            try:
                rows = await self.ds.execute(
                    self.database,
                    sql,
                    self.params,
                    truncate=False,
                    custom_time_limit=self.ds.setting("facet_time_limit_ms"),
                )
            except QueryInterrupted:
                timed_out.append(column)
                continue
            values = []
            for row in rows.rows[:size]:
                value = row["value"]
                selected_args = {k: str(value) for k in (column, f"{column}__exact") if (k, str(value)) in pairs}
                if selected_args:
                    toggle = path_with_removed_args(self.request, selected_args)
                else:
                    toggle = path_with_added_args(self.request, {column: value})
                label = import_label(dict(row)) if row["import_id"] is not None else value
                values.append(
                    {
                        "value": value,
                        "label": label,
                        "count": row["count"],
                        "toggle_url": self.ds.absolute_url(self.request, self.ds.urls.path(toggle)),
                        "selected": bool(selected_args),
                    }
                )
            results.append(
                {
                    "name": column,
                    "type": self.type,
                    "hideable": source_and_config["source"] != "metadata",
                    "toggle_url": self.ds.urls.path(path_with_removed_args(self.request, {"_facet_import": column})),
                    "results": values,
                    "truncated": len(rows.rows) > size,
                }
            )
        return results, timed_out
