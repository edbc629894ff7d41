"""Keep what changed between consecutive imports of a source, so diffs and listing histories read a few rows

Up creates import_deltas (one row per listing added, removed or changed in price from an import to the next
complete import of the same source, with both prices, scores and import_index values) and
import_delta_models (the same comparison counted per model), and fills them for every complete import that
has a previous complete import from its source, with the importer's own code (datasette_glyph.deltas). It
also indexes scored_listings.source_url, which a listing's history reads, unless an index already leads with
that column.

Down drops both tables and the index up created (recognised by its definition). Nothing needs keeping aside:
every delta is derived from rows that stay, and the next up computes them again.
"""

from datasette_glyph import deltas, schema

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


def up(conn):
    for statement in TABLES_SQL:
        conn.execute(statement)
    present = schema.tables(conn)
    if "scored_listings" in present and not _indexed_first(conn, "scored_listings", "source_url"):
        taken = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [SOURCE_URL_INDEX]).fetchone()
        if not taken:
            conn.execute(SOURCE_URL_INDEX_SQL)
    if "scored_listings" not in present:
        return
    batches = conn.execute(
        "SELECT import_id FROM import_batches WHERE status = 'complete' ORDER BY imported_at, id"
    ).fetchall()
    for (import_id,) in batches:
        deltas.record_deltas(conn, import_id)


def down(conn):
    conn.execute("DROP TABLE import_deltas")
    conn.execute("DROP TABLE import_delta_models")
    found = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", [SOURCE_URL_INDEX]).fetchone()
    if found and found[0] == SOURCE_URL_INDEX_SQL:
        conn.execute(f"DROP INDEX {SOURCE_URL_INDEX}")
