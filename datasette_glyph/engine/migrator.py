"""Reversible schema migrations: find them, plan a move between versions, apply or roll back, report.

A migration is a pair of files, ``NNNN_name.up.sql`` and ``NNNN_name.down.sql``, or one Python file
``NNNN_name.py`` with ``up(conn)`` and ``down(conn)`` for a migration that must plan from what the file
holds (see ``schema``). They live in the ``migrations`` folder (shipped in the wheel as
``datasette_glyph.migrations``). The first ``--`` comment line of an up script, or the first line of a
Python migration's docstring, is its description. Applied migrations are recorded in
``glyph_migrations`` with the SHA-256 of their up script (or Python file), so that a file changed after
it was applied is noticed; a file may name the checksums it supersedes (``-- supersedes: <sha256>`` or
``SUPERSEDES = [...]``) when it was rewritten without changing what it does to an applied database.

Everything here works on a plain ``sqlite3.Connection``; nothing imports Datasette.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from . import schema
from .sqlite import connect, enable_wal, transaction

BOOKKEEPING_SQL = """
CREATE TABLE IF NOT EXISTS glyph_migrations (
    id TEXT PRIMARY KEY, -- the migration's number, e.g. 0002
    name TEXT NOT NULL, -- file stem without the number, e.g. import_lineage
    checksum TEXT NOT NULL, -- SHA-256 of the up script as applied
    applied_at TEXT NOT NULL -- ISO 8601, UTC
)
"""

# Tables the inherited (pre-lineage) schema had: a database holding all of them and schema_version, but
# no glyph_migrations, was made by the old store and is at 0001.
INHERITED_TABLES = {"import_batches", "models", "listings", "scored_listings", "quantized_listings", "schema_version"}

# What status() gives as applied_at of 0001 for a database the old store made and nothing has adopted yet.
LEGACY_APPLIED_AT = "by the old store"

FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up\.sql|down\.sql|py)$")
SUPERSEDES_RE = re.compile(r"^--\s*supersedes:\s*([0-9a-f]{64})\s*$", re.MULTILINE)

# Written when glyph-migrate adopts a database the old store made: 0001 was not created here, so going
# below it is refused (it would drop the operator's tables).
ADOPTION_SQL = """
CREATE TABLE IF NOT EXISTS glyph_adoption (
    adopted_at TEXT NOT NULL, -- ISO 8601, UTC
    found TEXT NOT NULL -- what adoption found: the old store's tables, and any it does not own
)
"""


class MigrationError(Exception):
    """A migration could not be planned or applied; the message says which and why."""


class NotManaged(MigrationError):
    """The database has tables but no ``glyph_migrations``: this package does not own it (yet)."""


@dataclass(frozen=True)
class Migration:
    id: str
    name: str
    description: str
    up_sql: str  # the up script, or the Python file's source
    down_sql: str  # the down script; empty for a Python migration
    python: Optional[Dict] = field(default=None, compare=False, repr=False)  # a Python migration's namespace

    @property
    def label(self) -> str:
        return f"{self.id}_{self.name}"

    @property
    def checksum(self) -> str:
        # Line endings are normalised so that a checkout with CRLF files is not taken for a changed file.
        return hashlib.sha256(self.up_sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()

    @property
    def supersedes(self) -> set:
        if self.python is not None:
            return set(self.python.get("SUPERSEDES", []))
        return set(SUPERSEDES_RE.findall(self.up_sql))

    def accepts(self, checksum: str) -> bool:
        return checksum == self.checksum or checksum in self.supersedes


@dataclass(frozen=True)
class Status:
    migration: Optional[Migration]  # None when the database knows a migration the files do not
    id: str
    applied_at: Optional[str]
    drifted: bool  # applied, but the up script has changed since

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


@dataclass(frozen=True)
class Step:
    migration: Migration
    direction: str  # "up" or "down"

    @property
    def sql(self) -> str:
        return self.migration.up_sql if self.direction == "up" else self.migration.down_sql

    def run(self, conn: sqlite3.Connection, kept: str) -> None:
        """Run the step's statements (or its Python function); MigrationError says where it failed."""
        if self.migration.python is None:
            _run_statements(conn, self, kept)
            return
        label, direction = self.migration.label, self.direction
        try:
            self.migration.python[direction](conn)
        except (sqlite3.Error, ValueError) as e:
            raise MigrationError(f"Migration {label} ({direction}) failed: {e}\n{kept}") from e


def load_migrations(files: Optional[Iterable] = None) -> List[Migration]:
    """Read every migration pair from the packaged ``migrations`` folder (or the given files), in order."""
    if files is None:
        files = [
            f
            for f in resources.files("datasette_glyph.migrations").iterdir()
            if f.name.endswith(".sql") or (f.name.endswith(".py") and f.name[:1].isdigit())
        ]
    scripts = {}
    for f in files:
        m = FILE_RE.match(f.name)
        if not m:
            raise MigrationError(f"Unexpected file in migrations: {f.name}")
        kind = m.group(3).split(".")[0]
        scripts.setdefault((m.group(1), m.group(2)), {})[kind] = f.read_text(encoding="utf-8")
    migrations = []
    for (mid, name), pair in sorted(scripts.items()):
        if "py" in pair:
            if {"up", "down"} & set(pair):
                raise MigrationError(f"Migration {mid}_{name} is both a Python file and SQL scripts")
            namespace = _load_python(f"{mid}_{name}.py", pair["py"])
            migrations.append(Migration(mid, name, _docstring_line(namespace), pair["py"], "", namespace))
            continue
        missing = {"up", "down"} - set(pair)
        if missing:
            raise MigrationError(f"Migration {mid}_{name} has no {missing.pop()} script")
        migrations.append(Migration(mid, name, _description(pair["up"]), pair["up"], pair["down"]))
    ids = [m.id for m in migrations]
    if len(set(ids)) != len(ids):
        raise MigrationError(
            "Two migrations share a number: " + ", ".join(sorted({i for i in ids if ids.count(i) > 1}))
        )
    return migrations


def _load_python(filename: str, source: str) -> Dict:
    namespace: Dict = {"__name__": f"datasette_glyph.migrations.m{filename[:4]}", "__file__": filename}
    exec(compile(source, filename, "exec"), namespace)
    for function in ("up", "down"):
        if not callable(namespace.get(function)):
            raise MigrationError(f"Migration {filename} has no {function}(conn) function")
    return namespace


def _docstring_line(namespace: Dict) -> str:
    doc = (namespace.get("__doc__") or "").strip()
    return doc.splitlines()[0].strip() if doc else ""


def _description(sql: str) -> str:
    for line in sql.splitlines():
        line = line.strip()
        if line.startswith("--"):
            return line.lstrip("-").strip()
        if line:
            break
    return ""


def split_statements(sql: str) -> List[str]:
    """Split a script into statements, keeping trigger bodies whole."""
    return [statement for _, statement in numbered_statements(sql)]


def numbered_statements(sql: str) -> List[Tuple[int, str]]:
    """Split a script into (line number where the statement starts, statement), comments removed."""
    statements, current, start = [], "", None
    for number, line in enumerate(sql.splitlines(keepends=True), start=1):
        if start is None and line.strip() and not line.strip().startswith("--"):
            start = number
        current += line
        if sqlite3.complete_statement(current):
            stripped = _strip_comments(current)
            if stripped:
                statements.append((start, stripped))
            current, start = "", None
    if _strip_comments(current):
        raise MigrationError(f"Incomplete statement at end of script (line {start}): {_strip_comments(current)[:80]}")
    return statements


def _strip_comments(sql: str) -> str:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return "\n".join(lines).strip()


def _table_names(conn: sqlite3.Connection) -> set:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def is_legacy(conn: sqlite3.Connection) -> bool:
    """True for a database made by the old store: the inherited tables and no ``glyph_migrations``."""
    tables = _table_names(conn)
    return "glyph_migrations" not in tables and INHERITED_TABLES <= tables


# The columns adoption needs in each of the old store's tables; anything else in them is kept as it is.
REQUIRED_COLUMNS = {
    "import_batches": ["id", "import_id"],
    "models": ["model", "import_id"],
    "listings": ["import_id"],
    "scored_listings": ["canonical_model", "price", "import_id"],
    "quantized_listings": ["scored_listing_id", "import_id"],
    "schema_version": ["version"],
}


# What to do with a database that glyph-migrate will not adopt: the server, startup and glyph-migrate all say it.
NOT_GLYPH_ADVICE = (
    "Datasette serves it as it is; the plugin's pages and API need a glyph database: make one in a new file "
    "(datasette glyph-migrate glyph.db), serve it beside this one and name it in the plugin's database setting"
)


def not_glyph(conn: sqlite3.Connection) -> Optional[str]:
    """For a database that has tables but is neither managed by glyph nor the old store's, what it holds (which
    glyph-migrate refuses to adopt); None for any other database (empty, managed, the old store's)."""
    tables = sorted(t for t in _table_names(conn) if not t.startswith("sqlite_"))
    if not tables or "glyph_migrations" in tables or INHERITED_TABLES <= set(tables):
        return None
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return f"it holds the tables {shown}, not glyph's nor the old store's"


def check_adoptable(conn: sqlite3.Connection) -> str:
    """Check that an unmanaged database is the old store's and is whole; say what was found.

    Raises MigrationError naming what was expected and what was found, before anything is changed.
    """
    tables = sorted(t for t in _table_names(conn) if not t.startswith("sqlite_"))
    missing = sorted(INHERITED_TABLES - set(tables))
    if missing:
        raise MigrationError(
            "This is not a database of the old store, nor one datasette-glyph manages: expected the tables "
            f"{', '.join(sorted(INHERITED_TABLES))}; missing {', '.join(missing)}; "
            f"found {', '.join(tables) or 'no tables'}. Nothing was changed. {NOT_GLYPH_ADVICE}."
        )
    for table, needed in REQUIRED_COLUMNS.items():
        present = schema.columns(conn, table)
        absent = [c for c in needed if c not in present]
        if absent:
            raise MigrationError(
                f"This is not a database of the old store: table {table} has no column {', '.join(absent)} "
                f"(found {', '.join(present)}). Nothing was changed."
            )
    problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise MigrationError(
            "The database is damaged (PRAGMA quick_check: " + "; ".join(problems) + "). "
            "Restore it from a backup or repair it with the sqlite3 shell's .recover; nothing was changed."
        )
    others = [t for t in tables if t not in INHERITED_TABLES]
    with_index = [t for t in sorted(INHERITED_TABLES) if "import_index" in schema.columns(conn, t)]
    found = "the old store's tables"
    if with_index:
        found += "; import_index already on " + ", ".join(with_index)
    if others:
        found += "; kept as they are: " + ", ".join(others)
    return found


def is_adopted(conn: sqlite3.Connection) -> bool:
    """True for a database the old store made and glyph-migrate adopted (its 0001 was not made here)."""
    return "glyph_adoption" in _table_names(conn)


def _adopt_legacy(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Create the bookkeeping table; record a database made by the old store as being at 0001.

    Any other database that has tables is refused: migrating it would add a schema beside tables that
    are not the old store's.
    """
    tables = _table_names(conn)
    if "glyph_migrations" in tables:
        return
    if not [t for t in tables if not t.startswith("sqlite_")]:
        conn.execute(BOOKKEEPING_SQL)
        return
    found = check_adoptable(conn)
    conn.execute(BOOKKEEPING_SQL)
    conn.execute(ADOPTION_SQL)
    conn.execute("INSERT INTO glyph_adoption (adopted_at, found) VALUES (?, ?)", [now(), found])
    if migrations and migrations[0].id == "0001":
        _record(conn, migrations[0])


def _record(conn: sqlite3.Connection, migration: Migration) -> None:
    conn.execute(
        "INSERT INTO glyph_migrations (id, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
        [migration.id, migration.name, migration.checksum, now()],
    )


def now() -> str:
    """The time a migration is recorded as applied: UTC, to the second."""
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


clock = time.perf_counter  # how long each step took (replaceable, for fixed output)


def describe_version(version: Optional[str]) -> str:
    """How a version reads in messages: "0002", or "0 (no migration applied)"."""
    return version or "0 (no migration applied)"


def is_managed(conn: sqlite3.Connection) -> bool:
    """True for a database this package owns: it has ``glyph_migrations``, or no tables at all."""
    tables = _table_names(conn)
    return "glyph_migrations" in tables or not tables


def status(conn: sqlite3.Connection, migrations: Optional[Sequence[Migration]] = None) -> List[Status]:
    """Every known migration with when it was applied (None if pending), plus unknown applied ones."""
    migrations = load_migrations() if migrations is None else migrations
    applied = {}
    if "glyph_migrations" in _table_names(conn):
        applied = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, checksum, applied_at FROM glyph_migrations")}
    elif is_legacy(conn) and migrations and migrations[0].id == "0001":
        applied = {"0001": (migrations[0].checksum, LEGACY_APPLIED_AT)}
    rows = []
    for m in migrations:
        checksum, applied_at = applied.pop(m.id, (None, None))
        rows.append(Status(m, m.id, applied_at, checksum is not None and not m.accepts(checksum)))
    for mid, (_, applied_at) in sorted(applied.items()):
        rows.append(Status(None, mid, applied_at, False))
    return rows


def current_version(conn: sqlite3.Connection, migrations: Optional[Sequence[Migration]] = None) -> Optional[str]:
    """The id of the newest applied migration, or None for an empty database."""
    applied = [s.id for s in status(conn, migrations) if s.applied]
    return applied[-1] if applied else None


def plan(
    conn: sqlite3.Connection,
    target: Optional[str] = None,
    rollback: Optional[int] = None,
    migrations: Optional[Sequence[Migration]] = None,
) -> List[Step]:
    """The steps that take the database to ``target`` (default: the newest), or back ``rollback`` steps.

    ``target`` "0" means before the first migration. Raises MigrationError for checksum drift, an
    unknown target, or a database that has migrations these files do not know.
    """
    migrations = load_migrations() if migrations is None else migrations
    rows = status(conn, migrations)
    unknown = [s.id for s in rows if s.migration is None]
    if unknown:
        raise MigrationError(
            f"The database has migration(s) {', '.join(unknown)} that this version of datasette-glyph does not know; "
            "upgrade datasette-glyph before migrating this database."
        )
    drifted = [s.migration for s in rows if s.drifted]
    if drifted:
        names = ", ".join(m.label + (".py" if m.python is not None else ".up.sql") for m in drifted)
        raise MigrationError(
            f"Checksum drift: {names} changed after it was applied to this database. "
            "Restore the file as it was (a change to the schema needs a new migration), then run again."
        )
    applied_ids = [s.id for s in rows if s.applied]
    known = [m.id for m in migrations]
    if rollback is not None:
        if rollback < 0:
            raise MigrationError("Cannot roll back a negative number of migrations")
        if rollback > len(applied_ids):
            raise MigrationError(f"Cannot roll back {rollback}: only {len(applied_ids)} migration(s) applied")
        target_index = len(applied_ids) - rollback
    elif target is None:
        target_index = len(known)
    else:
        target = target.strip()
        if target in ("0", "0000", "zero"):
            target_index = 0
        else:
            matches = [i for i, m in enumerate(migrations) if target in (m.id, m.label, m.id.lstrip("0"))]
            if not matches:
                raise MigrationError(f"Unknown target migration {target!r}; known: {', '.join(known)}")
            target_index = matches[0] + 1
    steps = []
    for i, m in enumerate(migrations):
        if i < target_index and m.id not in applied_ids:
            steps.append(Step(m, "up"))
    for i, m in reversed(list(enumerate(migrations))):
        if i >= target_index and m.id in applied_ids:
            steps.append(Step(m, "down"))
    # A move that would end by refusing a step is refused whole, before its first step: nothing of it is done.
    if any(s.direction == "down" and s.migration.id == "0001" for s in steps) and is_adopted(conn):
        raise MigrationError(
            f"{_below_adopted(steps[-1].migration.label)} Nothing was changed: the database is still at "
            f"{describe_version(applied_ids[-1] if applied_ids else None)}; the lowest it can go is 0001 (--to 0001)."
        )
    return steps


def _below_adopted(label: str) -> str:
    return (
        f"Migration {label} (down) is refused: this database was made by the old store and adopted, so 0001 holds "
        "the operator's own tables; glyph-migrate does not remove them."
    )


def _foreign_key_problems(conn: sqlite3.Connection, tables: Optional[Iterable[str]] = None) -> set:
    """Broken foreign keys as (table, rowid, parent table), in every table or only in ``tables`` (as children).

    The key number is left out, as a rebuilt table may number its keys anew.
    """
    if tables is None:
        return {(table, rowid, parent) for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")}
    return {
        (table, rowid, parent)
        for name in sorted(tables)
        for table, rowid, parent, _ in conn.execute("SELECT * FROM pragma_foreign_key_check(?)", [name])
    }


class _ChangedTables:
    """SQLite's authorizer, told of every statement a step prepares (triggers' included): what it changes.

    A foreign key can only break in a table whose rows were written (or whose key columns were updated),
    whose definition now has other keys, or whose parent table changed: rows deleted, key columns updated,
    the table dropped, renamed, rebuilt or given other keys, or one of its indexes dropped. Checking only
    those tables spares steps that add an index, a column or a small table a pass over every row of the
    database (about 0.5 s a step at a million rows).
    """

    # Actions whose first argument is a table whose rows change. An INSERT may delete (OR REPLACE).
    ROWS = (sqlite3.SQLITE_INSERT, sqlite3.SQLITE_DELETE)
    # Pragmas that change the schema behind SQLite's back: then every table is checked.
    SCHEMA_PRAGMAS = ("writable_schema", "schema_version")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.before = self._shapes(conn)
        self.rows: set = set()  # tables rows were inserted into or deleted from (lower case)
        self.updated: Dict[str, set] = {}  # table -> the columns UPDATE wrote
        self.defined: set = set()  # tables created or altered
        self.dropped: set = set()
        self.lost_index: set = set()  # tables that lost an index (a parent key's unique index, perhaps)
        self.everything = False

    @staticmethod
    def _shapes(conn: sqlite3.Connection) -> Dict[str, tuple]:
        """Each table's root page and foreign keys: what tells a table rebuilt or re-keyed from one left alone."""
        return {
            name.lower(): (rootpage, tuple(conn.execute("SELECT * FROM pragma_foreign_key_list(?)", [name])))
            for name, rootpage in conn.execute("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'")
        }

    def __call__(self, action, arg1, arg2, database, source):
        if database == "temp" or arg1 == "temp":
            return sqlite3.SQLITE_OK
        if action in self.ROWS and arg1:
            self.rows.add(arg1.lower())
        elif action == sqlite3.SQLITE_UPDATE and arg1:
            self.updated.setdefault(arg1.lower(), set()).add((arg2 or "").lower())
        elif action == sqlite3.SQLITE_CREATE_TABLE and arg1:
            self.defined.add(arg1.lower())
        elif action == sqlite3.SQLITE_DROP_TABLE and arg1:
            self.dropped.add(arg1.lower())
        elif action == sqlite3.SQLITE_ALTER_TABLE and arg2:  # (database, table)
            self.defined.add(arg2.lower())
        elif action == sqlite3.SQLITE_DROP_INDEX and arg2:  # (index, table)
            self.lost_index.add(arg2.lower())
        elif action == sqlite3.SQLITE_PRAGMA and (arg1 or "").lower() in self.SCHEMA_PRAGMAS:
            self.everything = True
        return sqlite3.SQLITE_OK

    def to_check(self, conn: sqlite3.Connection) -> Optional[set]:
        """The tables whose foreign keys may have broken (None: every table)."""
        if self.everything:
            return None
        after = self._shapes(conn)
        reshaped = self.dropped | {t for t in self.defined if self.before.get(t) != after.get(t)}
        referenced: Dict[str, set] = {}  # parent -> its columns that keys name (None: its primary key)
        for _, keys in after.values():
            for key in keys:
                referenced.setdefault(key[2].lower(), set()).add(key[4].lower() if key[4] else None)

        def parent_changed(parent: str) -> bool:
            if parent in self.rows or parent in reshaped or parent in self.lost_index:
                return True
            columns = self.updated.get(parent, set())
            return bool(columns) and (None in referenced.get(parent, set()) or bool(columns & referenced[parent]))

        tables = set()
        for name in _table_names(conn):
            table = name.lower()
            keys = after.get(table, (None, ()))[1]
            own = {key[3].lower() for key in keys}
            if (
                table in self.rows
                or table in reshaped
                or self.updated.get(table, set()) & own
                or any(parent_changed(key[2].lower()) for key in keys)
            ):
                tables.add(name)
        return tables


def _stop_authorizer(conn: sqlite3.Connection) -> None:
    # Before Python 3.11, set_authorizer(None) installs None as the callback, and every statement then fails.
    conn.set_authorizer(None if sys.version_info >= (3, 11) else (lambda *args: sqlite3.SQLITE_OK))


def apply_step(conn: sqlite3.Connection, step: Step, previous: Optional[str] = None) -> None:
    """Run one migration step as one transaction (or savepoint); on failure nothing of it remains.

    Table rebuilds want foreign key enforcement off, which only the caller can arrange before its
    transaction begins (``migrate`` does). Instead ``foreign_key_check`` runs after the step on every table
    whose keys the step may have changed (see ``_ChangedTables``), and the step is refused if it leaves a
    broken key that was not broken before. ``previous`` is the version the database is at, for the message
    if the step fails.
    """
    label, direction = step.migration.label, step.direction
    kept = f"Nothing of it was kept: the database is still at {describe_version(previous)}."
    if direction == "down" and step.migration.id == "0001" and is_adopted(conn):
        raise MigrationError(f"{_below_adopted(label)}\n{kept}")
    with transaction(conn, "glyph_migrate"):
        conn.execute("PRAGMA legacy_alter_table = ON")  # keep other tables' REFERENCES text as written
        try:
            # Keys that were broken in the old store's file before adoption never block a step.
            allowed = _recorded_broken_keys(conn)
            conn.execute("SAVEPOINT glyph_step")
            changed = _ChangedTables(conn)
            conn.set_authorizer(changed)
            try:
                step.run(conn, kept)
            finally:
                _stop_authorizer(conn)
            # Adoption records the keys broken before it, as its first act (and down forgets them, as its last).
            allowed |= _recorded_broken_keys(conn)
            broken = _foreign_key_problems(conn, changed.to_check(conn)) - allowed
            if broken:
                # Checking first would cost a pass over every table on every run; a key found broken is
                # rare, so only then is the step undone to see which keys were broken before it.
                conn.execute("ROLLBACK TO glyph_step")
                broken = sorted(broken - _foreign_key_problems(conn))
                if broken:
                    table, rowid, parent = broken[0]
                    raise MigrationError(
                        f"Migration {label} ({direction}) would break {len(broken)} foreign key(s); the first: "
                        f"{table} row {rowid} names a {parent} row that does not exist.\n{kept}"
                    )
                step.run(conn, kept)
            conn.execute("RELEASE glyph_step")
            if direction == "up":
                _record(conn, step.migration)
            else:
                conn.execute("DELETE FROM glyph_migrations WHERE id = ?", [step.migration.id])
        finally:
            conn.execute("PRAGMA legacy_alter_table = OFF")


def _recorded_broken_keys(conn: sqlite3.Connection) -> set:
    if "glyph_original_broken_keys" not in _table_names(conn):
        return set()
    return set(conn.execute("SELECT tbl, row_id, parent FROM glyph_original_broken_keys"))


def pending_reports(conn: sqlite3.Connection, rows: Optional[Sequence[Status]] = None) -> List[str]:
    """Lines that pending Python migrations have to say about this file before they run (``report(conn)``)."""
    rows = status(conn) if rows is None else rows
    lines: List[str] = []
    for row in rows:
        if row.migration is not None and not row.applied and row.migration.python is not None:
            report = row.migration.python.get("report")
            if report:
                lines.extend(report(conn))
    return lines


def broken_keys_at_adoption(conn: sqlite3.Connection) -> int:
    """How many foreign keys the old store's file already had broken when it was adopted."""
    if "glyph_original_broken_keys" not in _table_names(conn):
        return 0
    return conn.execute("SELECT COUNT(*) FROM glyph_original_broken_keys").fetchone()[0]


def kept_aside(conn: sqlite3.Connection) -> List[Tuple[str, int]]:
    """Tables holding what going down kept aside for the next up to restore, with their row counts."""
    return [
        (name, conn.execute(f"SELECT COUNT(*) FROM {schema.quote(name)}").fetchone()[0])
        for name in sorted(schema.bookkeeping_tables(conn))
        if name.startswith("glyph_kept_")
    ]


def discard_kept(conn: sqlite3.Connection) -> List[Tuple[str, int]]:
    """Drop everything going down kept aside; return what was dropped."""
    with transaction(conn, "glyph_discard"):
        dropped = kept_aside(conn)
        for name, _ in dropped:
            conn.execute(f"DROP TABLE {schema.quote(name)}")
    return dropped


def _run_statements(conn: sqlite3.Connection, step: Step, kept: str) -> None:
    label, direction = step.migration.label, step.direction
    for number, (line, statement) in enumerate(numbered_statements(step.sql), start=1):
        try:
            conn.execute(statement)
        except sqlite3.Error as e:
            first_line = statement.splitlines()[0] + (" ..." if "\n" in statement else "")
            raise MigrationError(
                f"Migration {label} ({direction}) failed at statement {number}, line {line} of "
                f"{label}.{direction}.sql: {e}\n    {first_line}\n{kept}"
            ) from e


def migrate(
    conn: sqlite3.Connection,
    target: Optional[str] = None,
    rollback: Optional[int] = None,
    migrations: Optional[Sequence[Migration]] = None,
    on_step=None,
    only_managed: bool = False,
) -> List[Step]:
    """Bring the database to ``target`` (default: newest) or back ``rollback`` steps; return the steps run.

    The plan is made while holding the write lock, so two runs at once never apply the same migration:
    the second waits, then finds nothing left to do. With ``only_managed``, a database that is neither
    empty nor already managed is left untouched and NotManaged is raised.
    """
    migrations = load_migrations() if migrations is None else migrations
    enable_wal(conn)
    foreign_keys = conn.execute("PRAGMA foreign_keys").fetchone()[0]
    conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a caller's transaction, where it is off already
    done: List[Step] = []
    try:
        while True:
            with transaction(conn, "glyph_plan"):
                if only_managed and not is_managed(conn):
                    raise NotManaged(
                        "The database has tables but no glyph_migrations table; adopt it with glyph-migrate"
                    )
                _adopt_legacy(conn, migrations)
                steps = plan(conn, target=target, rollback=rollback, migrations=migrations)
                if not steps:
                    return done
                started = clock()
                apply_step(conn, steps[0], previous=current_version(conn, migrations))
            done.append(steps[0])
            if on_step:
                on_step(steps[0], clock() - started)
            if rollback is not None:
                rollback -= 1
    finally:
        conn.execute(f"PRAGMA foreign_keys = {int(foreign_keys)}")


# Statements a dry run leaves out of what it prints: reads, and the transaction's own bracketing.
_QUIET = ("SELECT", "PRAGMA", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "WITH RECURSIVE")
# ... but not the pragmas that let a step write a table's definition into sqlite_master.
_SCHEMA_PRAGMA_RE = re.compile(r"^PRAGMA\s+(writable_schema|schema_version)\s*=", re.IGNORECASE)


def dry_run(
    conn: sqlite3.Connection, target: Optional[str] = None, rollback: Optional[int] = None
) -> List[Tuple[Step, List[str]]]:
    """The statements each step would run, found by running them on a copy of the file; the file is not touched.

    A migration that plans from what the file holds (a Python one) can only say what it will do by doing
    it, so the whole move runs on a scratch copy (made with SQLite's backup API) and every statement
    that writes is collected as it runs.
    """
    with tempfile.TemporaryDirectory(prefix="glyph-dry-run-") as scratch:
        copy = connect(os.path.join(scratch, "copy.db"), wal=False)
        try:
            conn.backup(copy)
            executed: List[str] = []

            def trace(statement: str) -> None:
                text = statement.strip()
                quiet = text.upper().startswith(_QUIET) and not _SCHEMA_PRAGMA_RE.match(text)
                if text and not quiet and not text.startswith("--"):
                    executed.append(text)

            result: List[Tuple[Step, List[str]]] = []

            def collect(step: Step, _seconds: float) -> None:
                result.append((step, list(executed)))
                executed.clear()

            copy.set_trace_callback(trace)
            migrate(copy, target=target, rollback=rollback, on_step=collect)
            return result
        finally:
            copy.close()


def migrate_if_managed(conn: sqlite3.Connection) -> Optional[List[Step]]:
    """Apply pending migrations to an empty or already managed database; None for any other database.

    Used at server startup, where adopting a database this package does not own would be a surprise.
    """
    try:
        return migrate(conn, only_managed=True)
    except NotManaged:
        return None
