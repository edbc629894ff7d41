import sqlite3

import pytest

from datasette_glyph import migrate
from datasette_glyph.db import connect


@pytest.fixture
def db_path(tmp_path):
    """A database file migrated to the newest schema, with no rows."""
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrate.migrate(conn)
    conn.close()
    return path


@pytest.fixture
def conn(db_path):
    """An engine connection to ``db_path`` (autocommit, WAL)."""
    c = connect(db_path)
    yield c
    c.close()


def build_legacy_database(path) -> sqlite3.Connection:
    """A database as the old store made it: the 0001 schema run by hand, no bookkeeping table."""
    conn = connect(path)
    first = migrate.load_migrations()[0]
    for statement in migrate.split_statements(first.up_sql):
        conn.execute(statement)
    return conn
