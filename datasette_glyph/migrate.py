"""Reversible schema migrations: find them, plan a move between versions, apply or roll back, report.

Migrations are pairs of files, ``NNNN_name.up.sql`` and ``NNNN_name.down.sql``, in the ``migrations``
folder (shipped in the wheel as ``datasette_glyph.migrations``). The first ``--`` comment line of the
up script is the migration's description. Applied migrations are recorded in ``glyph_migrations``
with the SHA-256 of their up script, so that a file changed after it was applied is noticed.

Everything here works on a plain ``sqlite3.Connection``; nothing imports Datasette.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, List, Optional, Sequence, Tuple

from .db import enable_wal, transaction

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

FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(up|down)\.sql$")


class MigrationError(Exception):
    """A migration could not be planned or applied; the message says which and why."""


class NotManaged(MigrationError):
    """The database has tables but no ``glyph_migrations``: this package does not own it (yet)."""


@dataclass(frozen=True)
class Migration:
    id: str
    name: str
    description: str
    up_sql: str
    down_sql: str

    @property
    def label(self) -> str:
        return f"{self.id}_{self.name}"

    @property
    def checksum(self) -> str:
        # Line endings are normalised so that a checkout with CRLF files is not taken for a changed file.
        return hashlib.sha256(self.up_sql.replace("\r\n", "\n").encode("utf-8")).hexdigest()


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


def load_migrations(files: Optional[Iterable] = None) -> List[Migration]:
    """Read every migration pair from the packaged ``migrations`` folder (or the given files), in order."""
    if files is None:
        files = [f for f in resources.files("datasette_glyph.migrations").iterdir() if f.name.endswith(".sql")]
    scripts = {}
    for f in files:
        m = FILE_RE.match(f.name)
        if not m:
            raise MigrationError(f"Unexpected file in migrations: {f.name}")
        scripts.setdefault((m.group(1), m.group(2)), {})[m.group(3)] = f.read_text(encoding="utf-8")
    migrations = []
    for (mid, name), pair in sorted(scripts.items()):
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


def _adopt_legacy(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Create the bookkeeping table; record a database made by the old store as being at 0001."""
    if "glyph_migrations" in _table_names(conn):
        return
    legacy = is_legacy(conn)
    conn.execute(BOOKKEEPING_SQL)
    if legacy and migrations and migrations[0].id == "0001":
        _record(conn, migrations[0])


def _record(conn: sqlite3.Connection, migration: Migration) -> None:
    conn.execute(
        "INSERT INTO glyph_migrations (id, name, checksum, applied_at) VALUES (?, ?, ?, ?)",
        [migration.id, migration.name, migration.checksum, _now()],
    )


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()


_clock = time.perf_counter  # how long each step took; tests replace it to get fixed output


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
        rows.append(Status(m, m.id, applied_at, checksum is not None and checksum != m.checksum))
    for mid, (checksum, applied_at) in sorted(applied.items()):
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
        names = ", ".join(f"{m.label}.up.sql" for m in drifted)
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
    return steps


def _foreign_key_problems(conn: sqlite3.Connection) -> set:
    # (table, rowid, parent table): the key number is left out, as a rebuilt table may number its keys anew
    return {(table, rowid, parent) for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check")}


def apply_step(conn: sqlite3.Connection, step: Step, previous: Optional[str] = None) -> None:
    """Run one migration step as one transaction (or savepoint); on failure nothing of it remains.

    Table rebuilds want foreign key enforcement off, which only the caller can arrange before its
    transaction begins (``migrate`` does). Instead ``foreign_key_check`` runs after the step, and the
    step is refused if it leaves a broken key that was not broken before. ``previous`` is the version
    the database is at, for the message if the step fails.
    """
    label, direction = step.migration.label, step.direction
    kept = f"Nothing of it was kept: the database is still at {describe_version(previous)}."
    with transaction(conn, "glyph_migrate"):
        conn.execute("PRAGMA legacy_alter_table = ON")  # keep other tables' REFERENCES text as written
        try:
            conn.execute("SAVEPOINT glyph_step")
            _run_statements(conn, step, kept)
            broken = _foreign_key_problems(conn)
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
                _run_statements(conn, step, kept)
            conn.execute("RELEASE glyph_step")
            if direction == "up":
                _record(conn, step.migration)
            else:
                conn.execute("DELETE FROM glyph_migrations WHERE id = ?", [step.migration.id])
        finally:
            conn.execute("PRAGMA legacy_alter_table = OFF")


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
                started = _clock()
                apply_step(conn, steps[0], previous=current_version(conn, migrations))
            done.append(steps[0])
            if on_step:
                on_step(steps[0], _clock() - started)
            if rollback is not None:
                rollback -= 1
    finally:
        conn.execute(f"PRAGMA foreign_keys = {int(foreign_keys)}")


def migrate_if_managed(conn: sqlite3.Connection) -> Optional[List[Step]]:
    """Apply pending migrations to an empty or already managed database; None for any other database.

    Used at server startup, where adopting a database this package does not own would be a surprise.
    """
    try:
        return migrate(conn, only_managed=True)
    except NotManaged:
        return None
