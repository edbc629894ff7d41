"""Keep the listing title that scored CSV files carry

Up adds scored_listings.title and puts back the titles the last down kept aside; down keeps every
title aside in glyph_kept_0003_scored_listings_title before dropping the column, so that a round trip
loses none. The table's triggers are set aside while titles are restored, so that restoring a title
does not count as an update of the row (the old store's triggers stamp updated_at on every update).
"""

from datasette_glyph.engine import schema

# A database migrated by an earlier release of datasette-glyph recorded this checksum for 0003.
SUPERSEDES = [
    "82a6b51390dbd53c8df1dc7a6564f5ea7b9da1ff279d579794dd5fe46f36555b",
    "536e9fe937270bd199d521256f37ea3f605df4e166720e903fd839550cf00f6e",  # before the engine moved to datasette_glyph.engine
]

KEPT = "glyph_kept_0003_scored_listings_title"


def up(conn):
    conn.execute("ALTER TABLE scored_listings ADD COLUMN title TEXT")
    if KEPT in schema.tables(conn):
        with schema.triggers_set_aside(conn, "scored_listings"):
            conn.execute(
                f"UPDATE scored_listings SET title = k.title FROM {KEPT} AS k WHERE k.row_id = scored_listings.rowid"
            )
        conn.execute(f"DROP TABLE {KEPT}")


def down(conn):
    conn.execute(f"DROP TABLE IF EXISTS {KEPT}")
    conn.execute(
        f"CREATE TABLE {KEPT} AS SELECT rowid AS row_id, title FROM scored_listings WHERE title IS NOT NULL"
    )
    conn.execute("ALTER TABLE scored_listings DROP COLUMN title")
