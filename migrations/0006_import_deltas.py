"""Keep what changed between consecutive imports of a source, so diffs and listing histories read a few rows

Up creates import_deltas (one row per listing added, removed or changed in price from an import to the next
complete import of the same source, with both prices, scores and import_index values) and
import_delta_models (the same comparison counted per model), both empty: from now on each import fills them in
its own transaction. It also indexes scored_listings.source_url, which a listing's history reads, unless an
index already leads with that column.

The imports already in the file keep nothing here, and their diffs are computed from their rows with the same
answer; ``datasette glyph-deltas`` compares them afterwards, one import per transaction, while the file is in
use. (Comparing them inside this step made it the longest of all: 24 s of the 38 s the whole migration took at
a million rows in 100 imports whose listings are all new.)

Down sets the kept deltas aside without copying them: both tables and their indexes are renamed to
glyph_kept_0006_* (their REFERENCES taken out of the definition, as the schema below 0002 has no import_batches
key to check them against), or dropped when empty; the index on source_url that up created (recognised by its
definition) is dropped. The next up renames them back to their own definitions, then forgets any comparison that
no longer holds (an import rolled back in the meantime), so that a round trip loses nothing and glyph-deltas
need not run again.
"""

import re

from datasette_glyph.engine import deltas, schema

# The earlier version of this file also compared the imports already in the file; a database it migrated has the
# same tables and index, with those imports' deltas kept.
SUPERSEDES = [
    "1f86330e1b69ae941249c1fbd0e3af8d249125bdcfb7bcdbca1408006fb127f1",
    "cda8207c01db7fa0ec6ed4796d2a155f303a216aae9809c53e91eda496cd10bc",  # before the engine moved to datasette_glyph.engine
]

TABLES_SQL = [
    """
CREATE TABLE import_deltas (
    import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- the later import (B)
    previous_import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- B's previous complete import from its source (A)
    change TEXT NOT NULL CHECK (change IN ('changed', 'added', 'removed')),
    source_url TEXT NOT NULL, -- how the listing is matched: the last row of each import with it wins
    canonical_model TEXT NOT NULL, -- B's, or A's for a removed listing
    old_price REAL, -- A's; NULL for an added listing
    new_price REAL, -- B's; NULL for a removed listing
    old_score REAL,
    new_score REAL,
    old_import_index INTEGER, -- the row of A the listing was matched with
    new_import_index INTEGER -- the row of B
)
""",
    # A diff's page: one import's changes of one kind in file order. Also finds an import's deltas to drop.
    "CREATE INDEX idx_import_deltas_import_id ON import_deltas(import_id, change, new_import_index, old_import_index)",
    # One listing's changes across imports.
    "CREATE INDEX idx_import_deltas_source_url ON import_deltas(source_url)",
    """
CREATE TABLE import_delta_models (
    import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- the later import (B)
    previous_import_id TEXT NOT NULL REFERENCES import_batches(import_id), -- (A)
    canonical_model TEXT NOT NULL,
    changed INTEGER NOT NULL, -- listings (by source_url) whose price changed, counted under B's model
    added INTEGER NOT NULL, -- listings only B has
    removed INTEGER NOT NULL, -- listings only A has, counted under A's model
    unchanged INTEGER NOT NULL, -- listings with the same price in both
    row_count INTEGER NOT NULL, -- B's rows of this model
    -- B's rows followed by a later row of B with the same source_url, under the model of the row that wins
    rows_overridden INTEGER NOT NULL,
    previous_row_count INTEGER NOT NULL, -- the same two for A
    previous_rows_overridden INTEGER NOT NULL,
    PRIMARY KEY (import_id, canonical_model)
)
""",
    "CREATE INDEX idx_import_delta_models_previous_import_id ON import_delta_models(previous_import_id)",
]

# The comment inside the definition tells down that up created this index (sqlite_master keeps the text).
SOURCE_URL_INDEX = "idx_scored_listings_source_url"
SOURCE_URL_INDEX_SQL = f"CREATE INDEX {SOURCE_URL_INDEX} ON scored_listings(source_url /* listing history */)"


def _indexed_first(conn, table, column):
    return any(
        conn.execute("SELECT name FROM pragma_index_info(?) WHERE seqno = 0", [name]).fetchone() == (column,)
        for (name,) in conn.execute("SELECT name FROM pragma_index_list(?)", [table]).fetchall()
    )


KEPT_PREFIX = "glyph_kept_0006_"
REFERENCES_RE = re.compile(r" REFERENCES import_batches\(import_id\)")


def _statements():
    """{table: (its CREATE TABLE, {index name: its CREATE INDEX})}, as up writes them."""
    found = {}
    for statement in TABLES_SQL:
        words = statement.split()
        if words[1] == "TABLE":
            found[words[2]] = (statement, {})
        else:
            found[words[4].split("(")[0]][1][words[2]] = statement
    return found


def _write_schema(conn, rows):
    """Write (type, old name, new name, table name, sql) rows into sqlite_master: the procedure SQLite documents
    for changes that leave the stored rows and index entries as they are (section 7 of "ALTER TABLE")."""
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    try:
        for kind, old, new, table, sql in rows:
            conn.execute(
                "UPDATE sqlite_master SET name = ?, tbl_name = ?, sql = ? WHERE type = ? AND name = ?",
                [new, table, sql, kind, old],
            )
        conn.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        conn.execute("PRAGMA writable_schema = OFF")


def _set_aside(conn, table, create, indexes):
    """Rename a table of deltas and its indexes to glyph_kept_0006_*, its REFERENCES taken out (so that the
    old schema's import_batches is never checked against it): nothing is copied, whatever the table's size."""
    kept = KEPT_PREFIX + table
    for name, sql in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", [table]
    ).fetchall():
        if indexes.get(name) != sql:
            conn.execute(f"DROP INDEX {schema.quote(name)}")  # not ours: dropped with the table, as before
    conn.execute(f"ALTER TABLE {table} RENAME TO {kept}")
    bare = REFERENCES_RE.sub("", create.strip()).replace(f"CREATE TABLE {table} (", f"CREATE TABLE {kept} (", 1)
    rows = [("table", kept, kept, kept, bare)]
    for name, sql in indexes.items():
        renamed = sql.replace(f"{name} ON {table}(", f"{KEPT_PREFIX}{name} ON {kept}(", 1)
        rows.append(("index", name, KEPT_PREFIX + name, kept, renamed))
    _write_schema(conn, rows)


def _put_back(conn, table, create, indexes):
    """The reverse of _set_aside: the table and its indexes under their own names and definitions again."""
    kept = KEPT_PREFIX + table
    expected = _columns_of(create)
    if schema.columns(conn, kept) != expected:
        raise ValueError(f"{kept} does not hold the columns of {table} ({', '.join(expected)}); nothing was changed")
    present = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?", [kept])
    }
    conn.execute(f"ALTER TABLE {kept} RENAME TO {table}")
    rows = [("table", table, table, table, create.strip())]
    rows += [
        ("index", KEPT_PREFIX + name, name, table, sql)
        for name, sql in indexes.items()
        if KEPT_PREFIX + name in present
    ]
    _write_schema(conn, rows)
    for name, sql in indexes.items():
        if KEPT_PREFIX + name not in present:
            conn.execute(sql)


def _columns_of(create):
    """The column names a CREATE TABLE statement defines, in order."""
    _, definitions, _ = schema.split_definitions(create)
    return [schema.column_name(d) for d in definitions if not schema.is_table_constraint(d)]


def up(conn):
    present = schema.tables(conn)
    for table, (create, indexes) in _statements().items():
        if KEPT_PREFIX + table in present:
            _put_back(conn, table, create, indexes)
        else:
            conn.execute(create)
            for sql in indexes.values():
                conn.execute(sql)
    deltas.drop_stale(conn)
    if "scored_listings" in present and not _indexed_first(conn, "scored_listings", "source_url"):
        taken = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [SOURCE_URL_INDEX]).fetchone()
        if not taken:
            conn.execute(SOURCE_URL_INDEX_SQL)


def down(conn):
    for table, (create, indexes) in _statements().items():
        conn.execute(f"DROP TABLE IF EXISTS {KEPT_PREFIX + table}")
        if conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None:  # nothing kept, nothing to show
            conn.execute(f"DROP TABLE {table}")
        else:
            _set_aside(conn, table, create, indexes)
    found = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", [SOURCE_URL_INDEX]
    ).fetchone()
    if found and found[0] == SOURCE_URL_INDEX_SQL:
        conn.execute(f"DROP INDEX {SOURCE_URL_INDEX}")
