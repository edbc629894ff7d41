import sqlite3

import pytest

from datasette_glyph.engine import migrator
from datasette_glyph.engine.sqlite import connect

from . import legacy_store


@pytest.fixture
def db_path(tmp_path):
    """A database file migrated to the newest schema, with no rows."""
    path = tmp_path / "glyph.db"
    conn = connect(path)
    migrator.migrate(conn)
    conn.close()
    return path


@pytest.fixture
def conn(db_path):
    """An engine connection to ``db_path`` (autocommit, WAL)."""
    c = connect(db_path)
    yield c
    c.close()


@pytest.fixture
def upload_folder(tmp_path):
    """An empty folder for a server's upload temp files (``upload_dir``)."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


def build_legacy_database(path) -> sqlite3.Connection:
    """A database as the old store's pre-lineage release made it, with no rows and no bookkeeping table."""
    conn = connect(path)
    conn.executescript(legacy_store.PRE_LINEAGE)
    return conn
