"""Import lineage: every row carries import_id and import_index; import_batches records how each batch arrived

Planned from what the file holds, never from assumed names, so that it adopts every variant of the old
store's databases (other index and trigger names, AUTOINCREMENT, ON DELETE actions, a nullable
import_index already there, tables written by a migration tool, tables this project does not own):

- import_batches gains its trace columns with ALTER TABLE ADD COLUMN; nothing else of it changes.
- Each data table that exists (models, listings, scored_listings, quantized_listings) gets its own CREATE
  TABLE statement, edited only where lineage needs it: import_id becomes NOT NULL (and references
  import_batches when it did not), import_index is added as the last column, or made NOT NULL CHECK >= 1.
  The table is changed where it stands (ADD COLUMN, one UPDATE, the statement written into sqlite_master)
  when it allows that, else rebuilt from the statement. Every other column, constraint, index and trigger
  stays as it was written. An index on import_id alone is replaced by the unique (import_id, import_index)
  index, which serves the same lookups.
- Rows that named no batch go to one legacy batch, dbaea5cd-0a4d-52ca-88af-4737290a1213 (a uuid5 of a
  fixed name). A batch named by rows but missing from import_batches gets a record with status
  'recovered'. A non-null import_index is kept where it is a valid number (an integer >= 1 that no
  earlier row of the same batch holds); NULLs and invalid values are given the smallest free numbers of
  their batch in rowid order (1..n for a batch that had none).

Before changing anything it records the exact definitions it replaces (glyph_original_schema), the
import_index values it changes (glyph_original_import_index), the batch records it adds
(glyph_adopted_batches) and the foreign keys that were already broken (glyph_original_broken_keys).
Down recreates the original definitions verbatim and puts every original value back; what the older
schema cannot hold (the trace columns, the records up added, every import_index where the table had no
such column) is kept aside in glyph_kept_0002_* tables, and the next up restores it.
"""

import sqlite3

from datasette_glyph.engine import schema

# Databases adopted by earlier releases of datasette-glyph recorded these checksums for 0002.
SUPERSEDES = [
    "008d1783a0158ea6863bc02369a4a9b484a18275aa22654be9086d02fa13fc1f",
    "ad1230cfff4c94c9170c0e549146f649fa484a829b36b3ab8891ee50a2d220dc",  # the same steps, all done by copying
    "a5593b7b8d92c4cc83185aab453026e2e9c37c78f3bef3fa2da34ab0b50ae0d7",  # before the engine moved to datasette_glyph.engine
]

MIGRATION = "0002"
LEGACY_IMPORT_ID = "dbaea5cd-0a4d-52ca-88af-4737290a1213"
BATCHES = "import_batches"
DATA_TABLES = ["models", "listings", "scored_listings", "quantized_listings"]
KEPT_BATCHES = "glyph_kept_0002_import_batches"
KEPT_SEQUENCE = "glyph_kept_0002_sequence"

# The columns lineage adds to import_batches, in order, each as ALTER TABLE ADD COLUMN writes it.
BATCH_COLUMNS = [
    ("filename", "TEXT"),  # the file's name as the client or the command line gave it
    ("sha256", "TEXT"),  # hex SHA-256 of the file's bytes
    ("bytes", "INTEGER"),  # size of the file in bytes
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
    # pending, complete, failed (kept no rows), rolled_back, legacy (rows from before lineage),
    # recovered (named by rows, record rebuilt)
    (
        "status",
        "TEXT NOT NULL DEFAULT 'complete' CHECK (status IN "
        "('pending', 'complete', 'failed', 'rolled_back', 'legacy', 'recovered'))",
    ),
    ("actor", "TEXT"),  # id of the actor who imported it; NULL from the command line
    ("error", "TEXT"),  # why a failed batch failed
    ("rolled_back_at", "TIMESTAMP"),
    ("rolled_back_by", "TEXT"),  # actor id, or the command line user
    # how Datasette names the batch in links and facets
    ("label", "TEXT GENERATED ALWAYS AS (COALESCE(filename, description, import_id) || ' · ' || substr(imported_at, 1, 19)) VIRTUAL"),
]

BOOKKEEPING = """
CREATE TABLE IF NOT EXISTS glyph_original_import_index (
    tbl TEXT NOT NULL, -- the data table
    row_id INTEGER NOT NULL, -- the row's rowid
    import_index, -- the value the old store wrote (NULL, or one that was not a valid number)
    PRIMARY KEY (tbl, row_id)
);
CREATE TABLE IF NOT EXISTS glyph_adopted_batches (
    import_id TEXT PRIMARY KEY -- a batch record this migration added (legacy or recovered)
);
CREATE TABLE IF NOT EXISTS glyph_original_broken_keys (
    tbl TEXT NOT NULL, -- a table whose row named a parent that did not exist before adoption
    row_id INTEGER NOT NULL,
    parent TEXT NOT NULL
);
"""


def _kept(table):
    return f"glyph_kept_0002_{table}"


def data_tables(conn):
    present = set(schema.tables(conn))
    return [t for t in DATA_TABLES if t in present]


def _valid(column):
    return f"CASE WHEN typeof({column}) = 'integer' AND {column} >= 1 THEN {column} END"


def invalid_import_index(conn, limit=20):
    """Non-null import_index values that are not a valid number in their batch: (table, rowid, value, why)."""
    found = []
    for table in data_tables(conn):
        if "import_index" not in schema.columns(conn, table):
            continue
        q = schema.quote(table)
        rows = conn.execute(
            f"""
            SELECT row_id, value, CASE WHEN valid IS NULL THEN 'not an integer >= 1'
                ELSE 'also held by an earlier row of the same batch' END
            FROM (
                SELECT rowid AS row_id, import_index AS value, {_valid('import_index')} AS valid,
                    ROW_NUMBER() OVER (PARTITION BY COALESCE(import_id, ?), {_valid('import_index')} ORDER BY rowid) AS nth
                FROM {q} WHERE import_index IS NOT NULL
            )
            WHERE valid IS NULL OR nth > 1
            ORDER BY row_id LIMIT ?
            """,
            [LEGACY_IMPORT_ID, limit],
        ).fetchall()
        found.extend((table, row_id, value, why) for row_id, value, why in rows)
    return found


def report(conn):
    """What --status and --dry-run say before adoption: import_index values that will be renumbered."""
    if "import_batches" not in schema.tables(conn):
        return []
    invalid = invalid_import_index(conn)
    if not invalid:
        return []
    lines = ["", "import_index values 0002_import_lineage will renumber (kept aside for going down; first 20):"]
    lines += [f"  {table} row {row_id}: {value!r} is {why}" for table, row_id, value, why in invalid]
    return lines


# Up -------------------------------------------------------------------------------------------------------


def up(conn):
    tables = data_tables(conn)
    for statement in BOOKKEEPING.split(";"):
        if statement.strip():
            conn.execute(statement)
    _record_broken_keys(conn)
    originals = [obj for table in [BATCHES, *tables] for obj in schema.objects_of(conn, table)]
    schema.record_original(conn, MIGRATION, originals)
    _add_batch_columns(conn)
    _restore_and_derive_batches(conn, tables)
    conn.execute("CREATE TEMP TABLE _glyph_number (row_id INTEGER PRIMARY KEY, batch TEXT NOT NULL, value INTEGER)")
    conn.execute("CREATE TEMP TABLE _glyph_first (batch TEXT PRIMARY KEY, first INTEGER NOT NULL)")
    for table in tables:
        numbers = _number_rows(conn, table)
        _rebuild_with_lineage(conn, table, [o for o in originals if o.tbl_name == table], numbers)
        conn.execute("DELETE FROM temp._glyph_number")
        conn.execute("DELETE FROM temp._glyph_first")
    conn.execute("DROP TABLE temp._glyph_number")
    conn.execute("DROP TABLE temp._glyph_first")
    _restore_kept_sequences(conn)
    for table in [BATCHES, *tables]:
        conn.execute(f"DROP TABLE IF EXISTS {schema.quote(_kept(table))}")


def _restore_kept_sequences(conn):
    # Ids handed out before the last down (a rolled-back batch's, say) are not handed out again after up.
    if KEPT_SEQUENCE not in schema.tables(conn):
        return
    for name, seq in conn.execute(f"SELECT name, seq FROM {KEPT_SEQUENCE}").fetchall():
        if conn.execute("SELECT 1 FROM sqlite_sequence WHERE name = ?", [name]).fetchone():
            conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", [seq, name])
        else:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [name, seq])
    conn.execute(f"DROP TABLE {KEPT_SEQUENCE}")


def _record_broken_keys(conn):
    rows = [(t, r, p) for t, r, p, _ in conn.execute("PRAGMA foreign_key_check") if r is not None]
    conn.executemany("INSERT INTO glyph_original_broken_keys (tbl, row_id, parent) VALUES (?, ?, ?)", rows)


def _add_batch_columns(conn):
    present = {c.lower() for c in [r[1] for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", [BATCHES])]}
    for name, definition in BATCH_COLUMNS:
        if name in present:
            raise ValueError(f"import_batches already has a column {name!r}, which import lineage adds")
        conn.execute(f"ALTER TABLE import_batches ADD COLUMN {name} {definition}")
    indexed = {
        r[0]
        for r in conn.execute(
            "SELECT ii.name FROM pragma_index_list('import_batches') AS il, pragma_index_info(il.name) AS ii "
            "WHERE ii.seqno = 0"
        )
    }
    if "imported_at" not in indexed:
        conn.execute(f"CREATE INDEX {_free_name(conn, 'idx_import_batches_imported_at')} ON import_batches(imported_at)")


def _free_name(conn, name):
    taken = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    return candidate


def _restore_and_derive_batches(conn, tables):
    conn.execute("CREATE TEMP TABLE _glyph_original_batches (import_id TEXT PRIMARY KEY)")
    conn.execute("INSERT INTO temp._glyph_original_batches SELECT import_id FROM import_batches")
    if _kept(BATCHES) in schema.tables(conn):
        # What the last down kept aside: the trace columns of every batch, and the records up had added.
        kept_columns = schema.columns(conn, _kept(BATCHES))
        stored = schema.columns(conn, BATCHES)
        extra = [c for c in kept_columns if c in dict(BATCH_COLUMNS) and c in stored]
        sets = ", ".join(f"{schema.quote(c)} = k.{schema.quote(c)}" for c in extra)
        conn.execute(f"UPDATE import_batches SET {sets} FROM {_kept(BATCHES)} AS k WHERE k.id = import_batches.id AND k.import_id = import_batches.import_id")
        columns = [c for c in kept_columns if c in stored]
        names = ", ".join(schema.quote(c) for c in columns)
        conn.execute(
            f"INSERT INTO import_batches ({names}) SELECT {names} FROM {_kept(BATCHES)} "
            "WHERE import_id NOT IN (SELECT import_id FROM import_batches) AND id NOT IN (SELECT id FROM import_batches) "
            "ORDER BY id"
        )
    if not tables:
        return
    named = " UNION ".join(f"SELECT import_id FROM {schema.quote(t)} WHERE import_id IS NOT NULL" for t in tables)
    rows = " UNION ALL ".join(
        f"SELECT import_id, created_at, {1 if t == 'scored_listings' else 0} AS is_scored FROM {schema.quote(t)}"
        for t in tables
    )
    has_created = all("created_at" in schema.columns(conn, t) for t in tables)
    if not has_created:
        rows = " UNION ALL ".join(
            f"SELECT import_id, NULL AS created_at, {1 if t == 'scored_listings' else 0} AS is_scored FROM {schema.quote(t)}"
            for t in tables
        )
    conn.execute(
        f"""
        INSERT INTO import_batches (import_id, imported_at, record_count, description, status)
        SELECT import_id, COALESCE(MIN(created_at), CURRENT_TIMESTAMP), SUM(is_scored),
            'Batch named by rows but missing from import_batches', 'recovered'
        FROM ({rows})
        WHERE import_id IN ({named} EXCEPT SELECT import_id FROM import_batches)
        GROUP BY import_id ORDER BY MIN(created_at), import_id
        """
    )
    conn.execute(
        f"""
        INSERT INTO import_batches (import_id, imported_at, record_count, description, status)
        SELECT ?, COALESCE(MIN(created_at), CURRENT_TIMESTAMP), SUM(is_scored), 'Rows stored before import lineage', 'legacy'
        FROM ({rows}) WHERE import_id IS NULL
        HAVING COUNT(*) > 0 AND NOT EXISTS (SELECT 1 FROM import_batches WHERE import_id = ?)
        """,
        [LEGACY_IMPORT_ID, LEGACY_IMPORT_ID],
    )
    conn.execute(
        "INSERT OR IGNORE INTO glyph_adopted_batches (import_id) SELECT import_id FROM import_batches "
        "WHERE import_id NOT IN (SELECT import_id FROM temp._glyph_original_batches)"
    )
    conn.execute("DROP TABLE temp._glyph_original_batches")


# How the rows' batch and number are read while a table is changed, {row} being the row's alias: from
# temp._glyph_number, joined by rowid ...
NUMBERED_ROWS = {"batch": "n.batch", "value": "n.value", "join": "temp._glyph_number AS n ON n.row_id = {row}.rowid"}
# ... or, where every batch's rows are consecutive rowids, the rowid's distance from the batch's first row.
CONSECUTIVE_ROWS = {
    "batch": f"COALESCE({{row}}.import_id, '{LEGACY_IMPORT_ID}')",
    "value": f"{{row}}.rowid - (SELECT f.first FROM temp._glyph_first AS f "
    f"WHERE f.batch = COALESCE({{row}}.import_id, '{LEGACY_IMPORT_ID}')) + 1",
    "join": None,
}


def _number_rows(conn, table):
    """Number the rows; return how to read each row's batch and import_index (NUMBERED_ROWS or CONSECUTIVE_ROWS).

    Fills temp._glyph_number (or temp._glyph_first) and records the old store's values that change.
    """
    q = schema.quote(table)
    has_index = "import_index" in schema.columns(conn, table)
    kept = _kept(table) if _kept(table) in schema.tables(conn) else None
    current = _valid("o.import_index") if has_index else "NULL"
    if kept:
        source = (
            f"SELECT o.rowid AS row_id, COALESCE(k.import_id, o.import_id, :legacy) AS batch, "
            f"COALESCE(k.import_index, {current}) AS value "
            f"FROM {q} AS o LEFT JOIN {schema.quote(kept)} AS k ON k.row_id = o.rowid "
            f"AND k.import_id = COALESCE(o.import_id, :legacy)"
        )
    else:
        source = f"SELECT o.rowid AS row_id, COALESCE(o.import_id, :legacy) AS batch, {current} AS value FROM {q} AS o"
    if kept and _number_from_kept(conn, q, kept):
        _record_changed_import_index(conn, table, has_index)
        return NUMBERED_ROWS
    if not has_index and not kept:
        if _consecutive_batches(conn, q):
            return CONSECUTIVE_ROWS
        # Nothing to keep: number each batch 1..n in rowid order, partitioned by import_id itself so that
        # SQLite walks the import_id index where there is one instead of sorting the table (3x faster at
        # 200,000 rows than the general statement below).
        conn.execute(
            f"INSERT INTO temp._glyph_number (row_id, batch, value) "
            f"SELECT rowid, COALESCE(import_id, :legacy), ROW_NUMBER() OVER (PARTITION BY import_id ORDER BY rowid) "
            f"FROM {q}",
            {"legacy": LEGACY_IMPORT_ID},
        )
        return NUMBERED_ROWS
    # A batch whose rows hold no valid number is numbered 1..n in rowid order in the same statement;
    # only batches that mix numbered and unnumbered rows are finished in Python below.
    conn.execute(
        f"""
        INSERT INTO temp._glyph_number (row_id, batch, value)
        SELECT row_id, batch, CASE WHEN valued = 0 THEN position ELSE value END
        FROM (
            SELECT row_id, batch, value, COUNT(value) OVER (PARTITION BY batch) AS valued,
                ROW_NUMBER() OVER (PARTITION BY batch ORDER BY row_id) AS position
            FROM (
                SELECT row_id, batch,
                    CASE WHEN ROW_NUMBER() OVER (PARTITION BY batch, value ORDER BY row_id) = 1 THEN value END AS value
                FROM ({source})
            )
        )
        """,
        {"legacy": LEGACY_IMPORT_ID},
    )
    mixed = [
        r[0]
        for r in conn.execute("SELECT batch FROM temp._glyph_number GROUP BY batch HAVING COUNT(value) < COUNT(*)")
    ]
    for batch in mixed:
        used = {r[0] for r in conn.execute("SELECT value FROM temp._glyph_number WHERE batch = ? AND value IS NOT NULL", [batch])}
        free, updates = 1, []
        for (row_id,) in conn.execute(
            "SELECT row_id FROM temp._glyph_number WHERE batch = ? AND value IS NULL ORDER BY row_id", [batch]
        ).fetchall():
            while free in used:
                free += 1
            updates.append((free, row_id))
            free += 1
        conn.executemany("UPDATE temp._glyph_number SET value = ? WHERE row_id = ?", updates)
    _record_changed_import_index(conn, table, has_index)
    return NUMBERED_ROWS


def _consecutive_batches(conn, q):
    """When each batch's rows are consecutive rowids (as an import appends them), note each batch's first row.

    A row's number is then its rowid's distance from its batch's first row, plus one: the same 1..n in rowid
    order that numbering gives, found by one pass over the import_id index instead of numbering every row
    into a temporary table and joining it back (4.1 s of CPU at a million rows, against about 2.5 s).
    """
    groups = conn.execute(
        f"SELECT import_id, MIN(rowid), MAX(rowid), COUNT(*) FROM {q} GROUP BY import_id COLLATE BINARY"
    ).fetchall()
    batches = [LEGACY_IMPORT_ID if batch is None else batch for batch, _, _, _ in groups]
    if not all(isinstance(batch, str) for batch in batches) or len(set(batches)) != len(batches):
        return False  # import_ids of other types, or rows that name the legacy batch beside rows that name none
    if any(count != last - first + 1 for _, first, last, count in groups):
        return False
    conn.executemany(
        "INSERT INTO temp._glyph_first (batch, first) VALUES (?, ?)",
        [(batch, first) for batch, (_, first, _, _) in zip(batches, groups)],
    )
    return True


def _number_from_kept(conn, q, kept):
    """Take every row's batch and number from what the last down kept aside, when every row has its own there.

    The kept numbers were a valid numbering when they were kept (the table's unique index held them), so
    when no row was added or moved to another batch since, they are the answer as they are: one pass over
    the kept rows in rowid order (CROSS JOIN keeps them the outer loop, each row then found by its rowid)
    instead of the three sorts of the general statement, which took 7 s at a million rows.
    Otherwise nothing is kept in temp._glyph_number and the caller numbers the general way.
    """
    matched = conn.execute(
        f"INSERT INTO temp._glyph_number (row_id, batch, value) "
        f"SELECT k.row_id, k.import_id, k.import_index FROM {schema.quote(kept)} AS k "
        f"CROSS JOIN {q} AS o ON o.rowid = k.row_id AND COALESCE(o.import_id, :legacy) = k.import_id "
        f"WHERE typeof(k.import_index) = 'integer' AND k.import_index >= 1 ORDER BY k.row_id",
        {"legacy": LEGACY_IMPORT_ID},
    ).rowcount
    if matched == conn.execute(f"SELECT COUNT(*) FROM {q}").fetchone()[0]:
        return True
    conn.execute("DELETE FROM temp._glyph_number")
    return False


def _record_changed_import_index(conn, table, has_index):
    """Keep the old store's import_index values that numbering changed, for going down."""
    if has_index:
        q = schema.quote(table)
        conn.execute(
            f"INSERT INTO glyph_original_import_index (tbl, row_id, import_index) "
            f"SELECT ?, o.rowid, o.import_index FROM {q} AS o JOIN temp._glyph_number AS n ON n.row_id = o.rowid "
            f"WHERE o.import_index IS NOT n.value",
            [table],
        )


def _rebuild_with_lineage(conn, table, originals, numbers):
    table_sql = next(o.sql for o in originals if o.type == "table")
    head, definitions, tail = schema.split_definitions(table_sql)
    foreign_keys = {r[3].lower() for r in conn.execute("SELECT * FROM pragma_foreign_key_list(?)", [table])}
    at = schema.definition_of(definitions, "import_id")
    if at is None:
        definitions = schema.add_column_definition(definitions, "import_id TEXT NOT NULL REFERENCES import_batches(import_id)")
    else:
        clause = "" if "not null" in " ".join(definitions[at].lower().split()) else "NOT NULL"
        if "import_id" not in foreign_keys:
            clause = (clause + " REFERENCES import_batches(import_id)").strip()
        if clause:
            definitions[at] = schema.append_to_definition(definitions[at], clause)
    at = schema.definition_of(definitions, "import_index")
    if at is None:
        definitions = schema.add_column_definition(definitions, "import_index INTEGER NOT NULL CHECK (import_index >= 1)")
    else:
        definitions[at] = schema.append_to_definition(definitions[at], "NOT NULL CHECK (import_index >= 1)")
    create_sql = schema.join_definitions(head, definitions, tail)

    dependents = []
    for obj in originals:
        if obj.type == "index" and _indexed_columns(conn, obj.name) == ["import_id"]:
            continue  # the lineage index below starts with import_id and serves the same lookups
        if obj.type != "table":
            dependents.append(obj)
    name = _free_name(conn, f"idx_{table}_import")
    dependents.append(
        schema.SchemaObject("index", name, table, f"CREATE UNIQUE INDEX {name} ON {schema.quote(table)}(import_id, import_index)")
    )
    if _add_lineage_in_place(conn, table, create_sql, dependents, numbers):
        return
    values = {c: f"o.{schema.quote(c)}" for c in schema.columns(conn, table)}
    values["import_id"] = numbers["batch"].format(row="o")
    values["import_index"] = numbers["value"].format(row="o")
    joins = "JOIN " + numbers["join"].format(row="o") if numbers["join"] else ""
    schema.rebuild_table(conn, table, create_sql, values, dependents, joins=joins)


def _add_lineage_in_place(conn, table, create_sql, dependents, numbers):
    """Give ``table`` the lineage definition ``create_sql`` without copying it, when the table allows that.

    ``create_sql`` is the table's own statement with NOT NULL, CHECK and REFERENCES clauses appended and,
    where the table had none, import_index added as its last column. ALTER TABLE ADD COLUMN adds that column
    where the statement puts it (last), the rows get their batch and number in one UPDATE, and the statement
    is written into sqlite_master: the procedure SQLite documents for adding constraints that the rows are
    known to meet (section 7 of "ALTER TABLE", with writable_schema; the foreign key check after the step
    covers the new REFERENCES). The table's other indexes stay as they are instead of being built again
    after a copy (about 5 s of 0002's 12 s up at a million rows). Returns False, having changed nothing,
    when the table is not in that shape (no import_id column, generated columns) or SQLite refuses.
    """
    stored = schema.columns(conn, table)
    if "import_id" not in stored or len(stored) != len(_all_columns(conn, table)):
        return False
    q = schema.quote(table)
    conn.execute("SAVEPOINT glyph_in_place")
    try:
        wanted = {o.name: o.sql for o in dependents}
        for obj in schema.objects_of(conn, table):
            if obj.type == "trigger" or (obj.type == "index" and wanted.get(obj.name) != obj.sql):
                conn.execute(f"DROP {obj.type.upper()} {schema.quote(obj.name)}")
        if "import_index" not in stored:
            conn.execute(f"ALTER TABLE {q} ADD COLUMN import_index INTEGER")
        if numbers["join"]:
            conn.execute(
                f"UPDATE {q} SET import_id = n.batch, import_index = n.value FROM temp._glyph_number AS n "
                f"WHERE n.row_id = {q}.rowid"
            )
        else:
            batch, value = numbers["batch"].format(row=q), numbers["value"].format(row=q)
            conn.execute(f"UPDATE {q} SET import_id = {batch}, import_index = {value}")
        if _columns_of_definition(conn, create_sql) != schema.columns(conn, table):
            raise sqlite3.OperationalError("the lineage definition does not list the stored columns in order")
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", [create_sql, table])
            conn.execute(f"PRAGMA schema_version = {version + 1}")
        finally:
            conn.execute("PRAGMA writable_schema = OFF")
    except sqlite3.Error:
        conn.execute("ROLLBACK TO glyph_in_place")
        conn.execute("RELEASE glyph_in_place")
        return False
    conn.execute("RELEASE glyph_in_place")
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = ?", [table])}
    for obj in dependents:
        if obj.name not in present:
            conn.execute(obj.sql)
    return True


def _indexed_columns(conn, index):
    return [r[2] for r in conn.execute("SELECT * FROM pragma_index_info(?) ORDER BY seqno", [index])]


# Down -----------------------------------------------------------------------------------------------------


def down(conn):
    originals = schema.recorded(conn, MIGRATION)
    if not originals:
        raise ValueError(
            "this database was given import lineage by an earlier release of datasette-glyph, which did not record "
            "the schema it replaced; it cannot be taken below 0002"
        )
    tables = [o.name for o in originals if o.type == "table" and o.name != BATCHES]
    for table in [BATCHES, *tables]:
        conn.execute(f"DROP TABLE IF EXISTS {schema.quote(_kept(table))}")
    conn.execute(f"CREATE TABLE {_kept(BATCHES)} AS SELECT * FROM import_batches")
    conn.execute(f"DROP TABLE IF EXISTS {KEPT_SEQUENCE}")
    if "sqlite_sequence" in schema.tables(conn):
        names = ", ".join("?" for _ in [BATCHES, *tables])
        conn.execute(
            f"CREATE TABLE {KEPT_SEQUENCE} AS SELECT name, seq FROM sqlite_sequence WHERE name IN ({names})",
            [BATCHES, *tables],
        )
    for table in tables:
        original_sql = next(o.sql for o in originals if o.type == "table" and o.name == table)
        original_columns = _columns_of_definition(conn, original_sql)
        q = schema.quote(table)
        conn.execute(
            f"CREATE TABLE {schema.quote(_kept(table))} AS SELECT rowid AS row_id, import_id, import_index FROM {q}"
        )
        dependents = [o for o in originals if o.tbl_name == table and o.type != "table"]
        if _restore_in_place(conn, table, original_sql, original_columns, dependents):
            schema.restore_original_sequence(conn, MIGRATION, table)
            continue
        values = {}
        stored = schema.columns(conn, table)  # generated columns are computed, never written
        for column in [c for c in original_columns if c in stored]:
            if column == "import_id":
                values[column] = "NULLIF(o.import_id, :legacy)"
            elif column == "import_index":
                values[column] = "CASE WHEN r.row_id IS NOT NULL THEN r.import_index ELSE o.import_index END"
            else:
                values[column] = f"o.{schema.quote(column)}"
        joins = "LEFT JOIN glyph_original_import_index AS r ON r.tbl = :table AND r.row_id = o.rowid"
        _rebuild_bound(conn, table, original_sql, values, dependents, joins, {"legacy": LEGACY_IMPORT_ID, "table": table})
        schema.restore_original_sequence(conn, MIGRATION, table)
    conn.execute("DELETE FROM import_batches WHERE import_id IN (SELECT import_id FROM glyph_adopted_batches)")
    batches_sql = next(o.sql for o in originals if o.name == BATCHES)
    values = {c: f"o.{schema.quote(c)}" for c in _columns_of_definition(conn, batches_sql)}
    dependents = [o for o in originals if o.tbl_name == BATCHES and o.type != "table"]
    _rebuild_bound(conn, BATCHES, batches_sql, values, dependents, "", {})
    schema.restore_original_sequence(conn, MIGRATION, BATCHES)
    for name in ["glyph_original_import_index", "glyph_adopted_batches", "glyph_original_broken_keys"]:
        conn.execute(f"DROP TABLE IF EXISTS {name}")
    schema.forget_recorded(conn, MIGRATION)


def _restore_in_place(conn, table, original_sql, original_columns, dependents):
    """Give ``table`` back its original definition without copying it, when up changed only what allows that.

    Up added import_index as the last column (or kept the one the table had) and appended NOT NULL, CHECK and
    REFERENCES clauses; every other column is stored as the original defined it. So SQLite's DROP COLUMN
    takes the added column out of every row, and the original CREATE TABLE statement is written back into
    sqlite_master as it was: the procedure SQLite documents for removing constraints (section 7 of "ALTER
    TABLE", with writable_schema). The indexes that are already the original ones stay as they are; the
    rebuild recreated all of them (with the copy, 12 s of 0002's 14 s down at a million rows).
    Returns False, having changed nothing, when the table is not in that shape or SQLite refuses.
    """
    stored = schema.columns(conn, table)
    added = [c for c in stored if c not in original_columns]
    if added not in ([], ["import_index"]) or stored[: len(original_columns)] != original_columns:
        return False
    if len(stored) != len(original_columns) + len(added) or len(stored) != len(_all_columns(conn, table)):
        return False  # generated columns: leave them to the rebuild
    q = schema.quote(table)
    conn.execute("SAVEPOINT glyph_in_place")
    try:
        wanted = {o.name: o.sql for o in dependents}
        for obj in schema.objects_of(conn, table):
            if obj.type == "trigger" or (obj.type == "index" and wanted.get(obj.name) != obj.sql):
                conn.execute(f"DROP {obj.type.upper()} {schema.quote(obj.name)}")
        if added:
            conn.execute(f"ALTER TABLE {q} DROP COLUMN import_index")
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?", [original_sql, table])
            conn.execute(f"PRAGMA schema_version = {version + 1}")
        finally:
            conn.execute("PRAGMA writable_schema = OFF")
    except sqlite3.Error:
        conn.execute("ROLLBACK TO glyph_in_place")
        conn.execute("RELEASE glyph_in_place")
        return False
    conn.execute("RELEASE glyph_in_place")
    conn.execute(f"UPDATE {q} SET import_id = NULL WHERE import_id = ?", [LEGACY_IMPORT_ID])
    if not added:
        conn.execute(
            f"UPDATE {q} SET import_index = r.import_index FROM glyph_original_import_index AS r "
            f"WHERE r.tbl = ? AND r.row_id = {q}.rowid",
            [table],
        )
    present = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = ?", [table])}
    for obj in dependents:
        if obj.name not in present:
            conn.execute(obj.sql)
    return True


def _all_columns(conn, table):
    return [r[1] for r in conn.execute("SELECT * FROM pragma_table_xinfo(?)", [table])]


def _rebuild_bound(conn, table, create_sql, values, dependents, joins, params):
    # schema.rebuild_table takes expressions without parameters; bind them as literals of a temp table instead.
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS _glyph_params (key TEXT PRIMARY KEY, value)")
    conn.execute("DELETE FROM temp._glyph_params")
    conn.executemany("INSERT INTO temp._glyph_params VALUES (?, ?)", list(params.items()))
    for key in params:
        lookup = f"(SELECT value FROM temp._glyph_params WHERE key = '{key}')"
        values = {c: e.replace(f":{key}", lookup) for c, e in values.items()}
        joins = joins.replace(f":{key}", lookup)
    schema.rebuild_table(conn, table, create_sql, values, dependents, joins=joins)
    conn.execute("DROP TABLE temp._glyph_params")


def _columns_of_definition(conn, create_sql):
    """The columns a CREATE TABLE statement defines, in order."""
    _, definitions, _ = schema.split_definitions(create_sql)
    return [schema.column_name(d) for d in definitions if not schema.is_table_constraint(d)]
