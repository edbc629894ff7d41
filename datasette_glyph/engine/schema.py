"""Read a database's schema as it is, record it, and rebuild tables from it without losing a row.

Migrations that change tables they did not create (the old store's, in any of its variants) work from
what the file holds: ``sqlite_master`` and the introspection of sqlite-utils (columns, foreign keys,
indexes, triggers). Before a migration changes an object it records the object's exact ``sql`` in
``glyph_original_schema``; going down recreates those definitions verbatim.

A table is rebuilt the way SQLite's documented procedure does it (section 7 of "ALTER TABLE"): rename
the old table away, create the new one, copy every row with its rowid, drop the old one, recreate the
indexes and triggers. Foreign key enforcement is off and ``legacy_alter_table`` on for the whole step
(``migrate.apply_step`` arranges both), so that other tables' REFERENCES and triggers keep their text.

Nothing here imports Datasette.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import sqlite_utils

ORIGINAL_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS glyph_original_schema (
    migration TEXT NOT NULL, -- the migration that changed or removed the object, e.g. 0002
    seq INTEGER NOT NULL, -- the object's position in sqlite_master when it was recorded
    type TEXT NOT NULL, -- table, index, trigger or view
    name TEXT NOT NULL,
    tbl_name TEXT NOT NULL,
    sql TEXT NOT NULL, -- the definition exactly as sqlite_master held it
    PRIMARY KEY (migration, name)
)
"""

ORIGINAL_SEQUENCE_SQL = """
CREATE TABLE IF NOT EXISTS glyph_original_sequence (
    migration TEXT NOT NULL,
    name TEXT NOT NULL, -- a table the migration changed
    seq INTEGER, -- its sqlite_sequence value then; NULL when it had none
    PRIMARY KEY (migration, name)
)
"""

# Prefix of every table that holds glyph's bookkeeping: what migrations recorded and what going down kept aside.
BOOKKEEPING_PREFIX = "glyph_"


@dataclass(frozen=True)
class SchemaObject:
    type: str
    name: str
    tbl_name: str
    sql: str


def quote(name: str) -> str:
    """An identifier, quoted for SQL."""
    return '"' + name.replace('"', '""') + '"'


def tables(conn: sqlite3.Connection) -> List[str]:
    return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]


def columns(conn: sqlite3.Connection, table: str) -> List[str]:
    """The table's stored columns, in order (generated columns left out: they cannot be written)."""
    return [
        row[1]
        for row in conn.execute("SELECT * FROM pragma_table_xinfo(?)", [table])
        if row[6] in (0, 1)  # hidden
    ]


def objects_of(conn: sqlite3.Connection, table: str) -> List[SchemaObject]:
    """The table itself, then its explicit indexes and its triggers, as sqlite_master holds them.

    Indexes that SQLite makes for UNIQUE and PRIMARY KEY constraints have no ``sql``: the table's own
    definition brings them back.
    """
    # recursive_triggers=False: sqlite-utils would otherwise turn recursive triggers on for the connection,
    # and the old store's AFTER UPDATE triggers (which update their own table) would then recurse.
    db = sqlite_utils.Database(conn, recursive_triggers=False)
    found = [SchemaObject("table", table, table, db[table].schema)]
    names = [index.name for index in db[table].indexes] + [trigger.name for trigger in db[table].triggers]
    for name in names:
        row = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name = ?", [name]).fetchone()
        if row is not None and row[3] is not None:
            found.append(SchemaObject(*row))
    order = {name: i for i, (name,) in enumerate(conn.execute("SELECT name FROM sqlite_master ORDER BY rowid"))}
    return sorted(found, key=lambda o: (o.type != "table", order.get(o.name, 0)))


def record_original(conn: sqlite3.Connection, migration: str, objects: Iterable[SchemaObject]) -> None:
    """Keep the exact definitions of objects a migration is about to change, and the AUTOINCREMENT
    high-water marks of its tables, for its down step."""
    objects = list(objects)
    conn.execute(ORIGINAL_SCHEMA_SQL)
    conn.execute(ORIGINAL_SEQUENCE_SQL)
    conn.executemany(
        "INSERT OR IGNORE INTO glyph_original_sequence (migration, name, seq) VALUES (?, ?, ?)",
        [(migration, o.name, sequence(conn, o.name)) for o in objects if o.type == "table"],
    )
    order = {name: i for i, (name,) in enumerate(conn.execute("SELECT name FROM sqlite_master ORDER BY rowid"))}
    conn.executemany(
        "INSERT OR IGNORE INTO glyph_original_schema (migration, seq, type, name, tbl_name, sql) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(migration, order.get(o.name, 0), o.type, o.name, o.tbl_name, o.sql) for o in objects],
    )


def recorded(conn: sqlite3.Connection, migration: str) -> List[SchemaObject]:
    """The definitions ``record_original`` kept for a migration, in their original order."""
    if "glyph_original_schema" not in tables(conn):
        return []
    return [
        SchemaObject(*row)
        for row in conn.execute(
            "SELECT type, name, tbl_name, sql FROM glyph_original_schema WHERE migration = ? ORDER BY seq", [migration]
        )
    ]


def forget_recorded(conn: sqlite3.Connection, migration: str) -> None:
    for name in ("glyph_original_schema", "glyph_original_sequence"):
        if name in tables(conn):
            conn.execute(f"DELETE FROM {name} WHERE migration = ?", [migration])
            if conn.execute(f"SELECT COUNT(*) FROM {name}").fetchone()[0] == 0:
                conn.execute(f"DROP TABLE {name}")


def restore_original_sequence(conn: sqlite3.Connection, migration: str, table: str) -> None:
    """Put a table's AUTOINCREMENT high-water mark back to what it was when the migration recorded it,
    or to the table's highest rowid if rows written since need more (an id that is in use is never given out).
    """
    if "glyph_original_sequence" not in tables(conn) or "sqlite_sequence" not in tables(conn):
        return
    row = conn.execute(
        "SELECT seq FROM glyph_original_sequence WHERE migration = ? AND name = ?", [migration, table]
    ).fetchone()
    if row is None:
        return
    highest = conn.execute(f"SELECT MAX(rowid) FROM {quote(table)}").fetchone()[0]
    values = [v for v in (row[0], highest) if v is not None]
    conn.execute("DELETE FROM sqlite_sequence WHERE name = ?", [table])
    if values:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, max(values)])


def sequence(conn: sqlite3.Connection, table: str) -> Optional[int]:
    """The AUTOINCREMENT high-water mark of a table, or None when it has none."""
    if "sqlite_sequence" not in tables(conn):
        return None
    row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", [table]).fetchone()
    return row[0] if row else None


def _restore_sequence(conn: sqlite3.Connection, table: str, seq: Optional[int]) -> None:
    # Ids are never reused: the new table's high-water mark is never lower than the old one's.
    if seq is None or "sqlite_sequence" not in tables(conn):
        return
    if conn.execute("SELECT 1 FROM sqlite_sequence WHERE name = ?", [table]).fetchone():
        conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", [seq, table])
    else:
        conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", [table, seq])


@contextlib.contextmanager
def triggers_set_aside(conn: sqlite3.Connection, table: str) -> Iterator[None]:
    """Drop a table's triggers for the duration, and create them again, verbatim, afterwards."""
    triggers = [o for o in objects_of(conn, table) if o.type == "trigger"]
    for trigger in triggers:
        conn.execute(f"DROP TRIGGER {quote(trigger.name)}")
    yield
    for trigger in triggers:
        conn.execute(trigger.sql)


def rebuild_table(
    conn: sqlite3.Connection,
    table: str,
    create_sql: str,
    values: Dict[str, str],
    dependents: Sequence[SchemaObject],
    joins: str = "",
) -> None:
    """Replace ``table`` by one made with ``create_sql``, copying every row with its rowid.

    ``values`` maps each column of the new table to an SQL expression over the old row (aliased ``o``)
    and anything ``joins`` brings in. ``dependents`` are the indexes and triggers to create afterwards,
    verbatim. The table's current indexes and triggers are dropped first.
    """
    seq = sequence(conn, table)
    for obj in objects_of(conn, table):
        if obj.type in ("index", "trigger"):
            conn.execute(f"DROP {obj.type.upper()} {quote(obj.name)}")
    old = f"_glyph_old_{table}"
    conn.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(old)}")
    conn.execute(create_sql)
    names = ", ".join(quote(c) for c in values)
    exprs = ", ".join(values.values())
    conn.execute(
        f"INSERT INTO {quote(table)} (rowid, {names}) "
        f"SELECT o.rowid, {exprs} FROM {quote(old)} AS o {joins} ORDER BY o.rowid"
    )
    conn.execute(f"DROP TABLE {quote(old)}")
    for obj in dependents:
        conn.execute(obj.sql)
    _restore_sequence(conn, table, seq)


# Editing a CREATE TABLE statement ------------------------------------------------------------------------
#
# sqlite-utils' table.transform() rebuilds a table from its introspected definition, but it writes the
# definition anew: on the old store's tables it turned `created_at TIMESTAMP NOT NULL` into `REAL` (another
# type affinity, so values could change) and `VARCHAR(64)` into `TEXT`, and quoted every name. Adoption must
# keep every column as written, so it edits the original statement instead, touching only the column
# definitions it has to change. The statement is split at its top-level commas, which needs only quoting
# and parentheses to be understood.

_TABLE_CONSTRAINT_WORDS = ("constraint", "primary", "unique", "check", "foreign")


def split_definitions(create_sql: str) -> Tuple[str, List[str], str]:
    """``CREATE TABLE t (a INT, b TEXT, PRIMARY KEY (a)) STRICT`` -> (head, [each definition], tail).

    Each definition keeps its surrounding whitespace, so ``head + ",".join(defs) + tail`` is the input.
    """
    depth, i, start, parts, head_end = 0, 0, None, [], None
    n = len(create_sql)
    while i < n:
        c = create_sql[i]
        if c in "'\"`[":
            close = "]" if c == "[" else c
            i += 1
            while i < n:
                if create_sql[i] == close:
                    if close != "]" and i + 1 < n and create_sql[i + 1] == close:
                        i += 2
                        continue
                    break
                i += 1
        elif c == "-" and create_sql.startswith("--", i):
            end = create_sql.find("\n", i)
            i = n if end == -1 else end
            continue
        elif c == "/" and create_sql.startswith("/*", i):
            end = create_sql.find("*/", i + 2)
            i = n if end == -1 else end + 2
            continue
        elif c == "(":
            depth += 1
            if depth == 1 and head_end is None:
                head_end, start = i + 1, i + 1
        elif c == ")":
            depth -= 1
            if depth == 0 and start is not None:
                parts.append(create_sql[start:i])
                return create_sql[:head_end], parts, create_sql[i:]
        elif c == "," and depth == 1:
            parts.append(create_sql[start:i])
            start = i + 1
        i += 1
    raise ValueError(f"Cannot read the column list of: {create_sql[:80]}")


def column_name(definition: str) -> str:
    """The name a column definition starts with, unquoted."""
    return _first_word(definition)


def _first_word(definition: str) -> str:
    text = definition.strip()
    while text.startswith("--") or text.startswith("/*"):
        if text.startswith("--"):
            text = text.split("\n", 1)[1].strip() if "\n" in text else ""
        else:
            text = text.split("*/", 1)[1].strip() if "*/" in text else ""
    if not text:
        return ""
    if text[0] in '"`[':
        close = "]" if text[0] == "[" else text[0]
        end = text.find(close, 1)
        return text[1:end]
    word = ""
    for ch in text:
        if ch.isspace() or ch in "(,":
            break
        word += ch
    return word


def definition_of(definitions: Sequence[str], column: str) -> Optional[int]:
    """Index of the column definition naming ``column`` (case-insensitive), or None."""
    for i, d in enumerate(definitions):
        word = _first_word(d)
        if word.lower() == column.lower() and not is_table_constraint(d):
            return i
    return None


def is_table_constraint(definition: str) -> bool:
    stripped = definition.strip()
    if stripped[:1] in '"`[':
        return False
    return _first_word(definition).lower() in _TABLE_CONSTRAINT_WORDS


def _strip_trailing_comment(definition: str) -> Tuple[str, str]:
    """Split a definition into its SQL and a trailing ``-- comment`` (with the whitespace around it)."""
    lines = definition.split("\n")
    body, trailer = definition.rstrip(), definition[len(definition.rstrip()) :]
    # A `--` comment at the end of the last line stays after whatever is appended to the definition.
    last = lines[-1] if lines[-1].strip() else (lines[-2] if len(lines) > 1 else "")
    position = _comment_start(last)
    if position is not None:
        index = definition.rfind(last)
        body = definition[: index + position].rstrip()
        trailer = definition[len(body) :]
    return body, trailer


def _comment_start(line: str) -> Optional[int]:
    quote_char = None
    for i, ch in enumerate(line):
        if quote_char:
            if ch == quote_char:
                quote_char = None
        elif ch in "'\"`":
            quote_char = ch
        elif line.startswith("--", i):
            return i
    return None


def append_to_definition(definition: str, clause: str) -> str:
    """Add ``clause`` (e.g. ``NOT NULL``) at the end of a column definition, before any trailing comment."""
    body, trailer = _strip_trailing_comment(definition)
    return f"{body} {clause}{trailer}"


def join_definitions(head: str, definitions: Sequence[str], tail: str) -> str:
    return head + ",".join(definitions) + tail


def add_column_definition(definitions: List[str], new: str) -> List[str]:
    """Insert a column definition after the last column (before any table constraint), shaped like its neighbours."""
    last_column = max(i for i, d in enumerate(definitions) if not is_table_constraint(d))
    previous = definitions[last_column]
    leading = previous[: len(previous) - len(previous.lstrip())] or " "
    if last_column < len(definitions) - 1:
        return [*definitions[: last_column + 1], leading + new, *definitions[last_column + 1 :]]
    # The last definition carries the whitespace (and any `--` comment) before the closing parenthesis;
    # the comment becomes a /* */ one so that the comma after the column stays outside it.
    body, trailer = _strip_trailing_comment(previous)
    ending = previous[len(previous.rstrip()) :]
    comment = trailer.strip()
    if comment.startswith("--"):
        body += " /* " + comment[2:].strip().replace("*/", "* /") + " */"
    return [*definitions[:last_column], body, leading + new + ending]


def bookkeeping_tables(conn: sqlite3.Connection) -> List[str]:
    return [t for t in tables(conn) if t.startswith(BOOKKEEPING_PREFIX)]


# The tables where ANALYZE keeps what the query planner knows of each index.
STAT_TABLES = ("sqlite_stat1", "sqlite_stat4")


def index_statistics(conn: sqlite3.Connection, indexes: Iterable[str]) -> Dict[str, List[tuple]]:
    """The rows ANALYZE wrote for ``indexes``, by statistics table: ``DROP INDEX`` deletes them, and an index
    created again has none until the next ANALYZE, so whoever drops an index to build it again puts them back
    (``put_back_statistics``)."""
    names = list(indexes)
    present = {
        row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE name IN ('sqlite_stat1', 'sqlite_stat4')")
    }
    saved: Dict[str, List[tuple]] = {}
    for table in STAT_TABLES:
        if table in present and names:
            marks = ", ".join("?" for _ in names)
            saved[table] = conn.execute(f"SELECT * FROM {table} WHERE idx IN ({marks})", names).fetchall()
    return saved


def put_back_statistics(conn: sqlite3.Connection, saved: Dict[str, List[tuple]]) -> None:
    """Write back what ``index_statistics`` read, once the indexes exist again."""
    for table, rows in saved.items():
        if rows:
            marks = ", ".join("?" for _ in rows[0])
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
