"""Record the original file each import read, kept compressed beside the database

Up creates import_files: one row per batch whose original bytes were kept in the store folder (files_dir) as
<sha256>.gz, with their size as read and as stored, their media type, a keep mark that prune respects, the batch
a re-import was made from (reimport_of) and when prune removed the file. Down keeps every row aside in
glyph_kept_0007_import_files (with its rowid; no table when there is none) before dropping the table, and the next up puts them back, so that a
round trip loses none. The files themselves stay where they are either way.
"""

from datasette_glyph.engine import schema

SUPERSEDES = [
    "9a020d4a097daac3dfc61d4c3a169211c51b757514fdded4b522f23f6a0e247c",  # before the engine moved to datasette_glyph.engine
]

KEPT = "glyph_kept_0007_import_files"
COLUMNS = "import_id, sha256, bytes, stored_bytes, media_type, keep, reimport_of, removed_at"

CREATE = """
CREATE TABLE import_files (
    import_id TEXT PRIMARY KEY REFERENCES import_batches(import_id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL, -- SHA-256 of the original bytes; the store keeps them as <sha256>.gz
    bytes INTEGER NOT NULL, -- size of the original
    stored_bytes INTEGER NOT NULL, -- size of the compressed file in the store
    media_type TEXT NOT NULL, -- text/csv or application/json: how the original is read again
    keep INTEGER NOT NULL DEFAULT 0, -- 1: prune never removes this batch's file
    reimport_of TEXT, -- import_id of the batch whose kept file this batch was imported from
    removed_at TIMESTAMP -- when prune removed the file; NULL while it is kept
)
"""


def up(conn):
    conn.execute(CREATE)
    conn.execute("CREATE INDEX idx_import_files_sha256 ON import_files (sha256)")
    if KEPT in schema.tables(conn):
        conn.execute(f"INSERT INTO import_files (rowid, {COLUMNS}) SELECT row_id, {COLUMNS} FROM {KEPT} ORDER BY row_id")
        conn.execute(f"DROP TABLE {KEPT}")


def down(conn):
    conn.execute(f"DROP TABLE IF EXISTS {KEPT}")
    if conn.execute("SELECT 1 FROM import_files LIMIT 1").fetchone() is not None:  # nothing kept, nothing to show
        conn.execute(f"CREATE TABLE {KEPT} AS SELECT rowid AS row_id, {COLUMNS} FROM import_files")
    conn.execute("DROP TABLE import_files")
