"""Remember the Idempotency-Key an import was sent with, so that a retried request answers the first result

Up creates import_idempotency_keys: one row per key, naming the batch it made, the request it came with (a
SHA-256 over the file's bytes, the source and the description) and the JSON answer it got. Down keeps the table's
rows aside in glyph_kept_0008_import_idempotency_keys before dropping it, and the next up puts them back, so that a
retry after a round trip still finds its first answer.
"""

from datasette_glyph.engine import schema

SUPERSEDES = [
    "90a6726da196e3644d4286007f884dd5e49635fc5536523c4401a352557a78e4",  # before the engine moved to datasette_glyph.engine
]

TABLE = "import_idempotency_keys"
KEPT = "glyph_kept_0008_import_idempotency_keys"

CREATE = f"""CREATE TABLE {TABLE} (
    idempotency_key TEXT PRIMARY KEY,
    actor TEXT,
    request_sha256 TEXT NOT NULL,
    import_id TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at TEXT NOT NULL
)"""


COLUMNS = ("idempotency_key", "actor", "request_sha256", "import_id", "response", "created_at")


def up(conn):
    conn.execute(CREATE)
    if KEPT in schema.tables(conn):
        names = ", ".join(COLUMNS)
        conn.execute(f"INSERT INTO {TABLE} (rowid, {names}) SELECT row_id, {names} FROM {KEPT} ORDER BY row_id")
        conn.execute(f"DROP TABLE {KEPT}")


def down(conn):
    conn.execute(f"DROP TABLE IF EXISTS {KEPT}")
    if conn.execute(f"SELECT EXISTS (SELECT 1 FROM {TABLE})").fetchone()[0]:
        conn.execute(f"CREATE TABLE {KEPT} AS SELECT rowid AS row_id, * FROM {TABLE}")
    conn.execute(f"DROP TABLE {TABLE}")
