"""Per-model price summary of every batch, kept by the import, so batch pages and diffs read a few rows

A batch page or a diff used to compute these from the batch's rows (seconds for a million-row batch).
The importer writes them in the same transaction as the rows; rollback removes them with the rows.
Summaries that the last down kept aside (glyph_kept_0004_import_model_stats) are put back as they were;
every other batch is summarised here from its rows. The median is the mean of the middle one or two
prices of the model in the batch.

Existing batches are summarised in two passes over scored_listings, each one sort: counts, extremes and the
mean score by grouping, then the middle prices picked from the prices streamed in order. One statement
numbering every price with window functions gave the same figures in 7.5 s at a million rows, against 3.5 s.
The arithmetic (the mean of the middle prices) is SQLite's own AVG, so that values of any type in the
price column give what the SQL statement gave.
"""

from datasette_glyph.engine import schema

# Earlier releases of datasette-glyph shipped this migration as a pair of SQL scripts that did the same.
SUPERSEDES = [
    "7b442c2149a3b87e217b247d5620e5a087c2c57335fc8c743986723f3ce9e499",
    "e4be0f86575d1137694765cbb47ffc3bef96887c286ab069369846a084e8b326",
    "56fe8963670c4fca8b9519cc6e4a59d9227939c82c9de0a0763d0715b3538dd9",  # before the engine moved to datasette_glyph.engine
]

KEPT = "glyph_kept_0004_import_model_stats"

CREATE_SQL = """CREATE TABLE import_model_stats (
    import_id TEXT NOT NULL REFERENCES import_batches(import_id),
    canonical_model TEXT NOT NULL,
    row_count INTEGER NOT NULL, -- scored_listings rows of this model in the batch
    min_price REAL NOT NULL,
    median_price REAL, -- mean of the middle one or two prices; NULL where undefined (see below)
    max_price REAL NOT NULL,
    mean_score REAL, -- NULL where undefined: the values include both +inf and -inf (only in an adopted file)
    PRIMARY KEY (import_id, canonical_model)
)"""

RESTORE_SQL = f"""INSERT INTO import_model_stats (rowid, import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score)
SELECT row_id, import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score
FROM {KEPT}
WHERE import_id IN (SELECT import_id FROM import_batches)
ORDER BY row_id"""

# NOT INDEXED: read the table in its own order and sort once, rather than walk an import_id index and
# fetch every row out of order.
TOTALS_SQL = """SELECT import_id, canonical_model, COUNT(*), MIN(price), MAX(price), AVG(score)
FROM scored_listings NOT INDEXED{where}
GROUP BY import_id, canonical_model"""

PRICES_SQL = """SELECT import_id, canonical_model, price
FROM scored_listings NOT INDEXED{where}
ORDER BY import_id, canonical_model, price"""

# Batches whose summaries were put back are not summarised again.
NOT_KEPT = f"\nWHERE import_id NOT IN (SELECT import_id FROM {KEPT})"

INSERT_SQL = """INSERT INTO import_model_stats (import_id, canonical_model, row_count, min_price, median_price, max_price, mean_score)
VALUES (?, ?, ?, ?, ?, ?, ?)"""


def up(conn):
    conn.execute(CREATE_SQL)
    where = ""
    if KEPT in schema.tables(conn):
        conn.execute(RESTORE_SQL)
        where = NOT_KEPT
    totals = conn.execute(TOTALS_SQL.format(where=where)).fetchall()
    middles = _middle_prices(conn, where, {(row[0], row[1]): row[2] for row in totals})
    conn.executemany(
        INSERT_SQL,
        [
            (import_id, model, count, low, _mean(conn, middles[import_id, model]), high, score)
            for import_id, model, count, low, high, score in totals
        ],
    )
    conn.execute(f"DROP TABLE IF EXISTS {KEPT}")


def _middle_prices(conn, where, counts):
    """The middle price (odd count) or two middle prices (even count) of each (batch, model), in order."""
    middles = {}
    batch = model = None
    position = low = high = -1
    for row_batch, row_model, price in conn.execute(PRICES_SQL.format(where=where)):
        # (a plain loop: it runs once a row, a million times for a million rows)
        if row_model != model or row_batch != batch:
            batch, model, position = row_batch, row_model, 0
            count = counts[batch, model]
            low, high = (count - 1) // 2, count // 2  # the same position twice for an odd count
            picked = middles[batch, model] = []
        if position == low or position == high:
            picked.append(price)
        position += 1
    return middles


def _mean(conn, values):
    # SQLite's AVG, so that a price stored as text or an integer averages exactly as it did in SQL.
    if len(values) == 1:
        return conn.execute("SELECT AVG(?)", values).fetchone()[0]
    return conn.execute("SELECT AVG(v) FROM (SELECT ? AS v UNION ALL SELECT ?)", values).fetchone()[0]


def down(conn):
    conn.execute(f"DROP TABLE IF EXISTS {KEPT}")
    conn.execute(f"CREATE TABLE {KEPT} AS SELECT rowid AS row_id, * FROM import_model_stats")
    conn.execute("DROP TABLE import_model_stats")
