"""Keep the original files in a files database beside the store, owned by it, instead of a folder of .gz files

Up creates import_files_store (one row once the store keeps a file: its store_id, and the files database it uses
when that is not the default <database>-files.db beside it), adds removed_by and removed_how ('pruned' or
'deleted') to import_files, and moves the <sha256>.gz files of <database>-files/ that the store's batches name into
<database>-files.db (the folder goes once empty; files no batch names stay). Down writes every file of the store's
files database back into <database>-files/ as <sha256>.gz and removes the files database; it keeps the store's row
aside in glyph_kept_0010_import_files_store and the removals' who and how in glyph_kept_0010_import_files (no
table when there is none) for the next up.
"""

import os

from datasette_glyph.engine import file_upkeep, files, schema


KEPT_STORE = "glyph_kept_0010_import_files_store"
KEPT_REMOVALS = "glyph_kept_0010_import_files"


def _db_path(conn):
    for _seq, name, path in conn.execute("PRAGMA database_list"):
        if name == "main":
            return path or None
    return None


def up(conn):
    db_path = _db_path(conn)
    conn.execute(
        "CREATE TABLE import_files_store (\n"
        "    store_id TEXT NOT NULL, -- this store; its files database records it and serves no other store\n"
        "    files_db TEXT -- the files database, when not the default <database>-files.db beside the database\n"
        ")"
    )
    conn.execute("ALTER TABLE import_files ADD COLUMN removed_by TEXT")  # who deleted the file (glyph-files --delete)
    conn.execute("ALTER TABLE import_files ADD COLUMN removed_how TEXT")  # pruned or deleted
    kept = schema.tables(conn)
    if KEPT_STORE in kept:
        conn.execute(f"INSERT INTO import_files_store (store_id, files_db) SELECT store_id, files_db FROM {KEPT_STORE}")
        conn.execute(f"DROP TABLE {KEPT_STORE}")
    elif db_path:
        owner = file_upkeep.files_db_owner(files.default_files_db(db_path))
        if owner is not None and os.path.abspath(owner[1]) == os.path.abspath(db_path):
            # an earlier up moved files in, and its transaction did not commit: the same store
            conn.execute("INSERT INTO import_files_store (store_id) VALUES (?)", [owner[0]])
    if KEPT_REMOVALS in kept:
        conn.execute(
            "UPDATE import_files SET (removed_by, removed_how) = (SELECT removed_by, removed_how "
            f"FROM {KEPT_REMOVALS} AS k WHERE k.import_id = import_files.import_id) "
            f"WHERE import_id IN (SELECT import_id FROM {KEPT_REMOVALS})"
        )
        conn.execute(f"DROP TABLE {KEPT_REMOVALS}")
    if db_path and files.old_folder(db_path).is_dir():
        store = files.open_store(conn, db_path)
        file_upkeep.move_folder_in(conn, store, files.old_folder(db_path))


def down(conn):
    db_path = _db_path(conn)
    record = conn.execute("SELECT store_id, files_db FROM import_files_store").fetchone()
    if db_path and record is not None:
        files_db = record[1] or files.default_files_db(db_path)
        owner = file_upkeep.files_db_owner(files_db)
        # Only the store's own files database, and only from the store itself (never from a copy of it)
        if owner is not None and owner[0] == record[0] and os.path.abspath(owner[1]) == os.path.abspath(db_path):
            file_upkeep.write_folder_out(files_db, files.old_folder(db_path))
            file_upkeep.remove_files_db(files_db)
    for table in (KEPT_STORE, KEPT_REMOVALS):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    if record is not None:
        conn.execute(f"CREATE TABLE {KEPT_STORE} AS SELECT store_id, files_db FROM import_files_store")
    if conn.execute("SELECT 1 FROM import_files WHERE removed_by IS NOT NULL OR removed_how IS NOT NULL").fetchone():
        conn.execute(
            f"CREATE TABLE {KEPT_REMOVALS} AS SELECT import_id, removed_by, removed_how FROM import_files "
            "WHERE removed_by IS NOT NULL OR removed_how IS NOT NULL"
        )
    conn.execute("ALTER TABLE import_files DROP COLUMN removed_how")
    conn.execute("ALTER TABLE import_files DROP COLUMN removed_by")
    conn.execute("DROP TABLE import_files_store")
