from datasette_glyph import migrate

from .conftest import build_legacy_database


def test_migrations_are_numbered_pairs():
    assert [m.label for m in migrate.load_migrations()] == [
        "0001_inherited_schema",
        "0002_import_lineage",
        "0003_scored_listings_title",
    ]


def test_legacy_database_is_recognised_at_0001(tmp_path):
    conn = build_legacy_database(tmp_path / "legacy.db")
    assert migrate.current_version(conn) == "0001"
    steps = migrate.migrate(conn)
    assert [(s.migration.id, s.direction) for s in steps] == [("0002", "up"), ("0003", "up")]
